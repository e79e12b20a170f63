"""The send gate: every ACS send first awaits a permit, so a replica stays inside its share of the quota.

ACS Email enforces its quota per *subscription* as sliding per-minute and per-hour windows and
answers an excess with 429 + ``Retry-After``. Every replica shares it and replicas never talk to
each other, so each :class:`AimdGate` learns its share from 429s alone. docs/throttling.md has the
reasoning and the simulation (:mod:`postbus.worker.throttle_sim`) that chose the defaults of
:class:`AimdTuning`; in short:

* **Share and pacing.** A replica allows itself ``share`` (0-1] of the quota: a token bucket paces its
  sends at ``share x per_minute / 60`` per second with about a second of burst, so the server's
  window fills smoothly and a full window is noticed one send at a time, not after a burst.
* **Local mirror.** The replica also keeps its own sends of the last minute and hour and never lets
  them reach the configured limits. Sends are stamped when ACS answers (never earlier than the
  server's stamp), so a lone replica at share 1 is never throttled, whatever the latency.
* **Pause.** A 429 stops the whole process from *starting* sends until ``Retry-After`` has passed.
* **Multiplicative decrease**, at most once per ``Retry-After`` episode (concurrent 429s are one
  signal). A 429 means the server's window is full, so this replica's own entries in its mirror
  divided by the limit is the share it actually had: the new share is ``decrease x`` that. When every
  replica does this the shares add up to just under one, whatever their number.
* **Demand is no ceiling.** That measurement holds only as far as the gate, not demand, held the
  replica back. The gate knows how long it has been *bound* (its permits waited for pacing since a
  whole burst of allowance last went unused), and ``Retry-After`` tells how much of the minute the
  window's entries span; the measured share is divided by the bound fraction of that span (capped
  at the current share). A replica that sent 3 emails in the minute before another application
  filled the window keeps its share; one bound all along learns exactly its entries' share.
* **Increase.** Fast recovery (time constant ``recovery``) back to that measured share, then an
  additive ``increase`` per accepted send, up to ``max_boost`` times faster the further the share
  climbs above the last measured one (quota that a departed replica left behind is found quickly).
  Growth pauses for ``hold`` seconds after a long ``Retry-After``: that window filled in a clump and
  will free in a clump, so slots coming back fast for a while are no sign of spare quota.
* **Regrowth.** ``regrow_after`` seconds after a 429 episode's pause, the share also grows with time
  alone, by 2^((t/``regrow_time``)^2) after t seconds, until the next 429: the replicas or the other
  sender that filled the window may be gone, and probing by accepted sends is slow when sends are
  few. Any learnt share is back at the whole quota within about a minute unless a 429 says otherwise.

* **Told the replica count.** Before its first 429 a replica cannot tell from ACS's answers whether it
  is alone. A gate that is never told starts optimistic (share 1): a lone replica runs at the full
  quota from its first send, but W replicas starting together fill the window in 60/W seconds and
  ACS then accepts nothing, critical mail included, until that clump leaves it (60 - 60/W s). So the
  worker tells the gate how many replicas are live (:meth:`AimdGate.set_replicas`, fed by the
  replica roster): until the gate's first 429 episode its share is 1/n, following n, with no growth
  on accepted sends or with time (growth would refill the window within 30 s and bring the stall
  back). From the first 429 on, the learning above owns the share; a change of the count then scales
  it by old/new, so a dead replica's share reaches the survivors when it ages out of the roster and
  a newcomer finds room made for it (docs/throttling.md, "Replicas starting together").
* **Fair-share ceiling.** A told gate never grows past 1/n (``ceiling``). Without it, after a
  disturbance (a replica killed and replaced) the regrowth of every replica overfilled the window
  together, the clump left the sliding window a minute later all at once, and the send rate swung
  between half and twice the quota with a one-minute period for the rest of the drain.

Permits are handed out first come, first served, without polling; a cancelled waiter takes nothing.
A permit is "in flight" until :meth:`AimdGate.on_accepted` or :meth:`AimdGate.on_throttled` (the
verdict is matched to the oldest permit); a send that gets neither (a 5xx, a timeout) is counted
``pending_timeout`` seconds after its permit, as if ACS took it then.

Example::

    gate = gate_for_quota(per_minute=600, per_hour=20_000)
    await gate.acquire()
    try:
        await mailer.send(email)
    except ThrottledError as exc:
        gate.on_throttled(exc.retry_after)
        raise
    gate.on_accepted()
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import structlog

__all__ = ["AimdGate", "AimdTuning", "SendGate", "UnlimitedGate", "gate_for_quota"]

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0
_SLOTS_PER_WINDOW: Final = 1200  # mirror resolution: 50 ms in the minute window, 3 s in the hour


@dataclasses.dataclass(frozen=True, slots=True)
class AimdTuning:
    """The knobs of :class:`AimdGate`; the defaults are what the simulation in docs/throttling.md chose.

    ``initial_share``: share a new replica starts with (1 = optimistic). ``decrease``: factor applied
    to the measured share on a new 429 episode. ``increase``: share added per accepted send.
    ``max_boost``/``boost_span``: the increase doubles for every ``boost_span`` x the measured share
    the share has climbed above it, up to ``max_boost`` times. ``recovery``: time constant (s) of the
    return to the measured share after a decrease (0 = none). ``hold``: seconds without growth after a
    long ``Retry-After``. ``regrow_after``/``regrow_time``: once ``regrow_after`` seconds have
    passed since the last 429 episode's pause ended, the share grows by 2^((t/regrow_time)^2) over
    the next t seconds until a 429 (``regrow_time`` 0 = never). ``burst``: pacing burst in seconds
    of the current rate (at least one send).
    ``pending_timeout``: seconds after which a permit without a verdict counts as accepted.
    ``max_pause``: longest pause one ``Retry-After`` may impose (a garbage header must not stop the
    worker for days). ``ceiling``: once told the replica count n, the share never grows past
    ``ceiling``/n (0 = no ceiling), so the replicas together never pace above ``ceiling`` x the quota.
    """

    initial_share: float = 1.0
    decrease: float = 0.9
    increase: float = 3e-4
    max_boost: float = 4.0
    boost_span: float = 0.2
    recovery: float = 10.0
    hold: float = 60.0
    regrow_after: float = 10.0
    regrow_time: float = 20.0
    burst: float = 1.0
    pending_timeout: float = 60.0
    max_pause: float = 3600.0
    ceiling: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_share <= 1:
            raise ValueError(f"initial_share must be in (0, 1], got {self.initial_share}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {self.decrease}")
        if self.max_boost < 1 or self.boost_span <= 0:
            raise ValueError("max_boost must be >= 1 and boost_span > 0")
        negative = [
            name
            for name in (
                "increase",
                "recovery",
                "hold",
                "regrow_after",
                "regrow_time",
                "burst",
                "pending_timeout",
                "max_pause",
                "ceiling",
            )
            if getattr(self, name) < 0
        ]
        if negative or self.burst == 0 or self.pending_timeout == 0:
            raise ValueError(
                f"must be >= 0 (burst, pending_timeout > 0): {negative or 'burst/pending_timeout'}"
            )


class SendGate(Protocol):
    """What the worker loop needs from a send gate."""

    async def acquire(self) -> None:
        """Wait for a permit (and for any pause); cancellable without losing a permit."""

    def on_accepted(self) -> None:
        """ACS took a send (202)."""

    def on_throttled(self, retry_after: float) -> None:
        """ACS answered 429: pause the whole process for ``retry_after`` seconds and slow down."""

    def set_replicas(self, count: int | None) -> None:
        """The number of live replicas sharing the quota (this one included), as the roster counts them.

        ``None``: the roster has not answered for as long as a replica takes to age out of it.
        """

    @property
    def rate(self) -> float:
        """Current permitted sends per second (``math.inf`` when unlimited), for the send-rate gauge."""

    @property
    def paused_until(self) -> float:
        """Clock value until which new sends are paused (0 if never paused)."""


class _Window:
    """This replica's own sends in one sliding window, as counts per time slot.

    Stamps are rounded *up* to the slot end, so an entry leaves this mirror no earlier than it
    leaves the server's window; memory is bounded by the slot count, not by the quota.
    """

    def __init__(self, length: float) -> None:
        self.length = length
        self._resolution = length / _SLOTS_PER_WINDOW
        self._slots: deque[list[float]] = deque()  # [slot_end, count]
        self.total = 0

    def add(self, stamp: float) -> None:
        end = math.ceil(stamp / self._resolution) * self._resolution
        if self._slots and end <= self._slots[-1][0]:
            self._slots[-1][1] += 1  # a late or equal stamp joins the newest slot: later, so safe
        else:
            self._slots.append([end, 1])
        self.total += 1

    def expire(self, now: float) -> None:
        while self._slots and self._slots[0][0] + self.length <= now:
            self.total -= int(self._slots.popleft()[1])

    def wait(self, now: float, limit: int, in_flight: int) -> float | None:
        """Seconds until ``total + in_flight < limit``; ``None`` if expiry alone cannot get there."""
        self.expire(now)
        need = self.total + in_flight - limit + 1
        if need <= 0:
            return 0.0
        if need > self.total:
            return None
        seen = 0
        for end, count in self._slots:
            seen += int(count)
            if seen >= need:
                return end + self.length - now
        raise AssertionError("unreachable: need <= total")  # pragma: no cover


class _FifoGate:
    """First-come-first-served permits over a subclass's ``_delay``/``_take``, without polling.

    Only the head of the queue sleeps (until the computed delay, or until a verdict may have shortened
    it); the others await their turn. The permit is taken synchronously after the last await, so a
    cancelled waiter never holds one.
    """

    def __init__(self, *, clock: Clock, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._blocked_on_verdict = False
        self._paused_until = 0.0

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def _delay(self, now: float) -> float:
        raise NotImplementedError

    def _take(self, now: float) -> None:
        raise NotImplementedError

    async def acquire(self) -> None:
        if not self._waiters and self._delay(self._clock()) <= 0:
            self._take(self._clock())
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            if self._waiters[0] is not turn:
                await turn
            while (delay := self._delay(self._clock())) > 0:
                await self._nap(delay)
            self._take(self._clock())
        finally:
            self._waiters.remove(turn)
            if self._waiters and not self._waiters[0].done():
                self._waiters[0].set_result(None)

    def _may_speed_up(self) -> bool:
        """Whether something other than a verdict may shorten the head's wait (a new replica count)."""
        return False

    async def _nap(self, delay: float) -> None:
        if not (self._blocked_on_verdict or self._may_speed_up()):
            # Only a verdict can shorten a wait, and only one that frees a slot of the mirror.
            await self._sleep(delay)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = wake
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait((wake, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            self._wake = None

    def _notify(self) -> None:
        """Something may have shortened the head's wait: let it recompute."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _pause(self, now: float, retry_after: float, max_pause: float) -> None:
        pause = min(max(retry_after, 0.0), max_pause) if math.isfinite(retry_after) else max_pause
        self._paused_until = max(self._paused_until, now + pause)


class UnlimitedGate(_FifoGate):
    """No quota configured: every permit is immediate, except that a 429 still pauses the process.

    A subscription always has *some* quota; this gate is for deployments that configured none (tests,
    benchmarks, a raised quota far above the workers' capacity), and it still honours ``Retry-After``.
    """

    def __init__(
        self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, max_pause: float = 3600.0
    ) -> None:
        super().__init__(clock=clock, sleep=sleep)
        self._max_pause = max_pause

    @property
    def rate(self) -> float:
        return math.inf

    def _delay(self, now: float) -> float:
        return self._paused_until - now

    def _take(self, now: float) -> None:
        pass

    def on_accepted(self) -> None:
        pass

    def on_throttled(self, retry_after: float) -> None:
        self._pause(self._clock(), retry_after, self._max_pause)
        log.info("send_gate_paused", retry_after=retry_after, paused_until=self._paused_until)

    def set_replicas(self, count: int | None) -> None:
        pass  # no share to divide


class AimdGate(_FifoGate):
    """The quota-aware send gate: a paced share of the per-minute and per-hour quota, learnt from 429s.

    ``per_minute``/``per_hour`` are the subscription's limits (0 = no limit for that window, not
    both). ``tuning`` (an :class:`AimdTuning`) and keyword ``overrides`` of its fields set the knobs.

    >>> gate = AimdGate(per_minute=600, per_hour=20_000)
    >>> gate.rate
    10.0
    """

    def __init__(
        self,
        *,
        per_minute: int,
        per_hour: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        tuning: AimdTuning | None = None,
        **overrides: float,
    ) -> None:
        super().__init__(clock=clock, sleep=sleep)
        if per_minute < 0 or per_hour < 0 or per_minute == per_hour == 0:
            raise ValueError(f"need non-negative limits, not both 0: {per_minute}/min, {per_hour}/h")
        self.tuning = tune = dataclasses.replace(tuning or AimdTuning(), **overrides)
        self._limits = [
            (_Window(length), limit) for length, limit in ((_MINUTE, per_minute), (_HOUR, per_hour)) if limit
        ]
        pacing_limit = per_minute or per_hour  # only an hour limit: as if a minute could carry all of it
        self._full_rate = pacing_limit / _MINUTE
        self._min_share = 1.0 / pacing_limit
        # A steady stream frees a slot every 60/Q s, so Retry-After stays near 1 s; longer means a clump.
        self._long_retry_after = 1.0 + 2.0 * _MINUTE / pacing_limit
        self._clump_retry_after = _MINUTE / 4  # a quarter of the window came free at once
        self._max_boost_exponent = math.log2(tune.max_boost)
        self._share = max(self._min_share, tune.initial_share)
        self._measured = 0.0  # the share measured at the last 429 (0: none yet)
        self._episode_until = -math.inf
        self._hold_until = -math.inf
        self._grown_at = clock()
        self._regrow_from = clock() + tune.regrow_after  # when the share may start growing with time
        self._regrown_at = clock()
        self._bound_since: float | None = None  # start of the current stretch limited by pacing
        self._head_paced = False  # the head waiter has waited for pacing, not only for a pause
        self._pending: deque[float] = deque()  # permit times of sends without a verdict, oldest first
        self._tokens = self._bucket_size()
        self._refilled_at = clock()
        self.throttle_episodes = 0
        #: The replica count last told (``None``: never told, so the start is optimistic).
        self.replicas: int | None = None

    @property
    def rate(self) -> float:
        return self.share * self._full_rate

    @property
    def share(self) -> float:
        """The fraction of the configured quota this replica currently allows itself."""
        return self._regrown(self._clock())

    @property
    def in_flight(self) -> int:
        """Permits handed out that have had no verdict yet."""
        return len(self._pending)

    @property
    def _told_share(self) -> bool:
        """The share is 1/replicas, as told, because no 429 has taught this gate anything yet."""
        return self.replicas is not None and not self.throttle_episodes

    def set_replicas(self, count: int | None) -> None:
        """``count`` live replicas share the quota: before the first 429 the share is 1/``count``.

        Called at start and on every roster heartbeat; the share follows the count up and down until
        the first 429 episode. After it AIMD owns the share, and a change of the count scales it by
        old/new (:meth:`_rescale`), which keeps the replicas' shares adding up to what AIMD learnt.

        ``None`` means the count is no longer known (the roster has been unreachable for as long as a
        replica takes to age out). After the first 429 that lifts the fair-share ceiling: with
        replicas gone unseen, a ceiling from the old count would leave their quota unused until the
        roster is back, where AIMD finds it. Before the first 429 the last count's share stays: an
        optimistic start is the clump the count is there to prevent.
        """
        if count is None:
            if self.throttle_episodes and self.replicas is not None:
                self.replicas = None
                log.info("send_gate_count_unknown", share=round(self.share, 4))
            return
        if count < 1:
            raise ValueError(f"a replica count is at least 1, got {count}")
        previous, self.replicas = self.replicas, count
        if self.throttle_episodes:
            if previous is not None and previous != count:
                self._rescale(previous / count)
            elif previous is None:
                self._rescale(1.0)  # a known count again: its ceiling applies again
            return
        self._set_share(max(self._min_share, 1.0 / count))

    def _may_speed_up(self) -> bool:
        return self._told_share

    @property
    def _cap(self) -> float:
        """The most share this replica may take: ``ceiling`` fair shares once told the count, else all."""
        if self.replicas is None or not self.tuning.ceiling:
            return 1.0
        return min(1.0, self.tuning.ceiling / self.replicas)

    def _rescale(self, factor: float) -> None:
        """Scale the learnt share by ``factor`` (old count / new count) when the replicas change.

        The shares AIMD learnt add up to what ACS allows; scaled by old/new they still do. A dead
        replica's share reaches the survivors as soon as it ages out of the roster, not after a
        minute of probing, and a newcomer finds room made for it instead of overfilling the window.
        """
        self._regrow(self._clock())
        if self._measured:
            self._measured = min(self._cap, self._measured * factor)
        self._set_share(min(self._cap, max(self._min_share, self._share * factor)))
        log.info("send_gate_rescaled", factor=round(factor, 3), share=round(self._share, 4))

    def _set_share(self, share: float) -> None:
        """Change the share now, outside the AIMD rules (a new replica count)."""
        self._refill(self._clock())  # tokens earned so far accrue at the old rate
        self._share = share
        self._tokens = min(self._tokens, self._bucket_size())
        self._notify()  # a head pacing at the old rate recomputes its wait

    def on_accepted(self) -> None:
        now = self._clock()
        self._regrow(now)
        self._settle_oldest(now, counted=True)
        if self._told_share:
            # No growth before the first 429: replicas that each grew from 1/n would fill the window
            # together within half a minute, and the stall the count was told to prevent comes back.
            self._grown_at = now
            self._wake_if_blocked()
            return
        elapsed, self._grown_at = max(0.0, now - self._grown_at), now
        tune = self.tuning
        if self._share < self._measured and tune.recovery > 0:
            self._share += (self._measured - self._share) * min(1.0, elapsed / tune.recovery)
        if now >= self._hold_until:
            step = tune.increase
            if self._share > self._measured:
                span = max(tune.boost_span * self._measured, self._min_share)
                step *= 2.0 ** min(self._max_boost_exponent, (self._share - self._measured) / span)
            self._share += step
        self._share = min(self._cap, self._share)
        self._wake_if_blocked()

    def on_throttled(self, retry_after: float) -> None:
        now = self._clock()
        self._settle_oldest(now, counted=False)
        tune = self.tuning
        self._regrow(now)
        if now >= self._episode_until:
            # What this replica had of the full window is its share only as far as its gate, not its
            # demand, held it back. Retry-After tells how old the window's oldest entry is, so weigh
            # the measurement by how much of the window's span this replica was bound.
            bound = 0.0 if self._bound_since is None else now - self._bound_since
            span = self._limits[0][0].length - min(max(retry_after, 0.0), self._limits[0][0].length)
            trust = 1.0 if bound >= span else bound / span
            had = self._share
            measured = self._measured_share(now)
            self._measured = min(had, measured / trust) if trust > 0 else had
            self._share = max(self._min_share, self._measured * tune.decrease)
            self.throttle_episodes += 1
            log.info(
                "send_gate_throttled",
                retry_after=retry_after,
                share=round(self._share, 4),
                trust=round(trust, 2),
            )
        self._pause(now, retry_after, tune.max_pause)
        # 429s for sends already in flight belong to this episode.
        self._episode_until = max(self._episode_until, self._paused_until)
        if retry_after > self._long_retry_after:
            self._hold_until = max(self._hold_until, self._paused_until + tune.hold)
        regrow_from = self._paused_until + tune.regrow_after
        if retry_after >= self._clump_retry_after:
            # The replicas filled the window together and will again: time is no sign of spare quota.
            regrow_from = max(regrow_from, self._hold_until)
        self._regrow_from = max(self._regrow_from, regrow_from)
        self._wake_if_blocked()

    def _delay(self, now: float) -> float:
        self._expire_pending(now)
        self._regrow(now)
        paused = self._paused_until - now
        self._refill(now)
        pacing = 0.0
        if self._tokens < 1.0 - 1e-9:
            pacing = (1.0 - self._tokens) / (self._share * self._full_rate)
        self._blocked_on_verdict = False
        for window, limit in self._limits:
            wait = window.wait(now, limit, len(self._pending))
            if wait is None:  # only a verdict (or the pending timeout) can make room
                self._blocked_on_verdict = True
                wait = self._pending[0] + self.tuning.pending_timeout - now
            pacing = max(pacing, wait)
        if pacing > 0 and pacing > paused:
            self._head_paced = True
        delay = max(paused, pacing)
        # A positive delay below the clock's resolution would make the head spin without time passing.
        return 0.0 if delay <= 0 else max(delay, 1e-6)

    def _take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0
        self._pending.append(now)
        if self._head_paced:
            if self._bound_since is None:
                self._bound_since = now
        elif self._tokens >= self._bucket_size() - 1.0 - 1e-9 and len(self._waiters) <= 1:
            # Nobody else waits and the bucket was full: a whole burst of allowance went unused, so
            # demand, not the gate, is the limit. (A permit or two to spare is just uneven arrivals.)
            self._bound_since = None
        self._head_paced = False

    def _bucket_size(self) -> float:
        return max(1.0, self._share * self._full_rate * self.tuning.burst)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        rate = self._share * self._full_rate
        self._tokens = min(self._bucket_size(), self._tokens + elapsed * rate)
        self._refilled_at = now

    def _regrown(self, now: float) -> float:
        """The share with the growth that time alone has earned since it was last brought up to date.

        A learnt share is a fact about the window it was learnt in: the replicas or the other sender
        that filled it may be gone. Probing by accepted sends alone is slow when sends are few (a
        small quota, a small share), so after a quiet stretch the share also grows with time until
        the next 429 says where the limit is now: by 2^((t/T)^2) after t seconds, gently at first
        (little overshoot where the learnt share is still right), then fast (x2 at T, x16 at 2T).
        """
        span = self.tuning.regrow_time
        start = self._regrow_from
        cap = self._cap
        if span <= 0 or now <= start or self._share >= cap or self._told_share:
            return self._share
        before = max(0.0, self._regrown_at - start) / span
        after = (now - start) / span
        growth: float = 2.0 ** (after * after - before * before)
        return min(cap, self._share * growth)

    def _regrow(self, now: float) -> None:
        if now > self._regrown_at:
            # Tokens earned so far accrue at the old rate, before the share changes.
            self._refill(now)
            self._share = self._regrown(now)
            self._regrown_at = now

    def _settle_oldest(self, now: float, *, counted: bool) -> None:
        # Matching each verdict to the oldest permit and stamping it now never undercounts the window:
        # the i-th answer comes no earlier than the i-th request reached the server.
        if self._pending:
            self._pending.popleft()
        if counted:
            for window, _ in self._limits:
                window.add(now)

    def _expire_pending(self, now: float) -> None:
        timeout = self.tuning.pending_timeout
        while self._pending and self._pending[0] + timeout <= now:
            stamp = self._pending.popleft() + timeout
            for window, _ in self._limits:
                window.add(stamp)

    def _measured_share(self, now: float) -> float:
        shares = []
        for window, limit in self._limits:
            window.expire(now)
            shares.append((window.total + len(self._pending)) / limit)
        return max(self._min_share, *shares)

    def _wake_if_blocked(self) -> None:
        if self._blocked_on_verdict:
            self._notify()


def gate_for_quota(per_minute: int, per_hour: int) -> SendGate:
    """The gate for a configured quota; 0 means "no limit" for that window (both 0: unlimited)."""
    if per_minute == 0 and per_hour == 0:
        return UnlimitedGate()
    return AimdGate(per_minute=per_minute, per_hour=per_hour)
