"""Keeping the locks of held messages: one task for all of them, not one per message.

:class:`LockKeeper` renews each held message's lock halfway through what is left of it (a 5 s
lock every 2.5 s, the default minute every 30 s), from a single task that sleeps until the next
renewal is due. A message is held for the duration of a :meth:`LockKeeper.hold` block and never
renewed after it: a message whose settlement failed must come back when its lock expires.
Holding costs a dict entry, not a task, which matters when hundreds of messages are in flight
and almost none of them lives long enough to need a renewal::

    keeper = LockKeeper(renew_one)
    async with keeper.hold(delivery, up_to=300):
        ...                      # renewed while this runs
    await keeper.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from postbus.bus.messages import Delivery
from postbus.logs import get_logger

__all__ = ["MIN_RENEW_INTERVAL", "LockKeeper"]

log = get_logger("postbus.bus")

#: Shortest pause between two renewals of one lock.
MIN_RENEW_INTERVAL: Final = 0.5


class _Held:
    __slots__ = ("delivery", "due", "give_up", "renewing")

    def __init__(self, delivery: Delivery, give_up: float) -> None:
        self.delivery = delivery
        self.give_up = give_up
        self.due: float | None = None
        self.renewing: asyncio.Task[None] | None = None


class LockKeeper:
    """Renews the locks of every held message from one task (see the module docstring).

    ``renew`` renews one message's lock and raises on failure; after a failure that message is
    not renewed again (its lock is lost, or the receiver is gone).
    """

    def __init__(self, renew: Callable[[Delivery], Awaitable[None]]) -> None:
        self._renew = renew
        self._held: dict[int, _Held] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._next_due = math.inf
        self._closed = False

    def hold(self, delivery: Delivery, *, up_to: float) -> _Hold:
        """Keep ``delivery`` locked while the block runs, for at most ``up_to`` seconds."""
        return _Hold(self, delivery, up_to)

    async def close(self) -> None:
        """Stop renewing anything (in-flight renewals are cancelled)."""
        self._closed = True
        tasks = [held.renewing for held in self._held.values() if held.renewing is not None]
        if self._task is not None:
            tasks.append(self._task)
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- held messages ----------------------------------------------------------------------------

    def _add(self, delivery: Delivery, up_to: float) -> _Held:
        loop = asyncio.get_running_loop()
        held = _Held(delivery, loop.time() + up_to)
        held.due = self._due(held, loop.time())
        self._held[id(held)] = held
        if held.due is not None and not self._closed:
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="renew message locks")
            elif held.due < self._next_due:
                self._wake.set()
        return held

    async def _remove(self, held: _Held) -> None:
        self._held.pop(id(held), None)
        held.due = None
        renewing, held.renewing = held.renewing, None
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    @staticmethod
    def _due(held: _Held, now: float) -> float | None:
        """When to renew next: halfway through what is left of the lock, or never."""
        message: Any = held.delivery.handle
        locked_until = message.locked_until_utc
        if locked_until is None:
            return None
        left = (locked_until - datetime.now(UTC)).total_seconds()
        due = now + max(MIN_RENEW_INTERVAL, left / 2)
        return None if due > held.give_up else due

    # -- the one task -----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            next_due = math.inf
            for held in list(self._held.values()):
                if held.due is None or held.renewing is not None:
                    continue
                if held.due <= now:
                    held.renewing = asyncio.create_task(self._renew_one(held))
                else:
                    next_due = min(next_due, held.due)
            self._next_due = next_due
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if math.isinf(next_due) else next_due - now):
                    await self._wake.wait()

    async def _renew_one(self, held: _Held) -> None:
        try:
            await self._renew(held.delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The lock is lost or the receiver is gone: the message comes back when it expires.
            log.warning("lock renewal failed", message_id=held.delivery.message_id, error=str(exc))
            held.due = None
        else:
            held.due = self._due(held, asyncio.get_running_loop().time())
        held.renewing = None
        self._wake.set()


class _Hold:
    """The ``async with`` block of :meth:`LockKeeper.hold`."""

    __slots__ = ("_delivery", "_held", "_keeper", "_up_to")

    def __init__(self, keeper: LockKeeper, delivery: Delivery, up_to: float) -> None:
        self._keeper = keeper
        self._delivery = delivery
        self._up_to = up_to
        self._held: _Held | None = None

    async def __aenter__(self) -> None:
        self._held = self._keeper._add(self._delivery, self._up_to)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._held is not None:
            await self._keeper._remove(self._held)
