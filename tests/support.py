"""Helpers shared by the integration suites (importable as ``tests.support``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SENDERS", "WorkerProcess", "eventually"]

SENDERS = {
    "orders": "orders@shop.example.com",
    "returns": "returns@shop.example.com",
    "care": "care@clinic.example.org",
    "permits": "permits@city.example.net",
}


async def eventually(condition: Callable[[], Any], *, within: float = 20.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``within`` seconds.

    The emulators run in their own threads and offer no change notification, so polling with a
    deadline is how a test waits for them.
    """
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


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
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self._wait(within)

    def kill(self) -> None:
        """SIGKILL: no shutdown, locks simply expire."""
        self.proc.kill()
        self._wait(10.0)

    def _wait(self, within: float) -> int:
        try:
            return self.proc.wait(timeout=within)
        finally:
            self._log.close()

    def log(self) -> str:
        """What the worker wrote so far."""
        return self.log_path.read_text(errors="replace")
