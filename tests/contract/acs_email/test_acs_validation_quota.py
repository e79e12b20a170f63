"""Validation (400 naming the field) and quotas (429 + Retry-After) as the SDK surfaces them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.rest import HttpRequest

from postbus.emulators.acs_email import EmailEmulator, QuotaConfig


def _attachment(cid: str | None = None, data: str = "aGVsbG8=") -> dict[str, str]:
    att = {"name": "a.png", "contentType": "image/png", "contentInBase64": data}
    if cid:
        att["contentId"] = cid
    return att


def _case(name: str, target: str, change: Any, api_version: str = "2025-09-01") -> Any:
    return pytest.param(change, target, api_version, id=name)


CASES = [
    _case("missing senderAddress", "senderAddress", lambda m: m.pop("senderAddress")),
    _case(
        "sender with display name", "senderAddress", lambda m: m.update(senderAddress="Shop <s@contoso.test>")
    ),
    _case("missing content", "content", lambda m: m.pop("content")),
    _case("missing subject", "content.subject", lambda m: m["content"].pop("subject")),
    _case("missing recipients", "recipients", lambda m: m.pop("recipients")),
    _case("empty to", "recipients.to", lambda m: m["recipients"].update(to=[])),
    _case(
        "bad address", "recipients.cc[0].address", lambda m: m["recipients"].update(cc=[{"address": "x@"}])
    ),
    _case(
        "51 recipients",
        "recipients",
        lambda m: m["recipients"].update(bcc=[{"address": f"u{i}@contoso.test"} for i in range(49)]),
    ),
    _case(
        "bad base64",
        "attachments[0].contentInBase64",
        lambda m: m.update(attachments=[_attachment(data="%%")]),
    ),
    _case(
        "duplicate contentId",
        "attachments[1].contentId",
        lambda m: m.update(attachments=[_attachment("logo"), _attachment("logo")]),
    ),
    _case(
        "contentId before 2024-07-01-preview",
        "attachments[0].contentId",
        lambda m: m.update(attachments=[_attachment("logo")]),
        api_version="2023-03-31",
    ),
    _case(
        "over 10 MB",
        "body",
        lambda m: m.update(attachments=[_attachment(data=base64.b64encode(b"\0" * (7_900_000)).decode())]),
    ),
]


@pytest.mark.parametrize(("change", "target", "api_version"), CASES)
def test_each_validation_rule_is_a_400_naming_the_field(
    acs: EmailEmulator,
    message: dict[str, Any],
    change: Any,
    target: str,
    api_version: str,
    make_client: Callable[..., EmailClient],
) -> None:
    change(message)
    client = make_client(
        acs.endpoint, AzureKeyCredential(acs.access_key), api_version=api_version, retry_total=0
    )
    with pytest.raises(HttpResponseError) as info:
        client.begin_send(message)
    assert info.value.status_code == 400
    assert info.value.error is not None
    assert info.value.error.target == target
    assert f"See property '{target}'" in str(info.value)
    assert info.value.response is not None
    assert info.value.response.headers["x-ms-error-code"] == info.value.error.code
    assert acs.mailbox.messages() == []


def test_send_quota_is_a_429_with_retry_after_seen_by_a_raw_response_hook(
    message: dict[str, Any], make_client: Callable[..., EmailClient]
) -> None:
    throttled: list[str] = []

    def hook(response: PipelineResponse) -> None:  # type: ignore[type-arg]
        http = response.http_response
        if http.status_code == 429:
            throttled.append(http.headers["Retry-After"])

    with EmailEmulator(quota="2,100") as acs:
        client = make_client(
            acs.endpoint, AzureKeyCredential(acs.access_key), retry_total=0, raw_response_hook=hook
        )
        for _ in range(2):
            client.begin_send(message, polling=False)
        with pytest.raises(HttpResponseError) as info:
            client.begin_send(message, polling=False)
        stats = acs.stats()
    assert info.value.status_code == 429
    assert info.value.error is not None
    assert info.value.error.code == "TooManyRequests"
    [retry_after] = throttled
    assert 1 <= int(retry_after) <= 60
    assert stats["throttled"] == 1
    assert stats["accepted"] == 2


def test_the_documented_hook_that_raises_on_429_stops_the_sdk_from_sleeping(
    message: dict[str, Any], make_client: Callable[..., EmailClient]
) -> None:
    class Throttled(Exception):
        def __init__(self, retry_after: int) -> None:
            self.retry_after = retry_after

    def hook(response: PipelineResponse) -> None:  # type: ignore[type-arg]
        if response.http_response.status_code == 429:
            # Read the body first: raising on an unread response leaks its pooled connection.
            response.http_response.read()
            raise Throttled(int(response.http_response.headers["Retry-After"]))

    with EmailEmulator(quota="azure-managed") as acs:
        # Default retry policy: without the hook the SDK would sleep Retry-After three times.
        client = make_client(acs.endpoint, AzureKeyCredential(acs.access_key), raw_response_hook=hook)
        for _ in range(5):
            client.begin_send(message, polling=False)
        with pytest.raises(Throttled) as info:
            client.begin_send(message, polling=False)
    assert info.value.retry_after >= 1


def test_status_reads_have_their_own_bucket(
    message: dict[str, Any], make_client: Callable[..., EmailClient]
) -> None:
    with EmailEmulator(quota=QuotaConfig(sends_per_minute=10, status_per_minute=1)) as acs:
        client = make_client(acs.endpoint, AzureKeyCredential(acs.access_key), retry_total=0)
        op_id = client.begin_send(message, polling=False).result()["id"]
        request = HttpRequest("GET", f"/emails/operations/{op_id}", params={"api-version": "2025-09-01"})
        assert client.send_request(request).status_code == 200
        second = client.send_request(request)
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) >= 1
        # Sends are unaffected by the exhausted status bucket
        client.begin_send(message, polling=False)


def test_quota_changes_while_running(
    acs: EmailEmulator, client: EmailClient, message: dict[str, Any]
) -> None:
    client.begin_send(message, polling=False)
    # Under "unlimited" nothing is counted, so the new window starts empty.
    acs.set_quota("1,10")
    client.begin_send(message, polling=False)
    with pytest.raises(HttpResponseError) as info:
        client.begin_send(message, polling=False)
    assert info.value.status_code == 429
    acs.set_quota("unlimited")
    client.begin_send(message, polling=False)
