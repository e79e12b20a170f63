"""Wire details checked with raw HTTP clients (requests and aiohttp) signing like the SDK."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import requests

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.acs_email.auth import sign_headers


def _post(
    acs: EmailEmulator,
    body: bytes,
    *,
    api_version: str = "2025-09-01",
    signed_body: bytes | None = None,
    date: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> requests.Response:
    target = f"/emails:send?api-version={api_version}"
    host = acs.endpoint.removeprefix("http://")
    headers = sign_headers(
        access_key=acs.access_key,
        method="POST",
        target=target,
        host=host,
        body=body if signed_body is None else signed_body,
        date=date,
    )
    headers["Content-Type"] = "application/json"
    return requests.post(acs.endpoint + target, data=body, headers={**headers, **(extra or {})}, timeout=10)


def _body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def test_202_carries_operation_location_on_the_request_host_with_the_same_api_version(
    acs: EmailEmulator, message: dict[str, Any]
) -> None:
    response = _post(acs, _body(message), api_version="2023-03-31", extra={"x-ms-client-request-id": "abc"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "Running"
    assert response.headers["Operation-Location"] == (
        f"{acs.endpoint}/emails/operations/{body['id']}?api-version=2023-03-31"
    )
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ms-client-request-id"] == "abc"


def test_a_body_that_differs_from_its_content_hash_is_401(
    acs: EmailEmulator, message: dict[str, Any]
) -> None:
    body = _body(message)
    response = _post(acs, body, signed_body=body.replace(b"Order", b"Other"))
    assert response.status_code == 401
    assert response.headers["x-ms-error-code"] == "Denied"
    assert response.json()["error"]["message"] == "'x-ms-content-sha256' differs from generated content hash"
    assert acs.mailbox.messages() == []


def test_a_stale_date_is_401(acs: EmailEmulator, message: dict[str, Any]) -> None:
    response = _post(acs, _body(message), date=datetime.now(UTC) - timedelta(minutes=20))
    assert response.status_code == 401
    assert "x-ms-date" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("version", "code"), [("2021-10-01-preview", "UnsupportedApiVersion"), ("", "MissingApiVersionParameter")]
)
def test_other_api_versions_are_400(
    acs: EmailEmulator, message: dict[str, Any], version: str, code: str
) -> None:
    response = _post(acs, _body(message), api_version=version)
    assert response.status_code == 400
    assert response.headers["x-ms-error-code"] == code
    assert "Retry-After" not in response.headers


async def test_unknown_operation_is_404_through_aiohttp(acs: EmailEmulator) -> None:
    target = "/emails/operations/does-not-exist?api-version=2025-09-01"
    host = acs.endpoint.removeprefix("http://")
    headers = sign_headers(access_key=acs.access_key, method="GET", target=target, host=host, body=b"")
    async with (
        aiohttp.ClientSession() as session,
        session.get(acs.endpoint + target, headers=headers) as resp,
    ):
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "NotFound"
