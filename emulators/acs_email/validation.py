"""Request validation for ``POST /emails:send`` per the 2025-09-01 ``EmailMessage`` schema.

Every rule raises :class:`ApiError` 400 naming the offending property both in the message (as the
real service does: "Request body validation error. See property 'senderAddress'") and in
``error.target``. Unknown properties are ignored, as the service ignores them, except fields that
belong to a newer api-version (``attachments[].contentId`` before 2024-07-01-preview).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from postbus.emulators.acs_email.errors import ApiError

__all__ = [
    "API_VERSIONS",
    "MAX_RECIPIENTS",
    "MAX_REQUEST_BYTES",
    "Address",
    "Attachment",
    "EmailRequest",
    "check_api_version",
    "parse_email_request",
]

API_VERSIONS = ("2023-03-31", "2024-07-01-preview", "2025-09-01")
_CONTENT_ID_VERSIONS = frozenset({"2024-07-01-preview", "2025-09-01"})
MAX_RECIPIENTS = 50
MAX_REQUEST_BYTES = 10 * 1024 * 1024

# A bare addr-spec: no display name, no angle brackets, no whitespace, exactly one "@".
_ADDRESS_RE = re.compile(r"^[^@\s<>\"(),;:\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_IGNORE_DUPLICATE_CID = "x-ms-acsemail-ignore-duplicate-content-id"


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str
    content: bytes
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class EmailRequest:
    """A validated send request."""

    sender: str
    subject: str
    plain_text: str | None
    html: str | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    attachments: tuple[Attachment, ...]
    headers: dict[str, str] = field(hash=False)
    tracking_disabled: bool | None = None

    @property
    def recipients(self) -> tuple[Address, ...]:
        return self.to + self.cc + self.bcc


def _bad(target: str, detail: str | None = None, *, code: str = "BadRequest") -> ApiError:
    message = f"Request body validation error. See property '{target}'."
    if detail:
        message = f"{message} {detail}"
    return ApiError(400, code, message, target=target, reason=f"validation:{code}")


def check_api_version(value: str | None) -> str:
    """The request's api-version, or 400 when it is missing or not one the emulator serves."""
    if not value:
        raise ApiError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
            target="api-version",
            reason="api_version",
        )
    if value not in API_VERSIONS:
        raise ApiError(
            400,
            "UnsupportedApiVersion",
            f"The HTTP resource that matches the request URI does not support the API version '{value}'. "
            f"Supported versions: {', '.join(API_VERSIONS)}.",
            target="api-version",
            reason="api_version",
        )
    return value


def _opt_str(obj: dict[str, object], key: str, target: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(target, "Expected a string.")
    return value


def _req_str(obj: dict[str, object], key: str, target: str) -> str:
    value = _opt_str(obj, key, target)
    if value is None:
        raise _bad(target, "The field is required.")
    return value


def _address(value: object, target: str) -> Address:
    if not isinstance(value, dict):
        raise _bad(target, "Expected an object with 'address'.")
    address = _req_str(value, "address", f"{target}.address")
    if not _ADDRESS_RE.match(address):
        raise _bad(
            f"{target}.address", f"'{address}' is not a valid email address.", code="InvalidEmailAddress"
        )
    name = _opt_str(value, "displayName", f"{target}.displayName")
    return Address(address, name)


def _address_list(obj: dict[str, object], key: str, target: str, *, required: bool) -> tuple[Address, ...]:
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(target, "The field is required.")
        return ()
    if not isinstance(value, list):
        raise _bad(target, "Expected an array.")
    if required and not value:
        raise _bad(target, "At least one recipient is required.")
    return tuple(_address(item, f"{target}[{i}]") for i, item in enumerate(value))


def _attachments(value: object, api_version: str, headers: dict[str, str]) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad("attachments", "Expected an array.")
    ignore_dup = headers.get(_IGNORE_DUPLICATE_CID, "").lower() == "true"
    seen: set[str] = set()
    out: list[Attachment] = []
    for i, item in enumerate(value):
        target = f"attachments[{i}]"
        if not isinstance(item, dict):
            raise _bad(target, "Expected an object.")
        name = _req_str(item, "name", f"{target}.name")
        ctype = _req_str(item, "contentType", f"{target}.contentType")
        raw = _req_str(item, "contentInBase64", f"{target}.contentInBase64")
        try:
            content = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad(f"{target}.contentInBase64", "The value is not valid base64.") from exc
        cid = _opt_str(item, "contentId", f"{target}.contentId")
        if cid is not None:
            if api_version not in _CONTENT_ID_VERSIONS:
                raise _bad(f"{target}.contentId", f"Not supported in api-version {api_version}.")
            if cid in seen and not ignore_dup:
                raise _bad(f"{target}.contentId", f"Duplicate contentId '{cid}'.")
            seen.add(cid)
        out.append(Attachment(name, ctype, content, cid))
    return tuple(out)


def _headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("headers", "Expected an object of string values.")
    for key, val in value.items():
        if not isinstance(val, str):
            raise _bad(f"headers.{key}", "Expected a string.")
    return {str(k): str(v) for k, v in value.items()}


def _object(obj: dict[str, object], key: str) -> dict[str, object]:
    value = obj.get(key)
    if value is None:
        raise _bad(key, "The field is required.")
    if not isinstance(value, dict):
        raise _bad(key, "Expected an object.")
    return value


def parse_email_request(body: bytes, *, api_version: str) -> EmailRequest:
    """Validate a raw send body; raises :class:`ApiError` 400 naming the first bad property."""
    if len(body) > MAX_REQUEST_BYTES:
        raise _bad("body", f"The request is {len(body)} bytes; the limit is {MAX_REQUEST_BYTES} bytes.")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad("body", "The request body is not valid JSON.") from exc
    if not isinstance(doc, dict):
        raise _bad("body", "Expected a JSON object.")

    sender = _req_str(doc, "senderAddress", "senderAddress")
    if not _ADDRESS_RE.match(sender):
        raise _bad("senderAddress", "Use a bare address without a display name.")
    content = _object(doc, "content")
    subject = _req_str(content, "subject", "content.subject")
    plain_text = _opt_str(content, "plainText", "content.plainText")
    html = _opt_str(content, "html", "content.html")

    recipients = _object(doc, "recipients")
    to = _address_list(recipients, "to", "recipients.to", required=True)
    cc = _address_list(recipients, "cc", "recipients.cc", required=False)
    bcc = _address_list(recipients, "bcc", "recipients.bcc", required=False)
    total = len(to) + len(cc) + len(bcc)
    if total > MAX_RECIPIENTS:
        raise _bad("recipients", f"{total} recipients in to, cc and bcc; the limit is {MAX_RECIPIENTS}.")

    headers = _headers(doc.get("headers"))
    reply_to_doc = {"replyTo": doc.get("replyTo")}
    reply_to = _address_list(reply_to_doc, "replyTo", "replyTo", required=False)
    attachments = _attachments(doc.get("attachments"), api_version, headers)
    tracking = doc.get("userEngagementTrackingDisabled")
    if tracking is not None and not isinstance(tracking, bool):
        raise _bad("userEngagementTrackingDisabled", "Expected a boolean.")
    return EmailRequest(
        sender, subject, plain_text, html, to, cc, bcc, reply_to, attachments, headers, tracking
    )
