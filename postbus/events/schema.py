"""The notification event: what a producer publishes and the worker sends, validated like ACS does.

A producer builds a :class:`NotificationEvent` (or lets :func:`parse_event` validate a document)::

    event = parse_event({
        "id": "order-1001", "type": "order.confirmation", "tenant": "contoso",
        "to": ["Jane Doe <jane@example.com>"], "sender": "orders", "data": {"order": {...}},
    })

Validation mirrors what ACS Email accepts, so a bad event is refused by the producer instead of
being dead-lettered by the worker. Field names are the snake_case names below; unknown fields are
rejected. How an event travels on the queue is :mod:`postbus.events.wire`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from postbus.errors import InvalidEvent
from postbus.events.mime import allowed_attachment_type

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_RECIPIENTS",
    "MAX_REQUEST_BYTES",
    "RESERVED_HEADERS",
    "SCHEMA",
    "TOKENS",
    "Address",
    "Attachment",
    "AttachmentRef",
    "NotificationEvent",
    "base64_length",
    "parse_event",
    "valid_token",
]

SCHEMA: Final = "postbus.notification/1"

#: ACS accepts at most 50 recipients per email, To, Cc and Bcc together.
MAX_RECIPIENTS: Final = 50
#: ACS rejects requests over 10 MB, attachments (base64) included.
MAX_REQUEST_BYTES: Final = 10 * 1024 * 1024
#: Service Bus message ids hold 128 characters; retries append ``#<attempt>``, so ids stop at 100.
MAX_ID_LENGTH: Final = 100

#: Headers that ACS or the MIME envelope own; an event may not set them (compared case-insensitively).
RESERVED_HEADERS: Final = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "return-path",
        "received",
        "dkim-signature",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "authentication-results",
        "x-ms-acsemail-ignore-duplicate-content-id",
        "x-ms-acsemail-suppress-invalid-attachment",
        "x-ms-acsemail-validate-message-id",
    }
)
_RESERVED_HEADER_PREFIXES: Final = ("x-ms-", "arc-")

_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{MAX_ID_LENGTH - 1}}}")
_TYPE_RE = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*")
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ALIAS_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_RE = re.compile(rf"{_ATOM}(\.{_ATOM})*")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD_RE = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")
_NAME_ADDR_RE = re.compile(r'\s*(?:"(?P<quoted>[^"]*)"|(?P<plain>[^<>"]*?))\s*<(?P<addr>[^<>]*)>\s*')
_HEADER_NAME_RE = re.compile(r"[!-9;-~]{1,100}")
_MIME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_CONTENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _check_addr_spec(value: str) -> str:
    """Validate a bare ``local@domain`` address (dot-atom local part, DNS domain)."""
    local, at, domain = value.rpartition("@")
    if not at or len(value) > 254 or len(local) > 64 or not _LOCAL_RE.fullmatch(local):
        raise ValueError(f"not a valid email address: {value!r}")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(f"not a valid email address: {value!r}")
    if not _TLD_RE.fullmatch(labels[-1]):
        raise ValueError(f"not a valid email address: {value!r}")
    return value


class Address(BaseModel):
    """One mailbox: an RFC 5322 ``addr-spec`` and an optional display name.

    Accepts ``"jane@example.com"``, ``"Jane Doe <jane@example.com>"`` or
    ``{"address": "jane@example.com", "display_name": "Jane Doe"}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    display_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _NAME_ADDR_RE.fullmatch(value)
        if match is None:
            return {"address": value.strip()}
        name = match.group("quoted") if match.group("quoted") is not None else match.group("plain")
        return {"address": match.group("addr").strip(), "display_name": name.strip() or None}

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return _check_addr_spec(value)

    @field_validator("display_name")
    @classmethod
    def _valid_display_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 256 or _CONTROL_RE.search(value)):
            raise ValueError("display name must be at most 256 characters without control characters")
        return value

    def formatted(self) -> str:
        """``Jane Doe <jane@example.com>`` or the bare address."""
        return f'"{self.display_name}" <{self.address}>' if self.display_name else self.address


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def base64_length(size: int) -> int:
    """Characters of base64 that ``size`` bytes become (what ACS counts against its limit)."""
    return 4 * ((size + 2) // 3)


class AttachmentRef(BaseModel):
    """Where a claim-checked attachment's bytes wait: a content-addressed key in the attachment store.

    ``key`` is ``sha256/<sha256>``, so it names the content and nothing else; ``size`` (bytes) and
    ``sha256`` let the worker prove that what it fetched is what the producer published.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    size: Annotated[int, Field(ge=0)]
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _valid_sha256(cls, value: str) -> str:
        if not _SHA256_RE.fullmatch(value):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return value

    @model_validator(mode="after")
    def _key_names_content(self) -> AttachmentRef:
        # The worker reads only keys it could have derived itself: no path, no other container.
        if self.key != f"sha256/{self.sha256}":
            raise ValueError(f"key must be 'sha256/<sha256>', got {self.key[:120]!r}")
        return self


class Attachment(BaseModel):
    """A file sent with the email; ``content_id`` makes it inline (``cid:<content_id>``).

    The bytes travel either in the event (``content_base64``) or, for a file too large for the
    queue, in the attachment store (``content_ref``, set by the publisher): exactly one of the two.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: str
    content_base64: str | None = None
    content_ref: AttachmentRef | None = None
    content_id: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if _CONTROL_RE.search(value) or "/" in value or "\\" in value:
            raise ValueError("attachment name must not contain control characters or path separators")
        return value

    @field_validator("content_type")
    @classmethod
    def _valid_content_type(cls, value: str) -> str:
        if not _MIME_RE.fullmatch(value):
            raise ValueError(f"not a MIME type: {value!r}")
        if not allowed_attachment_type(value):
            raise ValueError(f"{value!r} is not an attachment type ACS Email sends")
        return value

    @field_validator("content_base64")
    @classmethod
    def _valid_base64(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        return value

    @field_validator("content_id")
    @classmethod
    def _valid_content_id(cls, value: str | None) -> str | None:
        if value is not None and not _CONTENT_ID_RE.fullmatch(value):
            raise ValueError(f"not a valid content id: {value!r}")
        return value

    @model_validator(mode="after")
    def _one_content(self) -> Attachment:
        if (self.content_base64 is None) == (self.content_ref is None):
            raise ValueError("exactly one of content_base64 and content_ref is required")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_content(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An inline attachment serialises exactly as before claim checks existed, so workers that
        # predate them still read it; only a claim-checked one carries ``content_ref``.
        dumped: dict[str, Any] = handler(self)
        for field in ("content_base64", "content_ref"):
            if dumped.get(field, ...) is None:
                del dumped[field]
        return dumped

    @property
    def encoded_size(self) -> int:
        """Characters of base64 this attachment adds to the ACS request."""
        if self.content_base64 is not None:
            return len(self.content_base64)
        assert self.content_ref is not None
        return base64_length(self.content_ref.size)

    def content(self) -> bytes:
        """The inline bytes (only for an attachment that carries them)."""
        if self.content_base64 is None:
            raise ValueError(f"attachment {self.name!r} is in the attachment store, not inline")
        return base64.b64decode(self.content_base64)


#: The token fields of an event: the pattern each must match and how to name it in an error.
TOKENS: Final[Mapping[str, tuple[re.Pattern[str], str]]] = {
    "id": (_ID_RE, f"event id (1-{MAX_ID_LENGTH} of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit)"),
    "type": (_TYPE_RE, "notification type (lowercase dotted words, e.g. order.confirmation)"),
    "tenant": (_TENANT_RE, "tenant (1-64 of A-Z a-z 0-9 . _ -)"),
    "sender": (_ALIAS_RE, "sender alias (1-64 of a-z 0-9 . _ -)"),
    "locale": (_LOCALE_RE, "locale (e.g. en, de-DE)"),
}


def valid_token(field: str, value: str) -> bool:
    """Whether ``value`` is a valid ``id``, ``type``, ``tenant``, ``sender`` or ``locale``."""
    return TOKENS[field][0].fullmatch(value) is not None and len(value) <= MAX_ID_LENGTH


class NotificationEvent(BaseModel):
    """A request to send one transactional email, as producers publish it.

    ``id`` is the idempotency key: publishing the same id twice inside the queue's duplicate
    window yields one message, and the worker derives the ACS ``operation_id`` from it, so a
    redelivered event is never sent twice. ``sender`` is an alias from the worker's allow-list,
    never a raw address. ``not_after`` is the instant after which sending is pointless.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_version: Annotated[Literal["postbus.notification/1"], Field(alias="schema")] = SCHEMA
    id: str
    type: str
    tenant: str = "default"
    to: Annotated[tuple[Address, ...], Field(min_length=1)]
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    sender: str
    reply_to: tuple[Address, ...] = ()
    locale: str = "en"
    data: dict[str, JsonValue] = Field(default_factory=dict)
    not_after: AwareDatetime | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = Field(default_factory=dict)
    #: Ask for a lane other than the type's default: any producer may go lower, only allowed ones higher.
    lane: Literal["critical", "normal", "bulk"] | None = None

    @field_validator("id", "type", "tenant", "sender", "locale")
    @classmethod
    def _valid_token(cls, value: str, info: ValidationInfo) -> str:
        if not valid_token(info.field_name or "", value):
            raise ValueError(f"{value[:120]!r} is not a valid {TOKENS[info.field_name or ''][1]}")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise ValueError("at most 50 custom headers")
        for name, header_value in value.items():
            lowered = name.lower()
            if not _HEADER_NAME_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if lowered in RESERVED_HEADERS or lowered.startswith(_RESERVED_HEADER_PREFIXES):
                raise ValueError(f"{name!r} is a reserved header")
            if "\r" in header_value or "\n" in header_value or len(header_value) > 998:
                raise ValueError(f"header {name!r} value must be one line of at most 998 characters")
        return value

    @model_validator(mode="after")
    def _within_acs_limits(self) -> NotificationEvent:
        recipients = len(self.to) + len(self.cc) + len(self.bcc)
        if recipients > MAX_RECIPIENTS:
            raise ValueError(f"to/cc/bcc: {recipients} recipients, ACS accepts at most {MAX_RECIPIENTS}")
        content_ids = [a.content_id for a in self.attachments if a.content_id is not None]
        if len(content_ids) != len(set(content_ids)):
            raise ValueError("attachments: content_id values must be unique")
        attached = sum(a.encoded_size for a in self.attachments)
        if attached > MAX_REQUEST_BYTES:
            raise ValueError(
                f"attachments: {attached} bytes of base64, ACS accepts at most {MAX_REQUEST_BYTES}"
            )
        return self

    def recipients(self) -> tuple[Address, ...]:
        """Every recipient, To then Cc then Bcc."""
        return self.to + self.cc + self.bcc

    def to_json(self) -> bytes:
        """The canonical UTF-8 JSON body (field order fixed, no whitespace)."""
        # An event without a lane request keeps the body it always had.
        exclude = {"lane"} if self.lane is None else None
        return self.model_dump_json(by_alias=True, exclude_defaults=False, exclude=exclude).encode()


def _describe(error: ValidationError) -> InvalidEvent:
    """One readable line naming each offending field, e.g. ``to.0.address: not a valid ...``."""
    parts: list[str] = []
    first_field = ""
    errors = error.errors(include_url=False)
    # A bad item also makes its container "too short"; report the cause, not the echo.
    nested = {item["loc"][:-depth] for item in errors for depth in range(1, len(item["loc"]))}
    for item in errors:
        if item["loc"] in nested:
            continue
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if not location:
            location = message.split(":", 1)[0] if ":" in message else ""
            message = message.split(":", 1)[1].strip() if location else message
        first_field = first_field or location
        parts.append(f"{location}: {message}" if location else message)
    return InvalidEvent("; ".join(parts), field=first_field)


def parse_event(document: bytes | str | Mapping[str, Any]) -> NotificationEvent:
    """Validate JSON text or a mapping into an event, raising :class:`InvalidEvent`."""
    try:
        if isinstance(document, bytes | str):
            # Strict on the wire: no "1" for 1, no silent coercion of what a producer sent.
            return NotificationEvent.model_validate_json(document, strict=True)
        return NotificationEvent.model_validate(document)
    except ValidationError as exc:
        if isinstance(document, bytes | str) and any(e["type"] == "json_invalid" for e in exc.errors()):
            detail = exc.errors()[0]["msg"]
            raise InvalidEvent(f"body is not valid JSON: {detail}") from None
        raise _describe(exc) from None
