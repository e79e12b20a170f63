"""Replay dead-lettered events as a new send generation, safely and at a chosen pace.

For each matching dead-lettered message, under its peek-lock:

1. if it never decoded, skip it (replaying cannot help; fix and republish it by hand);
2. unless ``force``, look up the ACS operation of its generation; if ACS has it (running or
   succeeded), leave it and report it as skipped: that email went out already;
3. publish generation ``N + 1`` to the main queue, and only then complete the dead-letter copy;
   if publishing fails, abandon it, so it stays in the dead-letter queue.

Generation ``N + 1`` has a fresh attempt budget (``postbus-attempt = 0``), a fresh
``postbus-first-enqueued`` (the retry age limit counts from it), ``postbus-replay = N + 1`` (the
worker derives a new ACS operation id from it), every non-Postbus property (trace context) kept,
and message id ``<event id>#r<N + 1>``. Event ids cannot contain ``#``, so this never collides
with the first attempt (``<id>``) or a delayed retry (``<id>#<attempt>``), and a replay that is
published twice (an interrupted run, then a re-run) is dropped by duplicate detection. A message
that is published but not completed (interrupted in between) is replayed again by the next run
with the same message id and the same operation id, so ACS still sends it once.

Example::

    async with DeadLetterQueue(settings) as dlq, AcsStatusClient.from_settings(settings) as acs:
        summary = await replay(dlq, acs, options=ReplayOptions(selection=sel, rate=5.0),
                               namespace=settings.operation_namespace)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from postbus.bus import Delivery
from postbus.events import WireMessage, replay_message_id
from postbus.events import replay_wire as encode_replay
from postbus.logs import get_logger
from postbus.worker.mailer import operation_id_for
from postbus.worker.ops.acs import OperationLookup
from postbus.worker.ops.deadletters import DeadLetterEntry, DeadLetterPort, sweep
from postbus.worker.ops.errors import OpsError
from postbus.worker.ops.filters import Selection

__all__ = [
    "Action",
    "Pacer",
    "ReplayItem",
    "ReplayOptions",
    "ReplaySummary",
    "replay",
    "replay_message_id",
    "replay_wire",
]

log = get_logger(__name__)

Action = Literal["replayed", "skipped", "failed", "would-replay"]


def replay_wire(entry: DeadLetterEntry, *, generation: int, now: datetime) -> WireMessage:
    """The queue message that replays ``entry`` as ``generation`` (see :func:`postbus.events.replay_wire`)."""
    if entry.decoded is None:
        raise ValueError("only a decodable event can be replayed")
    return encode_replay(entry.decoded, generation=generation, now=now)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What to replay and how: ``rate`` in messages per second (``None``: as fast as the queue takes them)."""

    selection: Selection = field(default_factory=Selection)
    limit: int | None = None
    rate: float | None = None
    dry_run: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """What happened to one matching dead-lettered message."""

    sequence_number: int
    event_id: str
    generation: int  # the generation that was dead-lettered
    action: Action
    detail: str = ""
    message_id: str = ""  # of the replay, when one was (or would be) published

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence_number": self.sequence_number,
            "event_id": self.event_id,
            "generation": self.generation,
            "action": self.action,
            "detail": self.detail,
            "message_id": self.message_id,
        }


@dataclass(slots=True)
class ReplaySummary:
    """Every item in order, with counts by action."""

    items: list[ReplayItem] = field(default_factory=list)
    interrupted: bool = False

    @property
    def counts(self) -> Counter[str]:
        return Counter(item.action for item in self.items)

    def to_json(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "replayed": counts["replayed"],
            "skipped": counts["skipped"],
            "failed": counts["failed"],
            "would_replay": counts["would-replay"],
            "interrupted": self.interrupted,
            "items": [item.to_json() for item in self.items],
        }


class Pacer:
    """Spaces calls at ``rate`` per second: call ``n`` starts no earlier than ``start + n / rate``.

    Waiting ends early when ``stop`` is set, so an interrupt is not held up by the pace.
    """

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._next: float | None = None

    async def wait(self, stop: asyncio.Event) -> None:
        now = self._clock()
        if self._next is None or not self._interval:
            self._next = now + self._interval
            return
        delay = self._next - now
        self._next = max(self._next, now) + self._interval
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await stop.wait()
            except TimeoutError:
                pass


