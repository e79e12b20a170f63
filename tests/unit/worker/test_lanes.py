"""Priority lanes in the worker: critical first, normal:bulk by weight, tenants in turn, lanes apart.

The send gate here is a turnstile the test opens one permit at a time, so every assertion is about
*who* got a permit, never about how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from postbus.bus import InMemoryBroker, MessageSource, QueueNotFound
from postbus.events import WireMessage, encode, parse_event
from postbus.lanes import Lane
from postbus.logs import capture_lines
from postbus.settings import Settings
from postbus.worker.mailer import FakeMailer, SendResult
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from postbus.worker.scheduler import LaneScheduler
from tests.support import eventually

_renderer = TemplateRenderer()


class Turnstile:
    """A :class:`~worker.throttle.SendGate` that hands out a permit each time the test opens it."""

    def __init__(self) -> None:
        self._permits = asyncio.Semaphore(0)
        self.taken = 0

    async def acquire(self) -> None:
        await self._permits.acquire()
        self.taken += 1

    def open(self, permits: int = 1) -> None:
        for _ in range(permits):
            self._permits.release()

    def on_accepted(self) -> None:
        pass

    def on_throttled(self, retry_after: float) -> None:
        pass

    def set_replicas(self, count: int | None) -> None:
        pass

    @property
    def rate(self) -> float:
        return math.inf

    @property
    def paused_until(self) -> float:
        return 0.0


def _event(event_id: str, *, tenant: str = "contoso", type_: str = "order.confirmation") -> WireMessage:
    return encode(
        parse_event(
            {
                "id": event_id,
                "type": type_,
                "tenant": tenant,
                "to": ["jane@example.com"],
                "sender": "orders",
                "data": _renderer.sample_data(type_),
            }
        )
    )


def _brokers() -> dict[Lane, InMemoryBroker]:
    return {lane: InMemoryBroker(f"notifications-{lane.value}") for lane in Lane}


@contextlib.asynccontextmanager
async def running(worker: Worker, brokers: Mapping[Lane, InMemoryBroker]) -> AsyncIterator[asyncio.Task[Any]]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        first = next(iter(brokers.values()))
        await first.wait_for(lambda: all(b.opened for b in brokers.values()) or task.done(), timeout=10)
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


# -- the scheduler alone ----------------------------------------------------------------------------


async def _waiters(scheduler: LaneScheduler, requests: list[tuple[Lane, str]]) -> list[asyncio.Task[None]]:
    tasks = []
    for lane, tenant in requests:
        tasks.append(asyncio.create_task(scheduler.acquire(lane, tenant)))
        await asyncio.sleep(0)
    return tasks


async def _grant(gate: Turnstile, tasks: list[asyncio.Task[None]], count: int) -> list[int]:
    """Open ``count`` permits one by one; the indexes of the waiters that got them, in order."""
    order: list[int] = []
    for _ in range(count):
        gate.open()
        done, _ = await asyncio.wait(
            [t for t in tasks if not t.done()], timeout=5, return_when=asyncio.FIRST_COMPLETED
        )
        assert len(done) == 1, "one permit, one waiter"
        order.append(tasks.index(done.pop()))
    return order


async def test_a_critical_waiter_gets_the_next_permit_ahead_of_a_normal_backlog() -> None:
    gate = Turnstile()
    scheduler = LaneScheduler(gate)
    tasks = await _waiters(
        scheduler, [(Lane.NORMAL, "a")] * 6 + [(Lane.BULK, "a")] * 3 + [(Lane.CRITICAL, "a")]
    )
    order = await _grant(gate, tasks, 2)
    assert order[0] == 9  # the critical one, though it came last
    for task in tasks:
        task.cancel()
    await scheduler.close()


async def test_normal_and_bulk_share_permits_by_weight_and_bulk_is_never_starved() -> None:
    gate = Turnstile()
    scheduler = LaneScheduler(gate, weights={Lane.NORMAL: 4, Lane.BULK: 1})
    tasks = await _waiters(scheduler, [(Lane.NORMAL, "a")] * 40 + [(Lane.BULK, "a")] * 40)
    order = await _grant(gate, tasks, 25)
    bulk = [i for i in order if i >= 40]
    assert len(bulk) == 5
    # Interleaved, not in a run: bulk gets one of every five permits throughout.
    assert all(any(i >= 40 for i in order[start : start + 5]) for start in range(0, 25, 5))
    for task in tasks:
        task.cancel()
    await scheduler.close()


async def test_tenants_of_a_lane_take_turns_among_the_held_messages() -> None:
    gate = Turnstile()
    scheduler = LaneScheduler(gate)
    tasks = await _waiters(scheduler, [(Lane.NORMAL, "burst")] * 10 + [(Lane.NORMAL, "quiet")] * 2)
    order = await _grant(gate, tasks, 4)
    assert sorted(order) == [0, 1, 10, 11]  # the quiet tenant's two, after one burst message each
    for task in tasks:
        task.cancel()
    await scheduler.close()


class CancelOnPermit(Turnstile):
    """Cancels ``victim`` in the very turn its permit is handed out, before it can resume."""

    victim: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        await super().acquire()
        if self.victim is not None:
            # Runs before the victim's wake-up, which the scheduler queues right after this returns.
            asyncio.get_running_loop().call_soon(self.victim.cancel)


async def test_a_permit_granted_to_a_cancelled_waiter_goes_to_the_next_one() -> None:
    gate = CancelOnPermit()
    scheduler = LaneScheduler(gate)
    tasks = await _waiters(scheduler, [(Lane.NORMAL, "a"), (Lane.NORMAL, "b")])
    # Given the first waiter is cancelled in the same turn its permit arrives
    gate.victim = tasks[0]
    gate.open()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    # Then the second has that permit, without the gate giving another
    gate.victim = None
    async with asyncio.timeout(5):
        await tasks[1]
    assert gate.taken == 1
    assert scheduler.granted[Lane.NORMAL] == 2  # handed out twice, taken from the gate once
    await scheduler.close()


async def test_weights_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LaneScheduler(Turnstile(), weights={Lane.NORMAL: 4, Lane.BULK: 0})


# -- the worker over three in-memory lanes ---------------------------------------------------------


class SentOrder(FakeMailer):
    """Records the event id of every accepted send, in order (the payload does not carry it)."""

    def __init__(self, ids: Mapping[str, str], *, hold: asyncio.Event | None = None) -> None:
        super().__init__()
        self._ids = ids
        self._hold = hold
        self.sending = 0
        self.order: list[str] = []

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        self.sending += 1
        if self._hold is not None:
            await self._hold.wait()
        result = await super().send(payload, operation_id=operation_id)
        self.order.append(self._ids.get(operation_id, operation_id))
        return result


def _operation_ids(settings: Settings, event_ids: list[str]) -> dict[str, str]:
    from postbus.worker.mailer import operation_id_for

    return {operation_id_for(i, namespace=settings.operation_namespace, generation=0): i for i in event_ids}


async def test_a_critical_message_overtakes_the_normal_backlog(settings: Settings) -> None:
    # Given a normal backlog the worker holds and waits to send
    brokers, gate = _brokers(), Turnstile()
    backlog = [f"order-{n}" for n in range(20)]
    for event_id in backlog:
        brokers[Lane.NORMAL].send(_event(event_id))
    mailer = SentOrder(_operation_ids(settings, [*backlog, "code-1"]))
    worker = Worker(settings, sources=brokers, mailer=mailer, renderer=_renderer, gate=gate)
    async with running(worker, brokers):
        gate.open(3)
        await eventually(
            lambda: len(mailer.order) == 3 and worker.scheduler.waiting(Lane.NORMAL) == 4, interval=0.005
        )
        # When a password reset arrives on the critical lane
        brokers[Lane.CRITICAL].send(_event("code-1", type_="appointment.reminder"))
        await eventually(lambda: worker.scheduler.waiting(Lane.CRITICAL) == 1, interval=0.005)
        gate.open(1)
        await eventually(lambda: len(mailer.order) == 4, interval=0.005)
        # Then it is the very next send, ahead of 17 waiting order confirmations
        assert mailer.order[3] == "code-1"
        gate.open(100)
        await eventually(lambda: len(mailer.order) == 21, interval=0.005)
    assert worker.sent_by_lane == {Lane.CRITICAL: 1, Lane.NORMAL: 20}


async def test_bulk_drains_at_its_weight_while_normal_is_backlogged(settings: Settings) -> None:
    brokers, gate = _brokers(), Turnstile()
    ids = [f"order-{n}" for n in range(40)] + [f"review-{n}" for n in range(40)]
    for event_id in ids:
        lane = Lane.NORMAL if event_id.startswith("order") else Lane.BULK
        brokers[lane].send(_event(event_id))
    mailer = SentOrder(_operation_ids(settings, ids))
    worker = Worker(settings, sources=brokers, mailer=mailer, renderer=_renderer, gate=gate)
    scheduler = worker.scheduler
    async with running(worker, brokers):
        for sent in range(1, 26):
            # Both lanes hold a full set of waiting messages before each permit.
            await eventually(
                lambda: scheduler.waiting(Lane.NORMAL) == 4 and scheduler.waiting(Lane.BULK) == 4,
                interval=0.005,
            )
            gate.open(1)
            await eventually(lambda n=sent: len(mailer.order) == n, interval=0.005)
        bulk = [event_id for event_id in mailer.order if event_id.startswith("review")]
        assert len(bulk) == 5  # 4:1
        gate.open(100)
        await eventually(lambda: len(mailer.order) == 80, interval=0.005)


async def test_a_tenant_burst_does_not_starve_another_tenant_of_the_lane(settings: Settings) -> None:
    settings = settings.model_copy(update={"concurrency": 12})
    brokers, gate = _brokers(), Turnstile()
    ids = [f"burst-{n}" for n in range(10)] + ["quiet-1", "quiet-2"]
    for event_id in ids:
        brokers[Lane.NORMAL].send(_event(event_id, tenant=event_id.split("-")[0]))
    mailer = SentOrder(_operation_ids(settings, ids))
    worker = Worker(settings, sources=brokers, mailer=mailer, renderer=_renderer, gate=gate)
    async with running(worker, brokers):
        await eventually(lambda: worker.scheduler.waiting(Lane.NORMAL) == 12, interval=0.005)
        gate.open(4)
        await eventually(lambda: len(mailer.order) == 4, interval=0.005)
        # The quiet tenant's two messages went out among the first four, not after the burst
        assert sorted(mailer.order) == ["burst-0", "burst-1", "quiet-1", "quiet-2"]
        gate.open(100)
        await eventually(lambda: len(mailer.order) == 12, interval=0.005)


async def test_one_lane_that_cannot_receive_does_not_stop_the_others(settings: Settings) -> None:
    brokers = _brokers()
    brokers[Lane.BULK].fail_receives(times=1000)
    brokers[Lane.CRITICAL].send(_event("code-1", type_="appointment.reminder"))
    brokers[Lane.NORMAL].send(_event("order-1"))
    worker = Worker(settings, sources=brokers, mailer=FakeMailer(), renderer=_renderer)
    with capture_lines() as logs:
        async with running(worker, brokers):
            await brokers[Lane.CRITICAL].join(timeout=10)
            await brokers[Lane.NORMAL].join(timeout=10)
            await eventually(lambda: worker.counts["reconnects"] >= 1, interval=0.005)
            assert worker.ready is False  # the bulk lane is not connected, and /readyz says so
    assert [d.message_id for d in brokers[Lane.CRITICAL].completed] == ["code-1"]
    assert [d.message_id for d in brokers[Lane.NORMAL].completed] == ["order-1"]
    reconnects = [line for line in logs if line["event"] == "reconnecting to the queue"]
    assert {line["lane"] for line in reconnects} == {"bulk"}


class MissingQueue(InMemoryBroker):
    """A lane whose queue does not exist."""

    async def open(self) -> Any:
        raise QueueNotFound(f"open queue {self.queue!r}", "The messaging entity could not be found")


async def test_a_lane_queue_missing_at_start_stops_the_worker_naming_the_lane(settings: Settings) -> None:
    brokers: dict[Lane, MessageSource] = {
        Lane.CRITICAL: InMemoryBroker("n-critical"),
        Lane.NORMAL: InMemoryBroker("n"),
        Lane.BULK: MissingQueue("n-bulk"),
    }
    worker = Worker(settings, sources=brokers, mailer=FakeMailer(), renderer=_renderer)
    with pytest.raises(QueueNotFound) as raised:
        await asyncio.wait_for(worker.run(asyncio.Event()), timeout=10)
    assert "bulk lane's queue 'n-bulk'" in str(raised.value)
    assert "could not be found" in str(raised.value)
    # The lanes it had opened are closed again
    assert [b.closed for b in (brokers[Lane.CRITICAL], brokers[Lane.NORMAL])] == [1, 1]  # type: ignore[attr-defined]


async def test_shutdown_drains_every_lane_within_the_grace(settings: Settings) -> None:
    brokers, release = _brokers(), asyncio.Event()
    for lane in Lane:
        brokers[lane].send(_event(f"{lane.value}-1"))
    mailer = SentOrder({}, hold=release)
    worker = Worker(settings, sources=brokers, mailer=mailer, renderer=_renderer)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    # Given one message of each lane in the middle of its send
    await eventually(lambda: mailer.sending == 3, interval=0.005)
    # When the worker is told to stop, and the sends finish inside the grace
    stop.set()
    await eventually(lambda: not any(lane["connected"] for lane in worker.health().detail["lanes"].values()))
    release.set()
    counts = await asyncio.wait_for(task, timeout=10)
    # Then every lane's message was completed, none abandoned
    assert [len(brokers[lane].completed) for lane in Lane] == [1, 1, 1]
    assert counts["abandoned_on_shutdown"] == 0
    assert worker.sent_by_lane == dict.fromkeys(Lane, 1)


async def test_work_past_the_grace_is_given_back_on_every_lane(settings: Settings) -> None:
    settings = settings.model_copy(update={"shutdown_grace_seconds": 0.2})
    brokers = _brokers()
    for lane in Lane:
        brokers[lane].send(_event(f"{lane.value}-1"))
    mailer = SentOrder({}, hold=asyncio.Event())  # never released
    worker = Worker(settings, sources=brokers, mailer=mailer, renderer=_renderer)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await eventually(lambda: mailer.sending == 3, interval=0.005)
    stop.set()
    counts = await asyncio.wait_for(task, timeout=10)
    assert counts["abandoned_on_shutdown"] == 3
    assert [len(brokers[lane].active) for lane in Lane] == [1, 1, 1]  # back on each lane's queue
