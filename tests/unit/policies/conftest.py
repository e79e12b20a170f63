"""Fixtures for the policy tests: the gate simulation (bench/gate_simulation.py) and its virtual clock."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

_SIMULATION = Path(__file__).resolve().parents[3] / "bench" / "gate_simulation.py"


@pytest.fixture(scope="session")
def gate_sim() -> ModuleType:
    """bench/gate_simulation.py, loaded by path (bench/ is a script folder, not a package)."""
    name = "postbus_bench_gate_simulation"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _SIMULATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_virtual(gate_sim: ModuleType) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on an event loop whose clock is virtual: sleeping costs no real time."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=gate_sim.VirtualClockLoop) as runner:
            return runner.run(coro)

    return run
