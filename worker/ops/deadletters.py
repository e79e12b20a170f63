"""The dead-letter subqueue: what one dead-lettered message says, and safe access to the queue.

:class:`DeadLetterEntry` is the SDK-free view of one dead-lettered message (it tolerates bodies
that never decoded: ``InvalidEvent`` dead-letters are exactly those). :class:`DeadLetterQueue` is
the ``dlq`` commands' view of the queue, over the Service Bus adapter's links (:mod:`postbus.bus`),
with its failures as :class:`~worker.ops.errors.OpsError`; :func:`sweep` visits each matching message once under a
peek-lock, handing it to a callback that settles it or leaves it; whatever it leaves is abandoned
at the end (also on cancellation), so it stays in the dead-letter queue::

    async with DeadLetterQueue(settings) as dlq:
        async for entry in dlq.browse(selection, limit=50):     # peek: no locks, no side effects
            ...
        await sweep(dlq, selection=selection, limit=10, stop=stop, handle=handler)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Protocol, Self

from postbus.bus import (
    AccessDenied,
    AuthenticationFailed,
    BusError,
    Delivery,
    QueueLinks,
    QueueNotFound,
    ServiceBusConnection,
)
from postbus.errors import InvalidEvent
from postbus.events import (
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_GENERATION,
    DecodedMessage,
    NotificationEvent,
    WireMessage,
)
from postbus.logs import get_logger, mask_address, redact
from postbus.settings import Settings
from postbus.worker.ops.errors import OpsError
from postbus.worker.ops.filters import Selection

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "DeadLetterEntry",
    "DeadLetterPort",
    "DeadLetterQueue",
    "entry_from",
    "masked_event",
    "sweep",
]

log = get_logger(__name__)

#: How long a receive waits for more messages before the sweep decides the subqueue is exhausted.
DEFAULT_WAIT_SECONDS: Final = 2.0
#: Held locks are renewed for this long; a sweep that runs longer lets them lapse (nothing is lost).
MAX_LOCK_RENEWAL: Final = 3600.0
# One message per receive: a larger request leaves link credit behind, and messages that arrive on it
# after the call returned sit locked in the SDK's buffer where an interrupted sweep cannot release them.
_BATCH: Final = 1
_SETTLE_TIMEOUT: Final = 15.0


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: object) -> int:
    try:
        return max(0, int(_text(value)))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One dead-lettered message, readable whether or not its body is a valid event.

    ``enqueued_at`` is when the failing attempt entered the queue: Service Bus records no
    dead-letter time, and the worker dead-letters within one processing of a delivery, so it is
    the closest instant the broker keeps. ``attempt`` counts delayed retries of this generation
    and ``generation`` replays (``postbus-replay``).
    """

    sequence_number: int
    message_id: str
    event_id: str
    type: str
    tenant: str
    reason: str
    description: str
    attempt: int
    generation: int
    delivery_count: int
    enqueued_at: datetime | None
    first_enqueued_at: datetime | None
    decoded: DecodedMessage | None = None
    decode_error: str | None = None
    body: bytes = field(default=b"", repr=False)

    @property
    def event(self) -> NotificationEvent | None:
        return self.decoded.event if self.decoded else None

    def to_json(self, *, body: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the body (masked) only when asked for."""
        out: dict[str, Any] = {
            "sequence_number": self.sequence_number,
            "message_id": self.message_id,
            "event_id": self.event_id,
            "type": self.type,
            "tenant": self.tenant,
            "reason": self.reason,
            "description": redact(self.description),
            "attempt": self.attempt,
            "generation": self.generation,
            "delivery_count": self.delivery_count,
            "enqueued_at": self.enqueued_at.isoformat() if self.enqueued_at else None,
            "first_enqueued_at": self.first_enqueued_at.isoformat() if self.first_enqueued_at else None,
        }
        if self.decode_error is not None:
            out["decode_error"] = redact(self.decode_error)
        if body:
            out["body"] = self.masked_body()
        return out

    def masked_body(self) -> Any:
        """The event with every recipient address masked, or the raw text (masked) if it never decoded."""
        if self.event is not None:
            return masked_event(self.event)
        return redact(self.body.decode("utf-8", "replace"))


def _mask_tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_mask_tree(item) for item in value]
    if isinstance(value, dict):
        return {key: _mask_tree(item) for key, item in value.items()}
    return value


def masked_event(event: NotificationEvent) -> dict[str, Any]:
    """The event as JSON with recipients masked (``j***@example.com``) and addresses in data masked."""
    document: dict[str, Any] = json.loads(event.to_json())
    for key in ("to", "cc", "bcc", "reply_to"):
        for address in document.get(key, []):
            address["address"] = mask_address(address["address"])
    document["data"] = _mask_tree(document.get("data", {}))
    document["headers"] = _mask_tree(document.get("headers", {}))
    return document


def entry_from(delivery: Delivery) -> DeadLetterEntry:
    """Read a received (or peeked) dead-lettered message."""
    properties = {_text(k): v for k, v in (delivery.application_properties or {}).items()}
    decoded: DecodedMessage | None = None
    error: str | None = None
    try:
        decoded = delivery.decode()
    except InvalidEvent as exc:
        error = str(exc)
    first: datetime | None = None
    if decoded is not None:
        first = decoded.first_enqueued
    elif PROP_FIRST_ENQUEUED in properties:
        try:
            first = datetime.fromisoformat(_text(properties[PROP_FIRST_ENQUEUED]))
        except ValueError:
            first = None
    event = decoded.event if decoded else None
    return DeadLetterEntry(
        sequence_number=delivery.sequence_number or 0,
        message_id=delivery.message_id,
        event_id=event.id if event else delivery.message_id.split("#", 1)[0],
        type=event.type if event else delivery.subject or "",
        tenant=event.tenant if event else "",
        reason=delivery.dead_letter_reason or "",
        description=delivery.dead_letter_description or "",
        attempt=decoded.attempt if decoded else _int(properties.get(PROP_ATTEMPT, 0)),
        generation=_int(properties.get(PROP_GENERATION, 0)),
        delivery_count=delivery.delivery_count,
        enqueued_at=delivery.enqueued_at,
        first_enqueued_at=first,
        decoded=decoded,
        decode_error=error,
        body=delivery.body,
    )


class DeadLetterPort(Protocol):
    """What :func:`sweep` and the replay need from the queue (the seam for unit tests)."""

    def browse(self, selection: Selection, *, limit: int | None = None) -> AsyncIterator[DeadLetterEntry]:
        """Matching entries without locking anything (peek)."""
        ...

    async def receive(self, max_count: int) -> list[Delivery]:
        """Peek-lock up to ``max_count`` dead-lettered messages; empty when none arrive in time."""
        ...

    async def complete(self, message: Delivery) -> None:
        """Remove a locked dead-lettered message."""
        ...

    async def abandon(self, message: Delivery) -> None:
        """Release a locked dead-lettered message (it stays in the dead-letter queue)."""
        ...

    async def publish(self, wire: WireMessage) -> None:
        """Send a message to the main queue."""
        ...


class DeadLetterQueue:
    """:class:`DeadLetterPort` over the Service Bus adapter: a peek-lock DLQ receiver and a main-queue sender.

    Example::

        async with DeadLetterQueue(settings) as dlq:
            [message] = await dlq.receive(1)
            await dlq.abandon(message)
    """

    def __init__(self, settings: Settings, *, wait_time: float = DEFAULT_WAIT_SECONDS) -> None:
        self._connection = ServiceBusConnection.from_settings(settings, purpose="the dead-letter commands")
        self._queue = settings.queue
        self._wait_time = wait_time
        # Held messages may wait behind a slow, rate-limited replay: their locks are kept.
        self._links = QueueLinks(self._connection, self._queue, dead_letters=True, hold_for=MAX_LOCK_RENEWAL)

    async def __aenter__(self) -> Self:
        try:
            with self._guard():
                await self._links.open()
        except BaseException:
            await self._connection.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._links.close()
        finally:
            await self._connection.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Service Bus failures as one line for the operator."""
        try:
            yield
        except QueueNotFound as exc:
            raise OpsError(f"queue {self._queue!r} does not exist in this namespace (POSTBUS_QUEUE)") from exc
        except (AuthenticationFailed, AccessDenied) as exc:
            raise OpsError(f"Service Bus refused the credentials: {exc.detail}") from exc
        except BusError as exc:
            raise OpsError(str(exc)) from exc

    async def browse(
        self, selection: Selection, *, limit: int | None = None
    ) -> AsyncIterator[DeadLetterEntry]:
        """Matching entries in sequence order, by peeking (no locks, no delivery-count change)."""
        found = 0
        next_seq = 0
        while limit is None or found < limit:
            with self._guard():
                batch = await self._links.peek(100, from_sequence=next_seq)
            if not batch:
                return
            for delivery in batch:
                next_seq = max(next_seq, (delivery.sequence_number or 0) + 1)
                entry = entry_from(delivery)
                if selection.matches(entry):
                    found += 1
                    yield entry
                    if limit is not None and found >= limit:
                        return

    async def receive(self, max_count: int) -> list[Delivery]:
        with self._guard():
            return await self._links.receive(max_count, max_wait=self._wait_time)

    async def complete(self, message: Delivery) -> None:
        with self._guard():
            await self._links.complete(message)

    async def abandon(self, message: Delivery) -> None:
        with self._guard():
            await self._links.abandon(message)

    async def publish(self, wire: WireMessage) -> None:
        with self._guard():
            await self._links.send(wire)


Handler = Callable[[Delivery, DeadLetterEntry], Awaitable[bool]]


async def sweep(
    port: DeadLetterPort,
    *,
    selection: Selection,
    limit: int | None,
    stop: asyncio.Event,
    handle: Handler,
) -> int:
    """Visit each matching dead-lettered message once, under its peek-lock; returns how many were handled.

    ``handle(message, entry)`` returns True when it settled the message (completed it). Every
    message it leaves, every non-matching one and everything received after ``stop`` is set or
    the limit is reached stays locked until the end, then is abandoned: it remains in the
    dead-letter queue, and holding it keeps the sweep from seeing it twice. On cancellation the
    message in hand is abandoned too, so an interrupted sweep loses nothing.
    """
    held: list[Delivery] = []
    handled = 0
    try:
        while not stop.is_set() and (limit is None or handled < limit):
            batch = await port.receive(_BATCH if limit is None else max(1, min(_BATCH, limit - handled)))
            if not batch:
                break
            for message in batch:
                held.append(message)
                if stop.is_set() or (limit is not None and handled >= limit):
                    continue
                entry = entry_from(message)
                if not selection.matches(entry):
                    continue
                handled += 1
                if await handle(message, entry):
                    held.remove(message)
    finally:
        await _release(port, held)
    return handled


async def _release(port: DeadLetterPort, held: list[Delivery]) -> None:
    """Abandon what the sweep holds; a failure only means the lock lapses later (nothing is lost)."""
    for message in held:
        try:
            async with asyncio.timeout(_SETTLE_TIMEOUT):
                await port.abandon(message)
        except (OpsError, TimeoutError) as exc:
            log.warning("dlq.abandon_failed", error=str(exc))
