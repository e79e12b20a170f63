"""Says where the worker is stuck when its event loop stops turning.

A coroutine that loops without ever suspending starves everything else on the loop: handlers,
lock renewals, the health server and the SIGTERM handler. Nothing written in asyncio can report
that, so the report comes from :mod:`faulthandler`'s own thread: a beat on the loop keeps pushing
a timed stack dump into the future, and when the beats stop the dump fires and writes every
thread's stack to stderr. ``kill -USR2 <pid>`` writes the same dump on demand, stuck or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import signal
import sys
from collections.abc import AsyncIterator
from typing import Final

__all__ = ["STALL_SECONDS", "loop_watchdog"]

#: A loop that has not turned for this long is reported as stalled.
STALL_SECONDS: Final = 10.0


@contextlib.asynccontextmanager
async def loop_watchdog(stall_after: float = STALL_SECONDS) -> AsyncIterator[None]:
    """While active, a loop that stops turning for ``stall_after`` seconds gets its stacks dumped.

    Process-wide (faulthandler has one timer), so only an entry point should use it.
    """
    faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)

    async def beat() -> None:
        while True:
            # repeat=True: a stall that lasts keeps reporting, so a dump shows whether it moves.
            faulthandler.dump_traceback_later(stall_after, repeat=True, file=sys.stderr)
            await asyncio.sleep(stall_after / 4)

    task = asyncio.create_task(beat(), name="loop-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        faulthandler.cancel_dump_traceback_later()
        faulthandler.unregister(signal.SIGUSR2)
