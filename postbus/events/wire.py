"""How an event travels on the queue: body, message ids and the ``postbus-*`` application properties.

:func:`encode` turns an event into a :class:`WireMessage` (body, content type, subject, message id,
application properties) and :func:`decode` reads one back. Everything Postbus keeps beside an
event lives here: the properties, the message id of every attempt and replay generation, and the
copies a delayed retry (:func:`retry_wire`) and a dead-letter replay (:func:`replay_wire`) publish.
The Service Bus adapter (:mod:`postbus.bus`) converts a :class:`WireMessage` to and from the SDK's
message types::

    wire = encode(event)                      # message_id == event.id, postbus-attempt == 0
    decoded = decode(wire.body, content_type=wire.content_type,
                     application_properties=wire.application_properties)
    retry = retry_wire(decoded, error="503", spend_attempt=True, now=now)   # message_id "<id>#1"
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from postbus.errors import InvalidEvent
from postbus.events.schema import MAX_ID_LENGTH, SCHEMA, NotificationEvent, parse_event

__all__ = [
    "CONTENT_TYPE",
    "MAX_LAST_ERROR",
    "PROP_ATTEMPT",
    "PROP_FIRST_ENQUEUED",
    "PROP_GENERATION",
    "PROP_LAST_ERROR",
    "PROP_SCHEMA",
    "PROP_THROTTLED",
    "DecodedMessage",
    "EventIdentity",
    "WireMessage",
    "decode",
    "encode",
    "identify",
    "replay_message_id",
    "replay_wire",
    "retry_message_id",
    "retry_wire",
]

CONTENT_TYPE: Final = "application/json"

PROP_SCHEMA: Final = "postbus-schema"
#: Delayed retries of this generation so far (0 on the first attempt).
PROP_ATTEMPT: Final = "postbus-attempt"
#: When the event was first enqueued; the retry age limit and the end-to-end latency count from it.
PROP_FIRST_ENQUEUED: Final = "postbus-first-enqueued"
#: The error that caused the latest delayed retry (for humans reading a dead letter).
PROP_LAST_ERROR: Final = "postbus-last-error"
#: Delayed retries that spent no attempt (throttling, a systemic outage): not counted in the budget.
PROP_THROTTLED: Final = "postbus-throttled"
#: Send generation after a dead-letter replay; each generation gets its own ACS operation id.
PROP_GENERATION: Final = "postbus-replay"
#: Properties with this prefix describe Postbus's own bookkeeping; every other one (trace context) is kept.
_OURS: Final = "postbus-"
#: Longest last error kept on a retry copy; the full text is in the log line.
MAX_LAST_ERROR: Final = 500
#: Longest tenant or type copied from a body that did not decode (log lines only).
_MAX_IDENTITY: Final = 100


@dataclass(frozen=True, slots=True)
class WireMessage:
    """The SDK-neutral shape of a queue message carrying one event."""

    body: bytes
    message_id: str
    subject: str
    content_type: str = CONTENT_TYPE
    application_properties: dict[str, str | int] = field(default_factory=dict)


def _count(properties: Mapping[str, str | int], name: str) -> int:
    value = properties.get(name, 0)
    try:
        return max(0, int(value))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """An event read back from the queue, with the delivery metadata Postbus keeps beside it."""

    event: NotificationEvent
    attempt: int
    first_enqueued: datetime | None
    application_properties: dict[str, str | int]

    @property
    def generation(self) -> int:
        """The replay generation (0 until the event is replayed from the dead-letter queue)."""
        return _count(self.application_properties, PROP_GENERATION)

    @property
    def throttled(self) -> int:
        """Delayed retries that spent no attempt (waiting for quota or for an outage to end)."""
        return _count(self.application_properties, PROP_THROTTLED)

    @property
    def spent(self) -> int:
        """Attempts this generation has spent: delayed retries less those that spent nothing."""
        return max(0, self.attempt - self.throttled)


@dataclass(frozen=True, slots=True)
class EventIdentity:
    """What identifies an event in logs, read best-effort from a body that may not be a valid event."""

    id: str
    type: str = ""
    tenant: str = ""


def identify(body: bytes) -> EventIdentity | None:
    """The ``id`` (with ``type`` and ``tenant``) of a JSON body that failed validation, if it has one.

    So the log line of an ``InvalidEvent`` dead letter can still be found by event id. Only short
    single-line strings are taken: the body is untrusted.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None

    def text(key: str, limit: int) -> str:
        value = document.get(key)
        if not isinstance(value, str) or len(value) > limit or not value.isprintable():
            return ""
        return value

    event_id = text("id", MAX_ID_LENGTH)
    if not event_id:
        return None
    return EventIdentity(event_id, text("type", _MAX_IDENTITY), text("tenant", _MAX_IDENTITY))


