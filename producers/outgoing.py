"""What a producer hands to the publisher, and how it becomes Service Bus messages.

Everything here is pure: validation, scheduling and the contract's wire encoding happen before a
connection is touched, so a bad event in a list of thousands stops the call before anything is sent::

    prepared = prepare([event, {"id": "o-2", ...}, ScheduledEvent(reminder, send_at=tomorrow)])
    [p.message_id for p in prepared]    # ["o-1", "o-2", "r-1"]

``properties_hook`` is the seam for telemetry: it returns extra application properties for one event
(the publisher puts ``traceparent``/``tracestate``/``Diagnostic-Id`` there through
``postbus.telemetry.PublishTrace``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from postbus.bus import to_servicebus_message
from postbus.errors import InvalidEvent
from postbus.events import NotificationEvent, WireMessage, encode, parse_event
from postbus.lanes import Lane

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage

__all__ = [
    "EventLike",
    "Outgoing",
    "Prepared",
    "PropertiesHook",
    "Resolved",
    "ScheduledEvent",
    "check_send_at",
    "encode_all",
    "prepare",
    "prepare_raw",
    "resolve",
]

#: Extra application properties for one event (the telemetry seam); values must be strings.
PropertiesHook: TypeAlias = Callable[[NotificationEvent], Mapping[str, str]]
#: The lane one event travels on (raises :class:`~postbus.lanes.LaneNotAllowed`).
LaneOf: TypeAlias = Callable[[NotificationEvent], Lane]


@runtime_checkable
class Outgoing(Protocol):
    """Anything with an ``event`` and an optional ``send_at`` (e.g. ``simulate.SimulatedEvent``)."""

    @property
    def event(self) -> NotificationEvent: ...

    @property
    def send_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """An event with the instant it should become visible on the queue (``None``: at once)."""

    event: NotificationEvent
    send_at: datetime | None = None


#: One item of ``publish_many``: an event, its JSON-like document, or an event with ``send_at``.
EventLike: TypeAlias = NotificationEvent | Mapping[str, Any] | Outgoing


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message ready to send; ``label`` names it in errors (the event id, or the message id)."""

    message: ServiceBusMessage
    message_id: str
    label: str
    scheduled: bool
    lane: Lane = Lane.NORMAL


def check_send_at(send_at: datetime | None, *, where: str = "") -> datetime | None:
    """Refuse a naive ``send_at``: Service Bus needs an instant, not a wall-clock reading."""
    if send_at is not None and (send_at.tzinfo is None or send_at.utcoffset() is None):
        raise InvalidEvent(
            f"{where}send_at: must be timezone-aware (e.g. 2026-12-24T09:00:00+01:00)", field="send_at"
        )
    return send_at


def _event_of(item: EventLike, default_send_at: datetime | None) -> tuple[NotificationEvent, datetime | None]:
    if isinstance(item, NotificationEvent):
        return item, default_send_at
    if isinstance(item, Mapping):
        return parse_event(item), default_send_at
    if isinstance(item, Outgoing):
        event = item.event
        if not isinstance(event, NotificationEvent):
            raise InvalidEvent(f"event: expected a NotificationEvent, got {type(event).__name__}")
        return event, item.send_at if item.send_at is not None else default_send_at
    raise InvalidEvent(f"expected an event, a mapping or an event with send_at, got {type(item).__name__}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """An event that passed every check, with its ``send_at`` and the lane it travels on."""

    event: NotificationEvent
    send_at: datetime | None = None
    lane: Lane = Lane.NORMAL


def resolve(
    items: Iterable[EventLike],
    *,
    send_at: datetime | None = None,
    check: Callable[[NotificationEvent], None] | None = None,
    lane_of: LaneOf | None = None,
) -> list[Resolved]:
    """Validate every item into an event with its ``send_at`` (and run ``check`` and ``lane_of`` on
    it, once), before anything is uploaded or encoded.

    Raises :class:`InvalidEvent` naming the index and field of the first bad item
    (``events[3]: to.0.address: not a valid email address: 'x'``).
    """
    check_send_at(send_at)
    resolved: list[Resolved] = []
    for index, item in enumerate(items):
        try:
            event, when = _event_of(item, send_at)
            check_send_at(when)
            if check is not None:
                check(event)
            lane = lane_of(event) if lane_of is not None else Lane.NORMAL
        except InvalidEvent as exc:
            # Same class (a lane refusal stays one), with the item's index in front.
            raise type(exc)(f"events[{index}]: {exc}", field=exc.field) from None
        resolved.append(Resolved(event, when, lane))
    return resolved


def encode_all(
    resolved: Iterable[Resolved],
    *,
    properties_hook: PropertiesHook | None = None,
    now: datetime | None = None,
) -> list[Prepared]:
    """Encode resolved events as Service Bus messages (no check runs again)."""
    first_enqueued = now or datetime.now(UTC)
    prepared: list[Prepared] = []
    for item in resolved:
        event = item.event
        extra = dict(properties_hook(event)) if properties_hook is not None else None
        wire = encode(event, attempt=0, first_enqueued=first_enqueued, extra_properties=extra)
        message = to_servicebus_message(wire, send_at=item.send_at)
        prepared.append(Prepared(message, wire.message_id, event.id, item.send_at is not None, item.lane))
    return prepared


def prepare(
    items: Iterable[EventLike],
    *,
    send_at: datetime | None = None,
    properties_hook: PropertiesHook | None = None,
    now: datetime | None = None,
    check: Callable[[NotificationEvent], None] | None = None,
    lane_of: LaneOf | None = None,
) -> list[Prepared]:
    """Validate every item (:func:`resolve`, running ``check`` on each), choose its lane (``lane_of``;
    none: normal), then encode each as a Service Bus message; nothing is encoded past the first bad item."""
    return encode_all(
        resolve(items, send_at=send_at, check=check, lane_of=lane_of),
        properties_hook=properties_hook,
        now=now,
    )


def prepare_raw(wires: Iterable[WireMessage], *, send_at: datetime | None = None) -> list[Prepared]:
    """Wire messages as they are (no validation): for tests and demos that inject broken bodies."""
    check_send_at(send_at)
    return [
        Prepared(
            to_servicebus_message(wire, send_at=send_at),
            wire.message_id,
            wire.message_id,
            send_at is not None,
        )
        for wire in wires
    ]
