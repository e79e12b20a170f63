"""Messages across the adapter boundary: :class:`Delivery` in, the SDK's ``ServiceBusMessage`` out.

A :class:`Delivery` is what a receive hands the rest of Postbus: the message's body and envelope
free of SDK types, plus an opaque ``handle`` that only the adapter that received it uses to settle
it. A :class:`~postbus.events.WireMessage` becomes an SDK message only here::

    delivery = delivery_from(received)               # ServiceBusReceivedMessage -> Delivery
    decoded = delivery.decode()                      # raises InvalidEvent
    await sender.send_messages(to_servicebus_message(wire, send_at=tomorrow))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from postbus.events import DecodedMessage, WireMessage, decode

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage

__all__ = ["Delivery", "delivery_from", "to_servicebus_message"]


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received (or peeked) queue message, free of SDK types.

    ``locked_until`` is the lock's expiry when it was received (``None`` for a peeked message);
    ``dead_letter_reason``/``dead_letter_description`` are set on messages of a dead-letter queue.
    ``handle`` belongs to the source that produced the delivery: pass the delivery back to it to
    settle it.
    """

    body: bytes
    content_type: str | None
    application_properties: Mapping[Any, Any]
    message_id: str
    delivery_count: int = 0
    sequence_number: int | None = None
    subject: str | None = None
    enqueued_at: datetime | None = None
    locked_until: datetime | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    handle: Any = field(default=None, compare=False, repr=False)

    def decode(self) -> DecodedMessage:
        """The event and Postbus's delivery metadata; raises :class:`~postbus.errors.InvalidEvent`."""
        return decode(
            self.body, content_type=self.content_type, application_properties=self.application_properties
        )


def _body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return b"".join(body) if body is not None else b""


def delivery_from(message: ServiceBusReceivedMessage | ServiceBusMessage) -> Delivery:
    """The SDK-free view of a received or peeked message (or of one built for sending)."""
    received = getattr(message, "sequence_number", None) is not None
    reason = getattr(message, "dead_letter_reason", None)
    description = getattr(message, "dead_letter_error_description", None)
    return Delivery(
        body=_body(message),
        content_type=message.content_type,
        application_properties={_text(k): v for k, v in (message.application_properties or {}).items()},
        message_id=_text(message.message_id or ""),
        delivery_count=int(getattr(message, "delivery_count", 0) or 0),
        sequence_number=int(getattr(message, "sequence_number", 0) or 0) if received else None,
        subject=_text(message.subject) if message.subject is not None else None,
        enqueued_at=_aware(getattr(message, "enqueued_time_utc", None)),
        locked_until=_aware(getattr(message, "locked_until_utc", None)),
        dead_letter_reason=_text(reason) if reason is not None else None,
        dead_letter_description=_text(description) if description is not None else None,
        handle=message,
    )


def to_servicebus_message(wire: WireMessage, *, send_at: datetime | None = None) -> ServiceBusMessage:
    """Build the SDK message; ``send_at`` becomes the scheduled enqueue time."""
    from azure.servicebus import ServiceBusMessage

    properties: dict[str | bytes, int | float | bytes | bool | str | UUID] = {
        key: value for key, value in wire.application_properties.items()
    }
    return ServiceBusMessage(
        wire.body,
        message_id=wire.message_id,
        subject=wire.subject,
        content_type=wire.content_type,
        application_properties=properties,
        scheduled_enqueue_time_utc=send_at,
    )
