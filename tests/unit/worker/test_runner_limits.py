"""How much a worker holds: prefetch and in-flight messages follow the send rate when a quota paces it."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbus.settings import load_settings
from postbus.worker.mailer import FakeMailer
from postbus.worker.runner import (
    HEARTBEAT_SECONDS,
    HOLD_SECONDS,
    LoopHeartbeat,
    Worker,
    effective_prefetch,
    holding_limit,
)


def test_unpaced_workers_keep_their_prefetch() -> None:
    settings = load_settings(quota_per_minute=0, quota_per_hour=0, prefetch=200, concurrency=16)
    assert effective_prefetch(settings) == 200


@pytest.mark.parametrize(("minute", "hour"), [(30, 100), (0, 100), (6000, 0)])
def test_paced_workers_buffer_one_round_of_handlers(minute: int, hour: int) -> None:
    settings = load_settings(quota_per_minute=minute, quota_per_hour=hour, prefetch=200, concurrency=16)
    assert effective_prefetch(settings) == 16


def test_an_unlimited_gate_holds_a_full_round() -> None:
    assert holding_limit(math.inf, 32) == 32


@given(st.floats(min_value=0, max_value=10_000, allow_nan=False), st.integers(min_value=1, max_value=1024))
def test_holding_follows_the_rate_within_bounds(rate: float, concurrency: int) -> None:
    held = holding_limit(rate, concurrency)
    assert 1 <= held <= concurrency
    if rate * HOLD_SECONDS <= concurrency:
        assert held >= rate * HOLD_SECONDS
        assert held <= max(1, math.ceil(rate * HOLD_SECONDS))


async def test_the_heartbeat_tells_a_waiting_call_from_one_that_spins() -> None:
    async with LoopHeartbeat() as heartbeat:
        # a call that waits lets the event loop run: the heartbeat moves
        before = heartbeat.beats
        await asyncio.sleep(HEARTBEAT_SECONDS * 3)
        assert heartbeat.beats > before
        # a call that polls without ever suspending (what the SDK does on a dead connection) starves it
        before = heartbeat.beats
        deadline = time.monotonic() + HEARTBEAT_SECONDS * 3
        while time.monotonic() < deadline:
            pass
        assert heartbeat.beats == before


class _Receiver:
    """Stands in for the SDK receiver in the receive loop: each call returns no messages."""

    def __init__(self, wait: float, *, stop_after: int = 0, stop: asyncio.Event | None = None) -> None:
        self.wait = wait
        self.calls = 0
        self._stop_after = stop_after
        self._stop = stop

    async def receive_messages(self, **_: Any) -> list[Any]:
        self.calls += 1
        if self._stop is not None and self.calls == self._stop_after:
            self._stop.set()
        if self.wait:
            await asyncio.sleep(self.wait)
        return []


async def _receive_until(worker: Worker, receiver: _Receiver, stop: asyncio.Event) -> None:
    async with LoopHeartbeat() as heartbeat:
        # Only the receiver is used when nothing arrives; the rest of the loop's collaborators stay idle.
        idle: Any = None
        await asyncio.wait_for(
            worker._receive_loop(stop, cast(Any, receiver), idle, idle, heartbeat), timeout=10
        )


async def test_a_receiver_that_returns_without_waiting_is_replaced() -> None:
    # What the SDK's receiver does after it gives up on a connection without raising: it returns
    # no messages at once, every call, and a loop that called it again would never yield.
    worker = Worker(load_settings(), mailer=FakeMailer())
    receiver = _Receiver(wait=0)
    await _receive_until(worker, receiver, asyncio.Event())
    assert receiver.calls == 1
    assert worker.counts["stalled_receives"] == 1


async def test_a_receiver_that_waits_for_messages_is_kept() -> None:
    worker = Worker(load_settings(), mailer=FakeMailer())
    stop = asyncio.Event()
    receiver = _Receiver(wait=HEARTBEAT_SECONDS * 3, stop_after=3, stop=stop)
    await _receive_until(worker, receiver, stop)
    assert receiver.calls == 3
    assert worker.counts["stalled_receives"] == 0
