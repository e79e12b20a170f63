"""The replica roster in the worker: a replica's membership on the fake roster, and two workers sharing one.

Membership runs against :class:`MemoryRoster` on a clock the test moves; the workers run the real
loop, gate and pipeline on a virtual-clock event loop (a minute of pacing takes milliseconds) over
an in-memory broker and the fake mailer, which never answers 429.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from postbus.attachments import MemoryAttachmentStore
from postbus.bus import InMemoryBroker, QueueNotFound
from postbus.events import encode, parse_event
from postbus.logs import capture_lines
from postbus.records import MemoryRecordStore
from postbus.settings import Settings
from postbus.worker.mailer import FakeMailer
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.roster import Membership, MemoryRoster, RosterUnavailable
from postbus.worker.runner import Worker
from postbus.worker.throttle import AimdGate
from postbus.worker.throttle_sim import VirtualClockLoop

T = TypeVar("T")
_renderer = TemplateRenderer()


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == event]


def member(roster: MemoryRoster, counts: list[int | None], replica: str) -> Membership:
    return Membership(roster, heartbeat=5.0, on_count=counts.append, replica=replica)


# ---- membership on the fake roster -------------------------------------------------------------


async def test_replicas_joining_count_each_other_and_tell_their_gates() -> None:
    roster = MemoryRoster(clock=Clock(), expiry=15.0)
    told_a: list[int | None] = []
    told_b: list[int | None] = []
    a, b = member(roster, told_a, "a"), member(roster, told_b, "b")
    # Given a joins alone, then b joins
    assert await a.join() == 1
    assert await b.join() == 2
    # When a beats next, it counts b too
    assert await a.beat() == 2
    assert told_a == [1, 2]
    assert told_b == [2]
    assert (a.count, b.count) == (2, 2)


async def test_a_killed_replica_ages_out_after_three_heartbeats_and_a_clean_one_leaves_at_once() -> None:
    clock = Clock()
    roster = MemoryRoster(clock=clock, expiry=15.0)
    told: list[int | None] = []
    a, b, c = member(roster, told, "a"), member(roster, [], "b"), member(roster, [], "c")
    for replica in (a, b, c):
        await replica.join()
    # When c leaves cleanly, a counts without it at its next heartbeat
    await c.leave()
    assert await a.beat() == 2
    # And when b is killed (no more heartbeats), it counts for three heartbeats, then not at all
    clock.now += 14.9
    assert await a.beat() == 2
    clock.now += 0.2
    assert await a.beat() == 1
    assert roster.seen.keys() == {"a"}


async def a_counting_two() -> tuple[MemoryRoster, Membership, list[int | None]]:
    """Replica ``a`` on a fake roster with ``b``, having told its gate 1 (its join), then 2."""
    roster = MemoryRoster(clock=Clock(), expiry=15.0)
    told: list[int | None] = []
    a = member(roster, told, "a")
    await a.join()
    await member(roster, [], "b").join()
    await a.beat()
    return roster, a, told


async def test_a_failing_roster_keeps_the_last_count_logs_once_and_recovers() -> None:
    roster, a, told = await a_counting_two()
    with capture_lines() as logs:
        # Given the store goes away for two heartbeats
        roster.fail_with = RosterUnavailable("roster sqlite x.db: disk I/O error")
        assert [await a.beat() for _ in range(2)] == [2, 2]
        # When it comes back with a third replica
        roster.fail_with = None
        await member(roster, [], "c").join()
        assert await a.beat() == 3
    # Then the gate kept hearing the last count, one warning covered the outage, one line its end
    assert told == [1, 2, 2, 2, 3]
    assert a.failures == 2
    [warning] = _lines(logs, "replica roster unavailable; keeping the last count")
    assert warning["replicas"] == 2
    assert "disk I/O error" in warning["error"]
    assert not _lines(logs, "replica roster still unavailable; the replica count is unknown")
    assert len(_lines(logs, "replica roster reachable again")) == 1
    assert [line["replicas"] for line in _lines(logs, "replica count changed")] == [3]


async def test_an_outage_as_long_as_an_age_out_makes_the_count_unknown_until_the_roster_answers() -> None:
    roster, a, told = await a_counting_two()
    with capture_lines() as logs:
        # Given the store stays away for three heartbeats and more: replicas may have left unseen
        roster.fail_with = RosterUnavailable("down")
        assert [await a.beat() for _ in range(5)] == [2, 2, 2, 2, 2]
        roster.fail_with = None
        assert await a.beat() == 2
    # Then the gate heard the last count for two heartbeats, "unknown" from the third, and the
    # count again once the roster answered; the unknown count is one warning
    assert told == [1, 2, 2, 2, None, None, None, 2]
    assert len(_lines(logs, "replica roster still unavailable; the replica count is unknown")) == 1


async def test_a_roster_unreachable_at_join_counts_this_replica_alone() -> None:
    roster = MemoryRoster(clock=Clock(), expiry=15.0)
    roster.fail_with = RosterUnavailable("down")
    told: list[int | None] = []
    a = member(roster, told, "a")
    assert await a.join() == 1
    assert told == [1]
    await a.leave()  # leaving an unreachable roster is logged, never raised


async def test_a_heartbeat_slower_than_a_heartbeat_counts_as_a_failure() -> None:
    class Stuck(MemoryRoster):
        async def beat(self, replica: str) -> int:
            await asyncio.Event().wait()  # a store that never answers
            raise AssertionError("unreachable")

    told: list[int | None] = []
    a = Membership(Stuck(), heartbeat=0.05, on_count=told.append, replica="a")
    assert await a.beat() == 1
    assert (told, a.failures) == ([1], 1)


async def test_the_count_changes_are_logged_once_each() -> None:
    roster = MemoryRoster(clock=Clock(), expiry=15.0)
    a = member(roster, [], "a")
    with capture_lines() as logs:
        await a.join()
        await a.beat()
        b = member(roster, [], "b")
        await b.join()
        await a.beat()
        await a.beat()
        await b.leave()
        await a.beat()
    assert [(line["replica"], line["replicas"]) for line in _lines(logs, "joined the replica roster")] == [
        ("a", 1),
        ("b", 2),
    ]
    changes = _lines(logs, "replica count changed")
    assert [(line["previous"], line["replicas"]) for line in changes] == [(1, 2), (2, 1)]


# ---- two workers sharing a roster ----------------------------------------------------------------


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(coro)


def _order(number: int, now: datetime) -> Any:
    event = parse_event(
        {
            "id": f"order-{number}",
            "type": "order.confirmation",
            "tenant": "contoso",
            "to": ["jane@example.com"],
            "sender": "orders",
            "data": _renderer.sample_data("order.confirmation"),
        }
    )
    return encode(event, first_enqueued=now)


@pytest.mark.parametrize("replicas", [1, 2])
def test_workers_sharing_a_roster_each_pace_at_their_share_before_any_429(
    settings: Settings, replicas: int
) -> None:
    async def main() -> tuple[list[int], list[AimdGate], list[dict[str, Any]], int]:
        loop = asyncio.get_running_loop()
        epoch = datetime.now(UTC)
        now = lambda: epoch + timedelta(seconds=loop.time())  # noqa: E731
        # Given a backlog far above the quota (600/min) on one queue, and workers sharing one roster
        broker = InMemoryBroker(now=now)
        for number in range(2000):
            broker.send(_order(number, now()))
        paced = settings.model_copy(update={"quota_per_minute": 600, "quota_per_hour": 0, "concurrency": 16})
        roster = MemoryRoster(clock=loop.time, expiry=15.0)
        gates = [AimdGate(per_minute=600, per_hour=0, clock=loop.time) for _ in range(replicas)]
        workers = [
            Worker(
                paced,
                source=broker,
                mailer=FakeMailer(),
                renderer=_renderer,
                gate=gate,
                records=MemoryRecordStore(),
                attachments=MemoryAttachmentStore(),
                roster=roster,
            )
            for gate in gates
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
        # When they drain for one minute
        await asyncio.sleep(60.0)
        health = [worker.health().detail for worker in workers]
        sent = [worker.counts["sent"] for worker in workers]
        stop.set()
        await asyncio.gather(*tasks)
        return sent, gates, health, len(roster.seen)

    sent, gates, health, left_behind = run_virtual(main())
    # Then each sent its share of the minute's quota (the first to join was alone for its first
    # second, and each gate has a one-second burst), and none grew past it
    assert all(count == pytest.approx(600 / replicas, rel=0.08) for count in sent), sent
    assert sum(sent) <= 600 * 1.05
    assert [gate.share for gate in gates] == [1 / replicas] * replicas
    assert [gate.throttle_episodes for gate in gates] == [0] * replicas
    # And each showed the count on its status, and left the roster on the way out
    assert [detail["replicas"] for detail in health] == [replicas] * replicas
    assert left_behind == 0


def test_a_new_member_beats_every_second_for_its_first_heartbeat_then_every_heartbeat() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        roster = MemoryRoster(clock=loop.time, expiry=15.0)
        told_at: list[float] = []
        a = Membership(roster, heartbeat=5.0, on_count=lambda _: told_at.append(loop.time()), replica="a")
        await a.join()
        heartbeats = asyncio.create_task(a.run())
        await asyncio.sleep(20.5)
        heartbeats.cancel()
        return told_at

    # Replicas that start together find each other within a second, then beat at the heartbeat
    assert run_virtual(main()) == pytest.approx([0, 1, 2, 3, 4, 9, 14, 19])


async def test_a_worker_that_cannot_open_its_queue_still_leaves_the_roster(settings: Settings) -> None:
    class Missing(InMemoryBroker):
        async def open(self) -> Any:
            raise QueueNotFound("open queue 'notifications'", "it does not exist")

    roster = MemoryRoster(expiry=15.0)
    worker = Worker(
        settings,
        source=Missing(),
        mailer=FakeMailer(),
        renderer=_renderer,
        records=MemoryRecordStore(),
        roster=roster,
    )
    with pytest.raises(QueueNotFound):
        await worker.run(asyncio.Event())
    assert roster.beats == 1
    assert roster.seen == {}
