"""Helpers shared by the integration suites (importable as ``tests.support``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SENDERS", "eventually"]

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
