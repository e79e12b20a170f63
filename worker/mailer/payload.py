"""The ACS ``EmailMessage`` of an event, and the operation id that makes its send idempotent."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from uuid import UUID, uuid5

from postbus.events import Address, NotificationEvent

__all__ = ["EVENT_ID_HEADER", "TENANT_HEADER", "build_payload", "operation_id_for", "oversize"]

#: Custom header on every email so support can find the event behind a message in any mailbox.
EVENT_ID_HEADER: Final = "X-Postbus-Event-Id"
#: And the tenant, so a shared mailbox (or the emulator's console) can be searched by it.
TENANT_HEADER: Final = "X-Postbus-Tenant"


#: JSON writes one character as at most six (``\u00e9``), and ACS gets ``json.dumps`` output.
_MAX_ESCAPE: Final = 6
#: Upper bound of the punctuation JSON adds around one value (quotes, ``": "``, ``", "``, brackets).
_PER_VALUE: Final = 8


def _size_bound(value: Any) -> int:
    if isinstance(value, str):
        return _MAX_ESCAPE * len(value) + _PER_VALUE
    if isinstance(value, Mapping):
        return sum(_size_bound(k) + _size_bound(v) for k, v in value.items()) + _PER_VALUE
    if isinstance(value, list | tuple):
        return sum(_size_bound(item) for item in value) + _PER_VALUE
    return len(repr(value)) + _PER_VALUE  # numbers, booleans, None: no longer than their repr


def oversize(payload: Mapping[str, Any], limit: int) -> int | None:
    """The request body's size in bytes if it exceeds ``limit``, else ``None``.

    The SDK encodes the payload itself, so encoding it here too just to measure it would cost a
    second ``json.dumps`` per email. A bound from the lengths of its strings settles almost
    every email (a few kilobytes against a 10 MB limit); only one within reach of the limit is
    encoded to get its exact size.
    """
    if _size_bound(payload) <= limit:
        return None
    size = len(json.dumps(payload))
    return size if size > limit else None


def operation_id_for(event_id: str, *, namespace: UUID, generation: int = 0) -> str:
    """The ACS operation id of an event: stable across redeliveries and retries of one generation.

    A dead-letter replay is a new generation (``postbus-replay``) and gets a new id, so ACS sends
    it even though it accepted the earlier one.
    """
    name = event_id if generation == 0 else f"{event_id}#replay{generation}"
    return str(uuid5(namespace, name))


def _addresses(addresses: Sequence[Address]) -> list[dict[str, str]]:
    return [
        {"address": a.address, "displayName": a.display_name} if a.display_name else {"address": a.address}
        for a in addresses
    ]


def build_payload(
    event: NotificationEvent, *, subject: str, html: str, text: str, sender: str
) -> dict[str, Any]:
    """The ACS ``EmailMessage`` body for one event (2025-09-01 schema)."""
    recipients: dict[str, Any] = {"to": _addresses(event.to)}
    if event.cc:
        recipients["cc"] = _addresses(event.cc)
    if event.bcc:
        recipients["bcc"] = _addresses(event.bcc)
    payload: dict[str, Any] = {
        "senderAddress": sender,
        "content": {"subject": subject, "html": html, "plainText": text},
        "recipients": recipients,
        "headers": {**event.headers, EVENT_ID_HEADER: event.id, TENANT_HEADER: event.tenant},
    }
    if event.reply_to:
        payload["replyTo"] = _addresses(event.reply_to)
    if event.attachments:
        payload["attachments"] = [
            {"name": a.name, "contentType": a.content_type, "contentInBase64": a.content_base64}
            | ({"contentId": a.content_id} if a.content_id else {})
            for a in event.attachments
        ]
    return payload
