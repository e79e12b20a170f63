"""HMAC-SHA256 access-key authentication exactly as the ACS SDKs sign, plus optional bearer tokens.

The client signs ``METHOD\\npath?query\\nx-ms-date;host;x-ms-content-sha256`` with the base64-decoded
access key, where ``host`` is the *endpoint* host[:port] and the hash is over the raw body bytes.
The async SDK signs the percent-decoded path (``decode_url=True``), so both forms are accepted.

Example::

    verifier = HmacVerifier(access_key="ZW11bGF0b3I=")
    verifier.verify(method="GET", target="/emails/operations/x?api-version=2025-09-01",
                    host="127.0.0.1:8025", headers=request.headers, body=b"")
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from postbus.emulators.acs_email.errors import ApiError

__all__ = [
    "ANY_BEARER_TOKEN",
    "DEFAULT_MAX_SKEW_S",
    "SIGNED_HEADERS",
    "HmacVerifier",
    "compute_signature",
    "content_hash",
    "format_date",
    "sign_headers",
]

DEFAULT_MAX_SKEW_S = 15 * 60.0
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"

_AUTH_RE = re.compile(r"^HMAC-SHA256 SignedHeaders=([^&]+)&Signature=(.+)$")
_DENIED = "Denied by the resource provider."
ANY_BEARER_TOKEN = "*"  # noqa: S105  (a wildcard marker, not a secret)


def content_hash(body: bytes) -> str:
    """``x-ms-content-sha256``: base64 of the SHA-256 of the exact body bytes."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def format_date(when: datetime) -> str:
    """RFC 1123 date as the SDK writes it (English names regardless of locale)."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    utc = when.astimezone(UTC)
    return (
        f"{days[utc.weekday()]}, {utc.day:02d} {months[utc.month - 1]} {utc.year} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )


def compute_signature(key: bytes, string_to_sign: str) -> str:
    """base64(HMAC-SHA256(key, utf8(string_to_sign)))."""
    return base64.b64encode(hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()).decode(
        "ascii"
    )


def sign_headers(
    *, access_key: str, method: str, target: str, host: str, body: bytes, date: datetime | None = None
) -> dict[str, str]:
    """The four headers the SDK adds; used by the benchmark and raw-HTTP tests to sign like the SDK."""
    x_ms_date = format_date(date or datetime.now(UTC))
    digest = content_hash(body)
    to_sign = f"{method.upper()}\n{target}\n{x_ms_date};{host};{digest}"
    signature = compute_signature(base64.b64decode(access_key), to_sign)
    return {
        "x-ms-date": x_ms_date,
        "x-ms-content-sha256": digest,
        "x-ms-return-client-request-id": "true",
        "Authorization": f"HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature={signature}",
    }


def _denied(message: str = _DENIED) -> ApiError:
    return ApiError(401, "Denied", message, reason="auth")


@dataclass(frozen=True, slots=True)
class HmacVerifier:
    """Checks a request's ``Authorization`` header; raises :class:`ApiError` (401) on failure.

    ``bearer_token`` enables ``Authorization: Bearer`` (Entra ID): ``"*"`` accepts any token,
    any other value must match exactly, ``None`` refuses bearer tokens.
    """

    access_key: str
    bearer_token: str | None = None
    max_skew_s: float = DEFAULT_MAX_SKEW_S

    def verify(
        self,
        *,
        method: str,
        target: str,
        host: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> None:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            self._verify_bearer(authorization.removeprefix("Bearer ").strip())
            return
        match = _AUTH_RE.match(authorization)
        if match is None:
            raise _denied("Missing or malformed HMAC-SHA256 Authorization header.")
        signed_names, signature = match.group(1), match.group(2)

        claimed_hash = headers.get("x-ms-content-sha256", "")
        if not hmac.compare_digest(claimed_hash, content_hash(body)):
            raise _denied("'x-ms-content-sha256' differs from generated content hash")
        self._check_date(headers.get("x-ms-date", ""), now or datetime.now(UTC))

        key = self._key()
        for candidate in self._strings_to_sign(method, target, host, headers, signed_names):
            if hmac.compare_digest(compute_signature(key, candidate), signature):
                return
        raise _denied()

    def _verify_bearer(self, token: str) -> None:
        if self.bearer_token is None:
            raise _denied("Bearer tokens are not enabled on this emulator.")
        if self.bearer_token != ANY_BEARER_TOKEN and not hmac.compare_digest(token, self.bearer_token):
            raise _denied()

    def _key(self) -> bytes:
        try:
            return base64.b64decode(self.access_key, validate=True)
        except (binascii.Error, ValueError) as exc:  # pragma: no cover - checked at construction time
            raise _denied("The emulator's access key is not valid base64.") from exc

    def _check_date(self, raw: str, now: datetime) -> None:
        try:
            sent = parsedate_to_datetime(raw)
        except (TypeError, ValueError) as exc:
            raise _denied("Missing or malformed 'x-ms-date' header.") from exc
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        if abs((now - sent).total_seconds()) > self.max_skew_s:
            raise _denied("The request date 'x-ms-date' is outside the allowed clock skew.")

    @staticmethod
    def _strings_to_sign(
        method: str, target: str, host: str, headers: Mapping[str, str], signed_names: str
    ) -> list[str]:
        targets = [target]
        decoded = unquote(target)
        if decoded != target:
            targets.append(decoded)
        hosts = [host]
        if ":" not in host:
            hosts += [f"{host}:80", f"{host}:443"]
        names = signed_names.lower().split(";")
        out: list[str] = []
        for tgt in targets:
            for hst in hosts:
                values = [hst if name == "host" else headers.get(name, "") for name in names]
                out.append(f"{method.upper()}\n{tgt}\n{';'.join(values)}")
        return out
