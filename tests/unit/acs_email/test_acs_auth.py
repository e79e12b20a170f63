"""HMAC verification against known-good test vectors of ACS's HMAC scheme and the failure modes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postbus.emulators.acs_email.auth import HmacVerifier, content_hash, format_date, sign_headers
from postbus.emulators.acs_email.errors import ApiError

KEY = "ZW11bGF0b3ItdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="
HOST = "127.0.0.1:8080"
BODY = (
    b'{"senderAddress": "DoNotReply@example.com", "recipients": {"to": [{"address": "a@example.com"}]}, '
    b'"content": {"subject": "hi", "plainText": "hello"}}'
)
POST_TARGET = "/emails:send?api-version=2025-09-01"
GET_TARGET = "/emails/operations/3f2504e0-4f89-41d3-9a0c-0305e82c3301?api-version=2025-09-01"
POST_DATE = datetime(2025, 7, 1, 12, 0, 0, tzinfo=UTC)
GET_DATE = datetime(2025, 7, 1, 12, 0, 5, tzinfo=UTC)
POST_AUTH = (
    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
    "&Signature=2gdC+PqcM7CNsUWWR3PLPVkzNkdzbV7rfzkF4+CmZXw="
)
GET_AUTH = (
    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
    "&Signature=PIXk45qwtsmkKtgvRdkbuRTsI8hxVEXn19j7AM/4GE8="
)


def test_content_hash_matches_the_vector() -> None:
    assert content_hash(BODY) == "RK4AklkKrTGugPVMrrH9m7La6/Y3Z+KOFDu8vW/H4Pg="
    assert content_hash(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_date_is_rfc1123_like_the_sdk() -> None:
    assert format_date(POST_DATE) == "Tue, 01 Jul 2025 12:00:00 GMT"


@pytest.mark.parametrize(
    ("method", "target", "body", "date", "authorization"),
    [
        ("POST", POST_TARGET, BODY, POST_DATE, POST_AUTH),
        ("GET", GET_TARGET, b"", GET_DATE, GET_AUTH),
    ],
)
def test_signing_reproduces_the_reference_vectors(
    method: str, target: str, body: bytes, date: datetime, authorization: str
) -> None:
    headers = sign_headers(access_key=KEY, method=method, target=target, host=HOST, body=body, date=date)
    assert headers["Authorization"] == authorization


@pytest.mark.parametrize(
    ("method", "target", "body", "date", "authorization"),
    [
        ("POST", POST_TARGET, BODY, POST_DATE, POST_AUTH),
        ("GET", GET_TARGET, b"", GET_DATE, GET_AUTH),
    ],
)
def test_verifier_accepts_the_reference_vectors(
    method: str, target: str, body: bytes, date: datetime, authorization: str
) -> None:
    headers = {
        "x-ms-date": format_date(date),
        "x-ms-content-sha256": content_hash(body),
        "Authorization": authorization,
    }
    HmacVerifier(KEY).verify(method=method, target=target, host=HOST, headers=headers, body=body, now=date)


def _signed(body: bytes = BODY, date: datetime = POST_DATE, target: str = POST_TARGET) -> dict[str, str]:
    return sign_headers(access_key=KEY, method="POST", target=target, host=HOST, body=body, date=date)


def _reject(headers: dict[str, str], *, body: bytes = BODY, now: datetime = POST_DATE, **kw: str) -> ApiError:
    verifier = HmacVerifier(KEY, bearer_token=kw.pop("bearer", None))
    with pytest.raises(ApiError) as info:
        verifier.verify(
            method=kw.get("method", "POST"),
            target=kw.get("target", POST_TARGET),
            host=kw.get("host", HOST),
            headers=headers,
            body=body,
            now=now,
        )
    assert info.value.status == 401
    assert info.value.code == "Denied"
    return info.value


def test_a_body_that_differs_from_its_hash_is_denied_with_the_services_message() -> None:
    err = _reject(_signed(), body=BODY.replace(b"hello", b"HELLO"))
    assert err.message == "'x-ms-content-sha256' differs from generated content hash"


@pytest.mark.parametrize("skew", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_a_date_outside_fifteen_minutes_is_denied(skew: timedelta) -> None:
    err = _reject(_signed(), now=POST_DATE + skew)
    assert "x-ms-date" in err.message


def test_a_date_within_fifteen_minutes_is_accepted() -> None:
    HmacVerifier(KEY).verify(
        method="POST",
        target=POST_TARGET,
        host=HOST,
        headers=_signed(),
        body=BODY,
        now=POST_DATE + timedelta(minutes=14),
    )


def test_a_signature_for_another_host_is_denied() -> None:
    err = _reject(_signed(), host="localhost:8080")
    assert err.message == "Denied by the resource provider."


def test_a_wrong_key_is_denied() -> None:
    headers = sign_headers(
        access_key="d3Jvbmcta2V5", method="POST", target=POST_TARGET, host=HOST, body=BODY, date=POST_DATE
    )
    _reject(headers)


def test_missing_authorization_is_denied() -> None:
    _reject({"x-ms-date": format_date(POST_DATE), "x-ms-content-sha256": content_hash(BODY)})


def test_the_percent_decoded_path_signed_by_the_async_sdk_is_accepted() -> None:
    # Given a target whose query is percent-encoded on the wire but signed decoded (aiohttp + decode_url)
    wire = "/emails/operations/op%3A1?api-version=2025-09-01"
    headers = sign_headers(
        access_key=KEY,
        method="GET",
        target="/emails/operations/op:1?api-version=2025-09-01",
        host=HOST,
        body=b"",
        date=POST_DATE,
    )
    HmacVerifier(KEY).verify(method="GET", target=wire, host=HOST, headers=headers, body=b"", now=POST_DATE)


def test_a_host_header_without_port_matches_a_signature_with_the_default_port() -> None:
    headers = sign_headers(
        access_key=KEY, method="POST", target=POST_TARGET, host="127.0.0.1:443", body=BODY, date=POST_DATE
    )
    HmacVerifier(KEY).verify(
        method="POST", target=POST_TARGET, host="127.0.0.1", headers=headers, body=BODY, now=POST_DATE
    )


def test_bearer_tokens_are_refused_unless_configured() -> None:
    _reject({"Authorization": "Bearer abc"})
    _reject({"Authorization": "Bearer abc"}, bearer="xyz")
    HmacVerifier(KEY, bearer_token="abc").verify(
        method="GET", target=GET_TARGET, host=HOST, headers={"Authorization": "Bearer abc"}, body=b""
    )
    HmacVerifier(KEY, bearer_token="*").verify(
        method="GET", target=GET_TARGET, host=HOST, headers={"Authorization": "Bearer anything"}, body=b""
    )
