"""Fixtures: one emulator per test on 127.0.0.1 with short locks and TTLs, and a deadline poller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from postbus.emulators.servicebus import EmulatorConfig, ServiceBusEmulator

# Short LockDuration so expiry tests are quick; "long" for tests that must not see expiries.
CONFIG = EmulatorConfig.from_queues(
    {
        "orders": {
            "LockDuration": "PT2S",
            "MaxDeliveryCount": 3,
            "RequiresDuplicateDetection": True,
            "DuplicateDetectionHistoryTimeWindow": "PT1M",
            "DeadLetteringOnMessageExpiration": True,
        },
        "drop-expired": {"LockDuration": "PT2S", "DeadLetteringOnMessageExpiration": False},
        "long": {"LockDuration": "PT1M"},
        # The async AutoLockRenewer checks once a second and renews at 75% of whole lock seconds:
        # a 2 s lock can lapse between two checks. 5 s leaves a renewal nearly 3 s of scheduling
        # slack, which a loaded two-core CI machine needs (3 s locks lapsed there now and then).
        "renew": {"LockDuration": "PT5S"},
    }
)

# Senders get keep_alive=0 in these tests: the SDK's keep-alive thread sleeps in 1 s steps and
# close() joins it, which would add ~0.5 s to every sender close. (Receivers without prefetch
# always have one; the SDK hard-codes its interval.)

# Fast retries: the SDK's default back-off (1.6 s, 3.2 s, ...) would dominate fault tests.
FAST_RETRY = {"retry_total": 3, "retry_backoff_factor": 0.05, "retry_backoff_max": 0.2}


def _wait_until(predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def _await_until(
    predicate: Callable[[], object], *, within: float = 10.0, what: str = "condition"
) -> None:
    """``wait_until`` for coroutines."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(CONFIG) as sb:
        yield sb


@pytest.fixture
def wait_until() -> Callable[..., None]:
    return _wait_until


@pytest.fixture
def await_until() -> Callable[..., Awaitable[None]]:
    return _await_until
