"""Helpers for send-gate tests on a virtual-clock event loop (the ``run_virtual`` fixture)."""

from __future__ import annotations

import asyncio

from postbus.worker.throttle import AimdGate


def now() -> float:
    """The running loop's clock: virtual under ``run_virtual``."""
    return asyncio.get_running_loop().time()


async def demand(gate: AimdGate, seconds: float) -> list[float]:
    """A message always waiting for ``seconds``: every permit is taken and accepted; their times."""
    stamps = []
    end = now() + seconds
    while now() < end:
        await gate.acquire()
        stamps.append(now())
        gate.on_accepted()
    return stamps


def admitted(stamps: list[float], start: float, seconds: float) -> int:
    """How many of ``stamps`` fall in ``[start, start + seconds)``."""
    return sum(1 for t in stamps if start <= t < start + seconds)
