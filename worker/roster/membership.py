"""One replica's place on the roster: join before the first receive, heartbeat, leave on shutdown.

Each count goes to ``on_count`` (the send gate's ``set_replicas``). A roster that cannot be reached
must never stop sending: a failed or slow heartbeat (one that takes longer than a heartbeat) is
logged once per outage, the last count stays (1 if there never was one), and the next heartbeat
tries again. Once the outage has lasted as many heartbeats as a killed replica takes to age out,
replicas may have come and gone unseen, so ``on_count`` hears ``None`` (unknown) until the roster
answers again. A change of the count is one log line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from postbus.logs import get_logger
from postbus.worker.roster.base import LIVE_HEARTBEATS, Roster, RosterUnavailable

__all__ = ["Membership"]

log = get_logger("postbus.worker.roster")

#: Seconds between heartbeats during the first heartbeat after joining. Replicas that start together
#: each count only those that joined before them; beating this often at first lets them find each
#: other within a second instead of a heartbeat, before the first of them has overfilled the window.
STARTUP_BEAT: Final = 1.0


class Membership:
    """This replica on a :class:`~postbus.worker.roster.base.Roster`, feeding its count to the gate.

    Example::

        membership = Membership(roster, heartbeat=5.0, on_count=gate.set_replicas)
        await membership.join()
        heartbeats = asyncio.create_task(membership.run())
        ...
        heartbeats.cancel()
        await membership.leave()
    """

    def __init__(
        self,
        roster: Roster,
        *,
        heartbeat: float,
        on_count: Callable[[int | None], None],
        replica: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.roster = roster
        self.replica = replica or uuid.uuid4().hex
        #: The last live count the roster gave (1 until it gives one).
        self.count = 1
        #: Heartbeats that failed (the store unreachable, or slower than a heartbeat).
        self.failures = 0
        self._failed_in_a_row = 0  # heartbeats failed since the last one that got through
        self._heartbeat = heartbeat
        self._on_count = on_count
        self._sleep = sleep
        self._counted = False

    async def join(self) -> int:
        """The first heartbeat; returns the count (the last one, or 1, if the roster is unavailable)."""
        count = await self.beat()
        log.info(
            "joined the replica roster",
            replica=self.replica,
            replicas=count,
            reachable=not self._failed_in_a_row,
        )
        return count

    async def beat(self) -> int:
        """One heartbeat: stamp this replica, take the live count, tell ``on_count``."""
        try:
            async with asyncio.timeout(self._heartbeat):
                count = await self.roster.beat(self.replica)
        except (RosterUnavailable, TimeoutError) as exc:
            self.failures += 1
            self._failed_in_a_row += 1
            if self._failed_in_a_row == 1:
                error = str(exc) or f"no answer within {self._heartbeat:g} s"
                log.warning(
                    "replica roster unavailable; keeping the last count", replicas=self.count, error=error
                )
            if self._failed_in_a_row < LIVE_HEARTBEATS:
                self._on_count(self.count)
                return self.count
            if self._failed_in_a_row == LIVE_HEARTBEATS:
                # As long as a killed replica takes to age out: the last count may be stale by now.
                log.warning("replica roster still unavailable; the replica count is unknown", replicas=None)
            self._on_count(None)
            return self.count
        if self._failed_in_a_row:
            self._failed_in_a_row = 0
            log.info("replica roster reachable again", replicas=count)
        if self._counted and count != self.count:
            log.info("replica count changed", replicas=count, previous=self.count)
        self._counted = True
        self.count = count
        self._on_count(count)
        return count

    async def run(self) -> None:
        """Heartbeat until cancelled: every :data:`STARTUP_BEAT` s for the first heartbeat, then every ``heartbeat`` s."""
        startup = min(STARTUP_BEAT, self._heartbeat)
        for _ in range(max(0, round(self._heartbeat / startup) - 1)):
            await self._sleep(startup)
            await self.beat()
        while True:
            await self._sleep(self._heartbeat)
            await self.beat()

    async def leave(self) -> None:
        """Leave the roster so the others count without this replica at once; failures only logged."""
        try:
            async with asyncio.timeout(self._heartbeat):
                await self.roster.leave(self.replica)
        except (RosterUnavailable, TimeoutError) as exc:
            # It ages out of the others' counts within a few heartbeats instead.
            log.warning("could not leave the replica roster", error=str(exc) or "timed out")
