"""An in-memory queue with peek-lock semantics that drives the worker loop in unit tests.

:class:`InMemoryBroker` is a :class:`~postbus.bus.source.MessageSource` (dramatiq's ``StubBroker``
is the model): messages sent to it are received locked, and completing, abandoning,
dead-lettering and scheduling change what it holds, exactly the calls the worker makes on Service
Bus. Locks do not expire and nothing is persisted. Receives can be told to fail or to come back
without waiting, the two ways the SDK's receiver breaks::

    broker = InMemoryBroker()
    broker.send(encode(event))
    worker = Worker(settings, source=broker, mailer=FakeMailer())
    ...
    await broker.join(timeout=5)              # nothing active or locked any more
    assert broker.completed[0].message_id == event.id
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from postbus.bus.errors import BusError, ConnectionLost, LockLost
from postbus.bus.messages import Delivery
from postbus.events import WireMessage
from postbus.reasons import DeadLetterReason

__all__ = ["DeadLettered", "InMemoryBroker", "Scheduled"]


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message the worker dead-lettered, with the reason and description it gave."""

    delivery: Delivery
    reason: DeadLetterReason
    description: str


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A message scheduled to become visible at ``at``."""

    wire: WireMessage
    at: datetime


@dataclass(slots=True)
class _Faults:
    receive_errors: list[BusError] = field(default_factory=list)
    spin_receives: int = 0
    settle_errors: list[BusError] = field(default_factory=list)


class InMemoryBroker:
    """A :class:`~postbus.bus.source.MessageSource` held in memory; see the module docstring.

    ``now`` is the clock scheduled messages are released by (they become active once it has
    reached their time, checked at every receive).
    """

    def __init__(self, queue: str = "notifications", *, now: Callable[[], datetime] | None = None) -> None:
        self._queue = queue
        self._now = now or (lambda: datetime.now(UTC))
        self._sequence = itertools.count(1)
        self._pulse = asyncio.Event()
        self.active: list[Delivery] = []
        self.locked: list[Delivery] = []
        self.completed: list[Delivery] = []
        self.dead_lettered: list[DeadLettered] = []
        self.scheduled: list[Scheduled] = []
        #: Links handed out and closed so far (each pass of the worker loop opens one set).
        self.opened = 0
        self.closed = 0
        #: Receive calls made so far.
        self.receives = 0
        self.faults = _Faults()

    @property
    def queue(self) -> str:
        return self._queue

    # -- what a test does ---------------------------------------------------------------------------

    def send(self, wire: WireMessage, *, delivery_count: int = 0) -> Delivery:
        """Enqueue ``wire`` as an active message; returns the delivery a receive will hand out."""
        delivery = Delivery(
            body=wire.body,
            content_type=wire.content_type,
            application_properties=dict(wire.application_properties),
            message_id=wire.message_id,
            delivery_count=delivery_count,
            sequence_number=next(self._sequence),
            subject=wire.subject,
            enqueued_at=self._now(),
        )
        self.active.append(delivery)
        self._notify()
        return delivery

    def fail_receives(self, error: BusError | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` receives raise ``error`` (default: the connection is lost)."""
        failure = error or ConnectionLost("receive from the queue", "connection reset by the test")
        self.faults.receive_errors.extend([failure] * times)
        self._notify()  # a receive that is waiting fails now

    def spin_receives(self, times: int = 1) -> None:
        """Make the next ``times`` receives return nothing at once, as the SDK's does on a dead link."""
        self.faults.spin_receives += times

    def fail_settlements(self, error: BusError, *, times: int = 1) -> None:
        """Make the next ``times`` settlements (complete, abandon, dead-letter, schedule) raise ``error``."""
        self.faults.settle_errors.extend([error] * times)

    @property
    def idle(self) -> bool:
        """Nothing active and nothing locked (scheduled messages may still wait)."""
        return not self.active and not self.locked

    async def join(self, *, timeout: float) -> None:  # noqa: ASYNC109 - a deadline for a test, not a scope
        """Wait until :attr:`idle`; raises ``TimeoutError`` after ``timeout`` seconds."""
        await self.wait_for(lambda: self.idle, timeout=timeout)

    async def wait_for(self, condition: Callable[[], bool], *, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` holds, checked after every change; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._pulse.wait()

    # -- the MessageSource side ---------------------------------------------------------------------

    async def open(self) -> _MemoryLinks:
        self.opened += 1
        self._notify()
        return _MemoryLinks(self)

    async def close(self) -> None:
        return None

    def _release_due(self) -> None:
        now = self._now()
        due = [item for item in self.scheduled if item.at <= now]
        for item in due:
            self.scheduled.remove(item)
            self.send(item.wire)

    def _notify(self) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    def _settle_fault(self) -> None:
        if self.faults.settle_errors:
            error = self.faults.settle_errors.pop(0)
            self._notify()
            raise error

    def _take(self, delivery: Delivery) -> None:
        self._settle_fault()
        if delivery not in self.locked:
            raise LockLost("settle the message", f"{delivery.message_id} is not locked")
        self.locked.remove(delivery)


class _MemoryLinks:
    """The links :meth:`InMemoryBroker.open` hands out."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self._broker = broker

    async def receive(self, max_count: int, *, max_wait: float) -> list[Delivery]:
        broker = self._broker
        broker.receives += 1
        broker._notify()
        faults = broker.faults
        if faults.spin_receives:
            faults.spin_receives -= 1
            return []
        broker._release_due()
        with contextlib.suppress(TimeoutError):
            await broker.wait_for(lambda: bool(broker.active or faults.receive_errors), timeout=max_wait)
        if faults.receive_errors:
            error = faults.receive_errors.pop(0)
            broker._notify()
            raise error
        batch, broker.active = broker.active[:max_count], broker.active[max_count:]
        broker.locked.extend(batch)
        return batch

    async def complete(self, delivery: Delivery) -> None:
        self._broker._take(delivery)
        self._broker.completed.append(delivery)
        self._broker._notify()

    async def abandon(self, delivery: Delivery) -> None:
        self._broker._take(delivery)
        self._broker.active.append(replace(delivery, delivery_count=delivery.delivery_count + 1))
        self._broker._notify()

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason, description: str) -> None:
        self._broker._take(delivery)
        self._broker.dead_lettered.append(DeadLettered(delivery, DeadLetterReason(reason), description))
        self._broker._notify()

    async def schedule(self, wire: WireMessage, *, at: datetime) -> None:
        self._broker._settle_fault()
        self._broker.scheduled.append(Scheduled(wire, at))

    @contextlib.asynccontextmanager
    async def keep_locked(self, delivery: Delivery) -> AsyncIterator[None]:
        yield  # locks do not expire here

    async def close(self) -> None:
        self._broker.closed += 1
        self._broker._notify()
