"""Helpers shared by the integration suites (importable as ``tests.support``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postbus.worker.runner import Worker

__all__ = ["SENDERS", "WorkerProcess", "eventually", "open_side_by_side", "running"]

SENDERS = {
    "orders": "orders@shop.example.com",
    "returns": "returns@shop.example.com",
    "care": "care@clinic.example.org",
    "permits": "permits@city.example.net",
}


async def eventually(
    condition: Callable[[], Any],
    *,
    within: float = 20.0,
    interval: float = 0.02,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``within`` seconds.

    Only for in-process state that announces no change (a worker's counters, spans in an in-memory
    exporter). The emulators announce theirs: await ``acs.mailbox.wait_for(...)`` and
    ``servicebus.wait_for(...)``/``wait_until_empty(...)`` instead. ``explain`` describes the state
    a failure was left in.
    """
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"condition not met within {within} s{detail}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` on this event loop until the block ends; enter once it is ready."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: worker.ready or task.done())
        if task.done():
            task.result()  # it failed to start: raise why
        yield worker
    finally:
        stop.set()
        await task


class WorkerProcess:
    """A real ``postbus worker`` in a subprocess, its output kept in a log file for failures."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postbus.cli", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def terminate(self, *, within: float = 40.0) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code (a hang is killed and fails)."""
        if self.proc.poll() is not None:
            return self._wait(0)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self._wait(within)
        except subprocess.TimeoutExpired:
            # The worker's faulthandler writes every thread's stack on SIGUSR2, even with its loop stuck.
            self.proc.send_signal(signal.SIGUSR2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
            self.proc.kill()
            self.proc.wait()
            tail = "\n".join(self.log().splitlines()[-60:])
            raise AssertionError(
                f"worker did not stop within {within} s after SIGTERM; log tail:\n{tail}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: no shutdown, locks simply expire."""
        self.proc.kill()
        self._wait(10.0)

    def _wait(self, within: float) -> int:
        code = self.proc.wait(timeout=within)
        self._log.close()
        return code

    def reap(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()

    def log(self) -> str:
        """What the worker wrote so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def open_side_by_side(*handlers: Any) -> AsyncIterator[tuple[Any, ...]]:
    """Open async SDK senders/receivers concurrently and close them concurrently at the end.

    Each opens its own connection and the SDK paces every handshake (about 0.5 s), so two links
    opened side by side cost what one does::

        async with open_side_by_side(client.get_queue_sender(q, keep_alive=0),
                                     client.get_queue_receiver(q)) as (sender, receiver):
            ...
    """
    try:
        await asyncio.gather(*(handler.__aenter__() for handler in handlers))
        yield handlers
    finally:
        await asyncio.gather(*(handler.close() for handler in handlers))