class _Replay:
    """One replay run: the per-message steps, each a small method."""

    def __init__(
        self,
        port: DeadLetterPort,
        lookup: OperationLookup | None,
        *,
        options: ReplayOptions,
        namespace: UUID,
        stop: asyncio.Event,
        on_item: Callable[[ReplayItem], None] | None,
        now: Callable[[], datetime],
    ) -> None:
        self.port = port
        self.lookup = lookup
        self.options = options
        self.namespace = namespace
        self.stop = stop
        self.on_item = on_item
        self.now = now
        self.summary = ReplaySummary()
        self.pacer = Pacer(options.rate)

    def record(self, entry: DeadLetterEntry, action: Action, detail: str = "", message_id: str = "") -> None:
        item = ReplayItem(entry.sequence_number, entry.event_id, entry.generation, action, detail, message_id)
        self.summary.items.append(item)
        log.info("dlq.replay", action=action, event_id=item.event_id, sequence_number=item.sequence_number)
        if self.on_item is not None:
            self.on_item(item)

    async def already_sent(self, entry: DeadLetterEntry) -> bool | None:
        """True when ACS has this generation's operation; ``None`` when it could not be told."""
        if self.options.force or self.lookup is None:
            return False
        operation_id = operation_id_for(entry.event_id, namespace=self.namespace, generation=entry.generation)
        try:
            info = await self.lookup.lookup(operation_id)
        except OpsError as exc:
            self.record(entry, "failed", f"ACS status lookup failed, left in the dead-letter queue: {exc}")
            return None
        if info is not None and info.accepted:
            self.record(entry, "skipped", f"ACS already has operation {operation_id} ({info.status})")
            return True
        return False

    async def handle(self, message: Delivery | None, entry: DeadLetterEntry) -> bool:
        """Replay one message; True when its dead-letter copy was completed."""
        if entry.decoded is None:
            self.record(
                entry,
                "skipped",
                f"not a valid event, cannot be replayed (fix and republish it): {entry.decode_error}",
            )
            return False
        if not self.options.force or not self.options.dry_run:  # a status read or a publish follows
            await self.pacer.wait(self.stop)
        if await self.already_sent(entry) is not False:
            return False
        generation = entry.generation + 1
        wire = replay_wire(entry, generation=generation, now=self.now())
        if self.options.dry_run or message is None:
            self.record(entry, "would-replay", f"as generation {generation}", wire.message_id)
            return False
        try:
            await self.port.publish(wire)
        except OpsError as exc:
            self.record(entry, "failed", f"publish failed, left in the dead-letter queue: {exc}")
            return False  # the sweep abandons it
        try:
            await self.port.complete(message)
        except OpsError as exc:
            # Published but still dead-lettered: a re-run publishes the same message id (dropped by
            # duplicate detection) and the same operation id (ACS sends it once).
            detail = f"dead-letter copy not removed ({exc}); a re-run is safe"
            self.record(entry, "replayed", detail, wire.message_id)
            return False
        self.record(entry, "replayed", f"as generation {generation}", wire.message_id)
        return True

    async def run(self) -> ReplaySummary:
        options = self.options
        try:
            if options.dry_run:
                # Peek only: a dry run locks nothing and leaves even delivery counts as they were.
                async for entry in self.port.browse(options.selection, limit=options.limit):
                    if self.stop.is_set():
                        break
                    await self.handle(None, entry)
            else:
                await sweep(
                    self.port,
                    selection=options.selection,
                    limit=options.limit,
                    stop=self.stop,
                    handle=self.handle,
                )
        finally:
            self.summary.interrupted = self.stop.is_set()
        return self.summary


async def replay(
    port: DeadLetterPort,
    lookup: OperationLookup | None,
    *,
    options: ReplayOptions,
    namespace: UUID,
    stop: asyncio.Event | None = None,
    on_item: Callable[[ReplayItem], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReplaySummary:
    """Replay the matching dead-lettered messages; see the module docstring for the guarantees.

    ``lookup`` may be ``None`` only with ``force`` (nothing is checked against ACS). Setting
    ``stop`` finishes the message in hand and releases the rest; cancelling the task releases
    everything not yet completed.
    """
    if lookup is None and not options.force:
        raise OpsError("replay needs ACS to check for already-sent events (configure ACS, or pass --force)")
    run = _Replay(
        port,
        lookup,
        options=options,
        namespace=namespace,
        stop=stop or asyncio.Event(),
        on_item=on_item,
        now=now,
    )
    return await run.run()
