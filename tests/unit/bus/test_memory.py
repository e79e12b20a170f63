"""The in-memory broker keeps the peek-lock rules the worker relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postbus.bus import BusBusy, ConnectionLost, InMemoryBroker, LockLost
from postbus.events import WireMessage
from postbus.reasons import DeadLetterReason

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _wire(message_id: str) -> WireMessage:
    return WireMessage(body=b"{}", message_id=message_id, subject="test")


async def test_received_messages_are_locked_until_settled() -> None:
    broker = InMemoryBroker()
    broker.send(_wire("a"))
    broker.send(_wire("b"))
    links = await broker.open()
    first, second = await links.receive(5, max_wait=0.1)
    assert (broker.active, len(broker.locked)) == ([], 2)
    await links.complete(first)
    await links.dead_letter(second, reason=DeadLetterReason.EXPIRED, description="too late")
    assert [d.message_id for d in broker.completed] == ["a"]
    assert [(d.delivery.message_id, d.reason) for d in broker.dead_lettered] == [("b", "Expired")]
    assert broker.idle
    with pytest.raises(LockLost):
        await links.complete(first)  # settled already


async def test_an_abandoned_message_comes_back_with_one_more_delivery() -> None:
    broker = InMemoryBroker()
    broker.send(_wire("a"))
    links = await broker.open()
    (delivery,) = await links.receive(1, max_wait=0.1)
    await links.abandon(delivery)
    (again,) = await links.receive(1, max_wait=0.1)
    assert (again.message_id, again.delivery_count) == ("a", 1)


async def test_scheduled_messages_become_active_when_their_time_comes() -> None:
    clock = [NOW]
    broker = InMemoryBroker(now=lambda: clock[0])
    links = await broker.open()
    await links.schedule(_wire("later"), at=NOW + timedelta(minutes=5))
    assert await links.receive(1, max_wait=0.05) == []
    clock[0] = NOW + timedelta(minutes=5)
    (delivery,) = await links.receive(1, max_wait=0.05)
    assert delivery.message_id == "later"
    assert broker.scheduled == []


async def test_faults_are_injected_on_request() -> None:
    broker = InMemoryBroker()
    broker.send(_wire("a"))
    links = await broker.open()
    broker.fail_receives(times=1)
    with pytest.raises(ConnectionLost):
        await links.receive(1, max_wait=0.1)
    broker.spin_receives(1)
    assert await links.receive(1, max_wait=0.1) == []
    (delivery,) = await links.receive(1, max_wait=0.1)
    broker.fail_settlements(BusBusy("complete the message", "busy"))
    with pytest.raises(BusBusy):
        await links.complete(delivery)
    await links.complete(delivery)  # only once
    assert broker.idle


async def test_join_waits_for_idle_and_times_out_otherwise() -> None:
    broker = InMemoryBroker()
    await broker.join(timeout=0.1)
    broker.send(_wire("a"))
    with pytest.raises(TimeoutError):
        await broker.join(timeout=0.05)