def retry_message_id(event_id: str, attempt: int, generation: int = 0) -> str:
    """Message id of an attempt: unique per attempt and replay generation, so duplicate detection keeps it.

    ``<id>``, ``<id>#<attempt>`` for the first generation; ``<id>#r<g>``, ``<id>#r<g>#<attempt>``
    after a dead-letter replay. Event ids cannot contain ``#``, so the forms never collide.
    """
    base = event_id if generation == 0 else f"{event_id}#r{generation}"
    return base if attempt == 0 else f"{base}#{attempt}"


def replay_message_id(event_id: str, generation: int) -> str:
    """``<event id>#r<generation>``: distinct from ``<id>`` and ``<id>#<attempt>``, stable across re-runs."""
    if generation < 1:
        raise ValueError("a replay generation starts at 1")
    return retry_message_id(event_id, 0, generation)


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode(
    event: NotificationEvent,
    *,
    attempt: int = 0,
    generation: int = 0,
    first_enqueued: datetime | None = None,
    extra_properties: Mapping[str, str | int] | None = None,
) -> WireMessage:
    """Encode an event as a queue message.

    The first attempt carries ``message_id = event.id`` so Service Bus duplicate detection drops
    producer re-sends; delayed retries get ``<id>#<attempt>``.
    """
    properties: dict[str, str | int] = {PROP_SCHEMA: SCHEMA, PROP_ATTEMPT: attempt}
    if first_enqueued is not None:
        properties[PROP_FIRST_ENQUEUED] = _timestamp(first_enqueued)
    if extra_properties:
        properties.update(extra_properties)
    return WireMessage(
        body=event.to_json(),
        message_id=retry_message_id(event.id, attempt, generation),
        subject=event.type,
        application_properties=properties,
    )


def _foreign(properties: Mapping[str, str | int]) -> dict[str, str | int]:
    """The properties that are not Postbus's own bookkeeping (trace context and the like)."""
    return {key: value for key, value in properties.items() if not key.startswith(_OURS)}


def retry_wire(decoded: DecodedMessage, *, error: str, spend_attempt: bool, now: datetime) -> WireMessage:
    """The scheduled copy of a message for a delayed retry.

    Same event and generation, attempt + 1 (hence a new message id, which duplicate detection lets
    through), the original first-enqueued time, the last error, the count of retries that spent no
    attempt, and every foreign property (trace context) kept.
    """
    generation = decoded.generation
    extra: dict[str, str | int] = {
        **_foreign(decoded.application_properties),
        PROP_THROTTLED: decoded.throttled + (0 if spend_attempt else 1),
        PROP_LAST_ERROR: error[:MAX_LAST_ERROR],
    }
    if generation:
        extra[PROP_GENERATION] = generation
    return encode(
        decoded.event,
        attempt=decoded.attempt + 1,
        generation=generation,
        first_enqueued=decoded.first_enqueued or now,
        extra_properties=extra,
    )


def replay_wire(decoded: DecodedMessage, *, generation: int, now: datetime) -> WireMessage:
    """The message that replays a dead-lettered event as ``generation``.

    A fresh attempt budget (``postbus-attempt = 0``), a fresh first-enqueued time (the retry age
    limit counts from it), ``postbus-replay = generation``, message id ``<event id>#r<generation>``
    and every foreign property (trace context) kept; the previous generation's last error and
    throttle count are dropped.
    """
    if generation < 1:
        raise ValueError("a replay generation starts at 1")
    extra = {**_foreign(decoded.application_properties), PROP_GENERATION: generation}
    return encode(decoded.event, attempt=0, generation=generation, first_enqueued=now, extra_properties=extra)


def _text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def decode(
    body: bytes | Iterable[bytes],
    *,
    content_type: str | None,
    application_properties: Mapping[Any, Any] | None,
) -> DecodedMessage:
    """Decode a queue message into an event, raising :class:`InvalidEvent` with the reason."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise InvalidEvent(
            f"content_type: expected {CONTENT_TYPE}, got {content_type!r}", field="content_type"
        )
    raw = body if isinstance(body, bytes) else b"".join(body)
    properties: dict[str, str | int] = {}
    for key, value in (application_properties or {}).items():
        text = _text(value)
        if isinstance(text, str | int) and not isinstance(text, bool):
            properties[str(_text(key))] = text
    event = parse_event(raw)
    attempt = properties.get(PROP_ATTEMPT, 0)
    first = properties.get(PROP_FIRST_ENQUEUED)
    try:
        attempt_number = int(attempt)
        first_enqueued = datetime.fromisoformat(first) if isinstance(first, str) else None
    except ValueError:
        raise InvalidEvent(
            f"{PROP_ATTEMPT}/{PROP_FIRST_ENQUEUED}: malformed delivery metadata", field=PROP_ATTEMPT
        ) from None
    return DecodedMessage(event, max(attempt_number, 0), first_enqueued, properties)
