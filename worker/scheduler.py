"""Who gets the next send permit: the lane scheduler between the held messages and the one send gate.

The gate (``worker/throttle.py``) decides *when* the next permit exists: it paces this replica
at its learnt share of the quota. This module decides *who* gets it, among the messages this
process holds that are ready to send:

* ``critical`` first, whenever one of its messages waits;
* otherwise ``normal`` and ``bulk`` by weight (smooth weighted round-robin, 4:1 by default), so
  bulk drains at its share while both have work and is never starved by normal;
* within a lane, tenants in turn (round-robin), so one tenant's burst does not hold back another
  tenant's messages that this process already holds.

Round-robin can only choose among *held* messages. A queue is first in, first out: a tenant's
message behind ten thousand of another tenant's is not held until those ahead of it have been
received, and no scheduler here can reach past them. Lanes are the way to keep urgent mail apart.

The scheduler takes a permit from the gate only while someone waits for one, and a permit whose
taker was cancelled goes to the next waiter, so none is lost::

    scheduler = LaneScheduler(gate, weights={Lane.NORMAL: 4, Lane.BULK: 1})
    await scheduler.permits(Lane.BULK).acquire("contoso")   # then send; verdicts go to the gate
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from typing import Final

from postbus.lanes import LANES, Lane
from postbus.worker.throttle import SendGate

__all__ = ["DEFAULT_WEIGHTS", "LanePermits", "LaneScheduler"]

#: Permits normal and bulk get while both wait (critical has no weight: it always goes first).
DEFAULT_WEIGHTS: Final[Mapping[Lane, int]] = {Lane.NORMAL: 4, Lane.BULK: 1}


class _Tenants:
    """The waiters of one lane, tenant by tenant, served in turn."""

    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def push(self, tenant: str, turn: asyncio.Future[None]) -> None:
        self._queues.setdefault(tenant, deque()).append(turn)

    def discard(self, tenant: str, turn: asyncio.Future[None]) -> None:
        queue = self._queues.get(tenant)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(turn)
            if not queue:
                del self._queues[tenant]

    def waiting(self) -> bool:
        """Whether a live waiter is left (cancelled ones at the heads are dropped on the way)."""
        for tenant in list(self._queues):
            queue = self._queues[tenant]
            while queue and queue[0].done():
                queue.popleft()
            if queue:
                return True
            del self._queues[tenant]
        return False

    def pop(self) -> asyncio.Future[None] | None:
        """The next live waiter: the first of the tenant whose turn it is; that tenant goes last."""
        if not self.waiting():
            return None
        tenant, queue = next(iter(self._queues.items()))
        turn = queue.popleft()
        if queue:
            self._queues.move_to_end(tenant)
        else:
            del self._queues[tenant]
        return turn

    def __len__(self) -> int:
        return sum(1 for queue in self._queues.values() for turn in queue if not turn.done())


class LanePermits:
    """One lane's door to the scheduler: what a pipeline awaits before each send."""

    def __init__(self, scheduler: LaneScheduler, lane: Lane) -> None:
        self._scheduler = scheduler
        self.lane = lane

    async def acquire(self, tenant: str) -> None:
        """Wait for a send permit for a message of ``tenant`` in this lane; cancellable, loses none."""
        await self._scheduler.acquire(self.lane, tenant)


class LaneScheduler:
    """Hands out the permits of one :class:`~worker.throttle.SendGate` by lane and tenant (module docstring).

    ``weights`` are the normal and bulk shares; :attr:`granted` counts permits given per lane.
    """

    def __init__(self, gate: SendGate, *, weights: Mapping[Lane, int] = DEFAULT_WEIGHTS) -> None:
        if any(weights.get(lane, 0) < 1 for lane in (Lane.NORMAL, Lane.BULK)):
            raise ValueError(f"normal and bulk weights must be at least 1, got {dict(weights)}")
        self._gate = gate
        self._weights = {lane: weights[lane] for lane in (Lane.NORMAL, Lane.BULK)}
        self._credit = dict.fromkeys(self._weights, 0)
        self._waiting = {lane: _Tenants() for lane in LANES}
        self._fetcher: asyncio.Task[None] | None = None
        self._spare = 0  # permits taken from the gate whose taker went away
        self.granted: Counter[Lane] = Counter()

    def permits(self, lane: Lane) -> LanePermits:
        """The door a pipeline of ``lane`` awaits its permits through."""
        return LanePermits(self, lane)

    def waiting(self, lane: Lane) -> int:
        """Messages of ``lane`` waiting for a permit now."""
        return len(self._waiting[lane])

    async def acquire(self, lane: Lane, tenant: str) -> None:
        """Wait for a permit for a message of ``tenant`` in ``lane``."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[lane].push(tenant, turn)
        self._wake()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give(1)  # granted, then cancelled before it could send: the next waiter has it
            else:
                self._waiting[lane].discard(tenant, turn)
            raise

    async def close(self) -> None:
        """Stop taking permits from the gate (at worker stop)."""
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None and not fetcher.done():
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)

    # -- inside ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._spare and self._give(0):
            return
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = asyncio.create_task(self._fetch(), name="postbus-lane-scheduler")

    async def _fetch(self) -> None:
        # One permit at a time, and only while someone waits: a permit is chosen for its taker the
        # moment the gate hands it out, so a critical message that arrived meanwhile gets it.
        while self._any_waiting():
            await self._gate.acquire()
            self._give(1)

    def _give(self, permits: int) -> bool:
        """Add ``permits`` to the spare ones and hand out what waiters there are; True if any got one."""
        self._spare += permits
        given = False
        while self._spare:
            choice = self._choose()
            if choice is None:
                break
            lane, turn = choice
            self._spare -= 1
            self.granted[lane] += 1
            turn.set_result(None)
            given = True
        return given

    def _any_waiting(self) -> bool:
        return any(tenants.waiting() for tenants in self._waiting.values())

    def _choose(self) -> tuple[Lane, asyncio.Future[None]] | None:
        critical = self._waiting[Lane.CRITICAL].pop()
        if critical is not None:
            return Lane.CRITICAL, critical
        ready = [lane for lane in self._weights if self._waiting[lane].waiting()]
        for lane in self._weights:
            if lane not in ready:
                self._credit[lane] = 0  # an idle lane saves up no burst for later
        if not ready:
            return None
        # Smooth weighted round-robin: interleaves 4:1 as N N B N N, not as a run of four.
        total = sum(self._weights[lane] for lane in ready)
        for lane in ready:
            self._credit[lane] += self._weights[lane]
        best = max(ready, key=lambda lane: self._credit[lane])
        self._credit[best] -= total
        turn = self._waiting[best].pop()
        assert turn is not None  # ready means a live waiter
        return best, turn
