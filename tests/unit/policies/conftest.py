"""Fixtures for the policy tests: the gate simulation (postbus.worker.throttle_sim) and its virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar

import pytest

from postbus.worker import throttle_sim

T = TypeVar("T")


@pytest.fixture(scope="session")
def gate_sim() -> ModuleType:
    """The simulation module: virtual-clock loop, sliding-window quota, scenarios."""
    return throttle_sim


@pytest.fixture
def run_virtual() -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on an event loop whose clock is virtual: sleeping costs no real time."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=throttle_sim.VirtualClockLoop) as runner:
            return runner.run(coro)

    return run
