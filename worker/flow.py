"""Flow control of the worker loop: how much a process holds, and telling a waiting receive from a dead one."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Final

from postbus.settings import Settings

__all__ = [
    "HEARTBEAT_SECONDS",
    "HOLD_SECONDS",
    "LoopHeartbeat",
    "effective_prefetch",
    "holding_limit",
    "lane_prefetch",
]

#: Seconds of paced sends a process holds messages for (see :func:`holding_limit`).
HOLD_SECONDS: Final = 2.0
#: Period of the event-loop heartbeat that tells a waiting receive from a spinning one.
HEARTBEAT_SECONDS: Final = 0.1


def effective_prefetch(settings: Settings) -> int:
    """Prefetch, or none at all when a quota paces the sends.

    A prefetched message is locked but not renewed and invisible to every other replica. When a
    quota paces the sends, each replica's pace is capped at its share, so at the end of a spike the
    messages in one replica's buffer wait for its permits while the others, their own messages
    sent, have quota to spare. Without prefetch the receive loop asks for exactly what the gate lets
    it hold (:func:`holding_limit`), and the SDK releases what arrives after a receive returns,
    so no message waits where another replica could send it.
    """
    if settings.quota_per_minute <= 0 and settings.quota_per_hour <= 0:
        return settings.prefetch
    return 0


def lane_prefetch(settings: Settings, lanes: int) -> int:
    """Prefetch of each of ``lanes`` receivers: the process's prefetch shared out, at least one.

    A prefetched message is locked but not yet renewed and invisible to every other lane and
    replica; with three lanes each keeps a third, so none hides much work or outlives its lock.
    """
    prefetch = effective_prefetch(settings)
    if lanes <= 1 or prefetch == 0:
        return prefetch
    return max(1, prefetch // lanes)


def holding_limit(rate: float, concurrency: int) -> int:
    """How many messages this process should hold at once when its sends are paced at ``rate``/s.

    Messages held beyond a couple of seconds of sends just wait for permits while other replicas,
    whose share of the quota is idle, could send them.
    """
    if not math.isfinite(rate):
        return concurrency
    return max(1, min(concurrency, math.ceil(rate * HOLD_SECONDS)))


class LoopHeartbeat:
    """Counts event-loop turns, to tell a receive that waited from one that spun without yielding.

    After some connection failures the SDK's receiver stops working without raising: a receive
    either polls the dead connection for its whole wait without suspending, or returns no messages
    at once, every time. Nothing else in the process runs meanwhile, not even the SIGTERM handler.
    An empty receive while this counter did not move is that case, and the worker replaces its
    links.
    """

    def __init__(self) -> None:
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopHeartbeat:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self.beats += 1
