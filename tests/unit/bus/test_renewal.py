"""LockKeeper: one task renews every held message's lock, only while its block runs."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from postbus.bus import Delivery
from postbus.bus.renewal import LockKeeper

LOCK = timedelta(seconds=1)


class _Message:
    """The part of an SDK message the keeper reads: its lock expiry, moved on by each renewal."""

    def __init__(self) -> None:
        self.locked_until_utc: datetime | None = datetime.now(UTC) + LOCK


def _delivery(message_id: str) -> Delivery:
    return Delivery(
        body=b"", content_type=None, application_properties={}, message_id=message_id, handle=_Message()
    )


class _Broker:
    def __init__(self, *, fail: frozenset[str] = frozenset()) -> None:
        self.renewals: Counter[str] = Counter()
        self.fail = fail
        self.changed = asyncio.Event()

    async def renew(self, delivery: Delivery) -> None:
        self.renewals[delivery.message_id] += 1
        self.changed.set()
        if delivery.message_id in self.fail:
            raise RuntimeError("lock lost")
        delivery.handle.locked_until_utc = datetime.now(UTC) + LOCK

    async def until(self, done: object) -> None:
        while not done():  # type: ignore[operator]
            self.changed.clear()
            await self.changed.wait()


async def test_many_held_messages_cost_one_task_and_each_lock_is_renewed() -> None:
    broker = _Broker()
    keeper = LockKeeper(broker.renew)
    deliveries = [_delivery(f"m-{i}") for i in range(50)]
    before = len(asyncio.all_tasks())
    holds = [keeper.hold(delivery, up_to=60) for delivery in deliveries]
    for hold in holds:
        await hold.__aenter__()
    try:
        # Holding fifty messages started one task, not fifty.
        assert len(asyncio.all_tasks()) == before + 1
        async with asyncio.timeout(10):
            await broker.until(lambda: all(broker.renewals[d.message_id] >= 2 for d in deliveries))
    finally:
        for hold in holds:
            await hold.__aexit__(None, None, None)
        await keeper.close()


async def test_a_failed_renewal_stops_only_that_message_and_nothing_is_renewed_after_its_block() -> None:
    broker = _Broker(fail=frozenset({"lost"}))
    keeper = LockKeeper(broker.renew)
    lost, kept = _delivery("lost"), _delivery("kept")
    async with keeper.hold(lost, up_to=60), keeper.hold(kept, up_to=60):
        async with asyncio.timeout(10):
            await broker.until(lambda: broker.renewals["kept"] >= 3)
        assert broker.renewals["lost"] == 1
    after_block = broker.renewals["kept"]
    # The keeper's task is idle now: with nothing held it has nothing due.
    await asyncio.sleep(0.6)  # longer than the shortest renewal interval
    assert broker.renewals["kept"] == after_block
    await keeper.close()


async def test_leaving_the_block_cancels_a_renewal_in_flight() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_renew(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    keeper = LockKeeper(slow_renew)
    delivery = _delivery("m")
    delivery.handle.locked_until_utc = datetime.now(UTC)  # due at once (after the minimum interval)
    async with keeper.hold(delivery, up_to=60):
        async with asyncio.timeout(10):
            await started.wait()
    assert cancelled.is_set()
    await keeper.close()


async def test_a_message_without_a_lock_or_past_its_limit_is_not_renewed() -> None:
    broker = _Broker()
    keeper = LockKeeper(broker.renew)
    unlocked = _delivery("peeked")
    unlocked.handle.locked_until_utc = None
    before = len(asyncio.all_tasks())
    async with keeper.hold(unlocked, up_to=60), keeper.hold(_delivery("short"), up_to=0.1):
        # Nothing is ever due, so not even the keeper's task is started.
        assert len(asyncio.all_tasks()) == before
    assert not broker.renewals
    await keeper.close()
