"""The loop watchdog: a stuck event loop gets every thread's stack written out."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from postbus.worker.watchdog import loop_watchdog


async def test_a_stalled_loop_has_its_stack_dumped(capfd: pytest.CaptureFixture[str]) -> None:
    async with loop_watchdog(stall_after=1.0):
        await asyncio.sleep(0.3)  # a turning loop keeps the dump away
        assert "Timeout" not in capfd.readouterr().err

        def spin_without_yielding() -> None:
            time.sleep(1.6)  # the stall itself: nothing else on the loop can run meanwhile

        spin_without_yielding()
    err = capfd.readouterr().err
    assert "Timeout (0:00:01)!" in err
    assert "spin_without_yielding" in err


async def test_sigusr2_dumps_the_stacks_on_demand(capfd: pytest.CaptureFixture[str]) -> None:
    async with loop_watchdog():
        os.kill(os.getpid(), signal.SIGUSR2)
    assert "test_sigusr2_dumps_the_stacks_on_demand" in capfd.readouterr().err


async def test_the_watchdog_leaves_no_timer_or_handler_behind(capfd: pytest.CaptureFixture[str]) -> None:
    async with loop_watchdog(stall_after=0.1):
        pass
    await asyncio.sleep(0.3)  # no beats any more: only a timer left behind could fire now
    assert "Timeout" not in capfd.readouterr().err
