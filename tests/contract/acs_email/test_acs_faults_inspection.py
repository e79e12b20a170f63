"""Fault injection seen through the SDK, the /_emulator/ inspection API and the mailbox directory."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.core.rest import HttpRequest

from postbus.emulators.acs_email import EmailEmulator


@pytest.mark.parametrize("status", [500, 502, 503])
def test_injected_5xx_reaches_the_sdk_and_stores_nothing(
    acs: EmailEmulator, client: EmailClient, message: dict[str, Any], status: int
) -> None:
    acs.faults.fail_rate = 1.0
    acs.faults.fail_statuses = (status,)
    with pytest.raises(HttpResponseError) as info:
        client.begin_send(message)
    assert info.value.status_code == status
    assert acs.mailbox.messages() == []
    assert acs.stats()["rejected"] == {f"fault:{status}": 1}


def test_a_stalled_send_is_stored_and_a_replay_with_the_same_id_does_not_duplicate_it(
    acs: EmailEmulator, message: dict[str, Any], make_client: Callable[..., EmailClient]
) -> None:
    # Given a send whose response never completes (the client times out: an ambiguous outcome)
    op_id = "c0ffee00-1111-4222-8333-444455556666"
    acs.faults.stall_next(1)
    client = make_client(acs.endpoint, AzureKeyCredential(acs.access_key), retry_total=0, read_timeout=0.3)
    with pytest.raises(ServiceResponseError):
        client.begin_send(message, operation_id=op_id)
    # Then the email was stored anyway
    assert [m.operation_id for m in acs.mailbox.messages()] == [op_id]
    # When the worker retries with the same Operation-Id, the original operation is returned
    assert client.begin_send(message, operation_id=op_id).result() == {"id": op_id, "status": "Succeeded"}
    assert len(acs.mailbox.messages()) == 1


def test_the_first_status_read_can_be_a_404(
    acs: EmailEmulator, client: EmailClient, message: dict[str, Any]
) -> None:
    acs.faults.status_404_first = True
    with pytest.raises(HttpResponseError) as info:
        client.begin_send(message).result()
    assert info.value.status_code == 404
    # The operation exists all the same: a second read finds it
    [mail] = acs.mailbox.messages()
    request = HttpRequest(
        "GET", f"/emails/operations/{mail.operation_id}", params={"api-version": "2025-09-01"}
    )
    assert client.send_request(request).json()["status"] == "Succeeded"


def test_forced_throttling_answers_429_with_the_given_retry_after(
    acs: EmailEmulator, client: EmailClient, message: dict[str, Any]
) -> None:
    acs.faults.throttle_next(2, retry_after=7)
    for _ in range(2):
        with pytest.raises(HttpResponseError) as info:
            client.begin_send(message, polling=False)
        assert info.value.status_code == 429
        assert info.value.response is not None
        assert info.value.response.headers["Retry-After"] == "7"
    client.begin_send(message, polling=False)
    assert acs.stats()["throttled"] == 2


def test_inspection_api_lists_filters_gets_and_clears(
    acs: EmailEmulator, client: EmailClient, message: dict[str, Any]
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    client.begin_send(message, polling=False)
    message["content"]["subject"] = "Booking reminder"
    message["recipients"] = {"to": [{"address": "zed@contoso.test"}]}
    op_id = client.begin_send(message, polling=False).result()["id"]
    base = f"{acs.endpoint}/_emulator"
    with requests.Session() as http:
        assert len(http.get(f"{base}/messages", timeout=5).json()) == 2
        [only] = http.get(f"{base}/messages", params={"recipient": "zed@contoso.test"}, timeout=5).json()
        assert only["operationId"] == op_id
        assert [
            m["subject"]
            for m in http.get(f"{base}/messages", params={"subject": "Booking"}, timeout=5).json()
        ] == ["Booking reminder"]
        assert len(http.get(f"{base}/messages", params={"since": before.isoformat()}, timeout=5).json()) == 2
        assert http.get(f"{base}/messages", params={"since": "2999-01-01T00:00:00Z"}, timeout=5).json() == []
        assert http.get(f"{base}/messages", params={"since": "yesterday"}, timeout=5).status_code == 400
        assert http.get(f"{base}/messages/{op_id}", timeout=5).json()["to"] == ["zed@contoso.test"]
        assert http.get(f"{base}/messages/unknown", timeout=5).status_code == 404
        stats = http.get(f"{base}/stats", timeout=5).json()
        assert stats["accepted"] == 2
        assert stats["per_minute_rate"] == 2
        assert stats["stored"] == 2
        assert http.delete(f"{base}/messages", timeout=5).status_code == 204
        assert http.get(f"{base}/messages", timeout=5).json() == []


def test_inspection_api_changes_faults_quota_and_rules(
    acs: EmailEmulator, client: EmailClient, message: dict[str, Any]
) -> None:
    base = f"{acs.endpoint}/_emulator"
    with requests.Session() as http:
        faults = http.patch(f"{base}/faults", json={"latency_ms": 5, "throttle_next": 1}, timeout=5).json()
        assert faults["latency_ms"] == 5
        assert http.patch(f"{base}/faults", json={"fail_rate": 3}, timeout=5).status_code == 400
        with pytest.raises(HttpResponseError):
            client.begin_send(message, polling=False)
        quota = http.patch(f"{base}/quota", json={"preset": "azure-managed"}, timeout=5).json()
        assert quota["sends_per_minute"] == 5
        assert acs.quota.name == "azure-managed"
        assert http.patch(f"{base}/quota", json={"sends_per_minute": "x"}, timeout=5).status_code == 400
        http.patch(f"{base}/quota", json={"sends_per_minute": None}, timeout=5)
        rules = [{"pattern": "ann@*", "code": "EmailDropped", "message": "Dropped."}]
        assert http.put(f"{base}/failure-rules", json=rules, timeout=5).json() == rules
        with pytest.raises(HttpResponseError) as info:
            client.begin_send(message).result()
        assert info.value.error is not None
        assert info.value.error.code == "EmailDropped"
        assert http.get(f"{base}/faults", timeout=5).json()["throttle_pending"] == 0


def test_mailbox_directory_gets_eml_and_json_that_parse_back(
    tmp_path: Path, message: dict[str, Any], make_client: Callable[..., EmailClient]
) -> None:
    message["attachments"] = [
        {
            "name": "invoice.pdf",
            "contentType": "application/pdf",
            "contentInBase64": base64.b64encode(b"%PDF").decode(),
        }
    ]
    message["replyTo"] = [{"address": "help@contoso.test"}]
    message["headers"] = {"x-priority": "1"}
    with EmailEmulator(mailbox_dir=tmp_path / "mail") as acs:
        client = make_client(acs.endpoint, AzureKeyCredential(acs.access_key), retry_total=0)
        op_id = client.begin_send(message).result()["id"]
    [eml] = (tmp_path / "mail").glob("*.eml")
    [meta] = (tmp_path / "mail").glob("*.json")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["X-ACS-Operation-Id"] == op_id
    assert parsed["Subject"] == "Order 42 confirmed"
    assert parsed["Reply-To"] == "help@contoso.test"
    assert parsed.get_body(preferencelist=("html",)).get_content().strip() == "<p>Thanks</p>"  # type: ignore[union-attr]
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content() == b"%PDF"
    assert json.loads(meta.read_text())["operationId"] == op_id


def test_forced_throttling_without_retry_after_omits_the_header(
    acs: EmailEmulator, message: dict[str, Any], make_client: Callable[..., EmailClient]
) -> None:
    # With the default retry policy: a 429 without Retry-After is not retried by the SDK
    client = make_client(acs.endpoint, AzureKeyCredential(acs.access_key))
    acs.faults.throttle_next(1, retry_after=0)
    with pytest.raises(HttpResponseError) as info:
        client.begin_send(message, polling=False)
    assert info.value.status_code == 429
    assert info.value.response is not None
    assert "Retry-After" not in info.value.response.headers
    assert acs.mailbox.messages() == []
