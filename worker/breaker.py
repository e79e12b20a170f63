"""The circuit breaker for systemic failures.

A 401/403, an unverified sender domain or a configuration error is not any one message's fault:
dead-lettering would empty the queue into the DLQ within minutes. So the worker abandons the
message (Service Bus keeps it), *opens* the breaker and stops receiving. After a cool-down the
breaker is *half-open* and lets exactly one probe message through; if the probe succeeds the breaker
closes and the cool-down resets, if it fails the breaker re-opens with the cool-down doubled (up to
a maximum) so a long outage costs one probe per cool-down, not a storm of abandons that burns every
message's delivery count.

::

    CLOSED ──failure──▶ OPEN ──cool-down passed──▶ HALF_OPEN ──probe succeeds──▶ CLOSED
                         ▲                             │
                         └──probe fails (cool-down×2)──┘

Example::

    breaker = CircuitBreaker(cooldown=5.0, max_cooldown=300.0)
    async with breaker.probe():               # at once while closed; else the cool-down, then the probe
        try:
            outcome = await process(message)
        except SystemicError as exc:
            breaker.record_failure(str(exc))
        else:
            breaker.record_success()
    # a probe that ended without a verdict is handed back for the next message
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum

import structlog

__all__ = ["BreakerState", "CircuitBreaker"]

log = structlog.get_logger(__name__)


class BreakerState(Enum):
    """Where the breaker is; the worker's gauge exports the value."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops a worker from consuming while the deployment is broken, and probes its way back.

    Verdicts that arrive while the breaker is OPEN come from messages that started before it opened:
    a failure only updates :attr:`last_error` (the cool-down is not extended), a success is ignored
    (it proves nothing about *now*). In HALF_OPEN any verdict counts, probe or not.
    """

    def __init__(
        self, *, cooldown: float, max_cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError(f"need 0 < cooldown <= max_cooldown, got {cooldown} and {max_cooldown}")
        self._base = cooldown
        self._max = max_cooldown
        self._clock = clock
        self._cooldown = cooldown
        self._open = False
        self._opened_at = 0.0
        self._probe_out = False
        self._last_error = ""
        self._verdict_waiters: list[asyncio.Future[None]] = []

    @property
    def state(self) -> BreakerState:
        """CLOSED, OPEN, or HALF_OPEN once the cool-down of an open breaker has passed."""
        if not self._open:
            return BreakerState.CLOSED
        if self._clock() >= self._opened_at + self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def ready(self) -> bool:
        """False while OPEN or HALF_OPEN: ``/readyz`` reports not-ready until a probe succeeded."""
        return not self._open

    @property
    def cooldown(self) -> float:
        """The cool-down the breaker is (or would next be) open for."""
        return self._cooldown

    @property
    def cooldown_remaining(self) -> float:
        """Seconds until an OPEN breaker turns HALF_OPEN; 0 otherwise."""
        if not self._open:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    @property
    def last_error(self) -> str:
        """The reason given with the latest systemic failure ("" if none yet)."""
        return self._last_error

    def allow(self) -> bool:
        """May the loop start one more message now? In HALF_OPEN this hands out the single probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            log.info("breaker_probe", cooldown=self._cooldown)
            return True
        return False

    def record_success(self) -> None:
        """A message went through: a half-open breaker closes and the cool-down resets."""
        if self.state is not BreakerState.HALF_OPEN:
            return  # CLOSED: nothing to do; OPEN: a stale success from before the opening
        self._open = False
        self._probe_out = False
        self._cooldown = self._base
        log.info("breaker_closed")
        self._wake()

    def record_failure(self, reason: str) -> None:
        """A systemic failure: open (or re-open with a doubled cool-down after a failed probe)."""
        self._last_error = reason
        state = self.state
        if state is BreakerState.OPEN:
            return  # a message that started before the opening; the cool-down already runs
        if state is BreakerState.HALF_OPEN:
            self._cooldown = min(self._max, self._cooldown * 2)
        self._open = True
        self._opened_at = self._clock()
        self._probe_out = False
        log.warning("breaker_opened", reason=reason, cooldown=self._cooldown)
        self._wake()

    def release_probe(self) -> None:
        """The probe ended without a verdict (not systemic, not sent): let another message probe."""
        if self._probe_out:
            self._probe_out = False
            self._wake()

    @contextlib.asynccontextmanager
    async def probe(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> AsyncIterator[bool]:
        """Hold the breaker's one probe for the block; yields whether the block is a probe.

        Closed: yields ``False`` at once. Open or half-open: waits out the cool-down (and any other
        probe), then yields ``True``. The block's message records the verdict (:meth:`record_success`
        or :meth:`record_failure`); a probe that ends without one (nothing received, the message
        skipped, the block cancelled) is handed back, so the next message can probe.
        """
        if self.ready:
            yield False
            return
        await self.wait_until_allowed(sleep)
        try:
            yield self._probe_out
        finally:
            self.release_probe()

    async def wait_until_allowed(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Return once :meth:`allow` said yes (the caller then owns that permission, probe included).

        Sleeps out the cool-down with ``sleep``; while another probe is out it waits for that probe's
        verdict instead of polling.
        """
        while not self.allow():
            remaining = self.cooldown_remaining
            if remaining > 0:
                await sleep(remaining)
                continue
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._verdict_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._verdict_waiters:
                    self._verdict_waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._verdict_waiters = self._verdict_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
