"""The CLI's signal handling: the first SIGINT/SIGTERM asks to stop, the second cancels."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from postbus.worker.ops.console import run_interruptible


def test_the_first_signal_sets_stop_and_the_run_returns_normally() -> None:
    async def main(stop: asyncio.Event) -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        return "finished cleanly"

    assert run_interruptible(main) == "finished cleanly"


def test_a_second_signal_cancels_and_surfaces_as_an_interrupt() -> None:
    async def main(stop: asyncio.Event) -> str:
        os.kill(os.getpid(), signal.SIGINT)
        await stop.wait()
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.Event().wait()  # only a cancellation ends this
        return "unreachable"

    with pytest.raises(KeyboardInterrupt):
        run_interruptible(main)
    # The handlers are gone again: the default SIGINT handler is back in charge.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
