"""How much a worker holds (prefetch and in-flight follow the send rate) and the heartbeat that tells a stalled receive."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbus.settings import load_settings
from postbus.worker.flow import (
    HEARTBEAT_SECONDS,
    HOLD_SECONDS,
    LoopHeartbeat,
    effective_prefetch,
    holding_limit,
    lane_prefetch,
)


def test_unpaced_workers_keep_their_prefetch() -> None:
    settings = load_settings(quota_per_minute=0, quota_per_hour=0, prefetch=200, concurrency=16)
    assert effective_prefetch(settings) == 200


@pytest.mark.parametrize(("minute", "hour"), [(30, 100), (0, 100), (6000, 0)])
def test_paced_workers_prefetch_nothing(minute: int, hour: int) -> None:
    # What a paced replica buffers waits for its permits while the others may have quota to spare.
    settings = load_settings(quota_per_minute=minute, quota_per_hour=hour, prefetch=200, concurrency=16)
    assert effective_prefetch(settings) == 0


def test_each_lane_prefetches_a_share_of_the_process_prefetch() -> None:
    unpaced = load_settings(quota_per_minute=0, quota_per_hour=0, prefetch=200, concurrency=16)
    assert (lane_prefetch(unpaced, 1), lane_prefetch(unpaced, 3)) == (200, 66)
    small = load_settings(quota_per_minute=0, quota_per_hour=0, prefetch=2, concurrency=16)
    assert lane_prefetch(small, 3) == 1  # never zero: a lane with no prefetch at all is not what was asked
    off = load_settings(quota_per_minute=0, quota_per_hour=0, prefetch=0)
    assert lane_prefetch(off, 3) == 0
    paced = load_settings(quota_per_minute=600, quota_per_hour=0, prefetch=200, concurrency=16)
    assert lane_prefetch(paced, 3) == 0


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
