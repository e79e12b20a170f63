"""Virtual-time simulation of W worker processes' send gates sharing one sliding-window ACS quota.

Runs the real :class:`~postbus.worker.throttle.AimdGate` (acquire, pause, AIMD) on an asyncio event
loop whose clock is *virtual*: the selector advances time instead of blocking, so an hour of traffic
takes seconds and every run with the same seed gives the same numbers. The server side is a
sliding-window limiter with the ACS emulator's semantics (a request is admitted when every window has
a free slot, otherwise ``Retry-After`` is the whole seconds, at least 1, until the entry that blocks
it leaves the window); a unit test checks the two agree.

Each process runs ``concurrency`` coroutines that take an event from the shared backlog (the queue),
await a permit, and "send" with a uniformly random latency (the server stamps the request half way).
A 429 reports ``Retry-After`` to the gate and puts the event back in the backlog. Around that core a
:class:`Scenario` can add what happens in production: a trickle of events before the spike (low
demand), another application sending on the same quota, processes joining or leaving (KEDA), and a
process killed mid-spike whose messages come back when their locks expire.

It ships with the worker so that the unit tests and ``bench/gate_simulation.py`` drive the same code;
production code does not use it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import selectors
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from postbus.worker.roster import LIVE_HEARTBEATS, Membership, MemoryRoster
from postbus.worker.throttle import AimdGate, AimdTuning

__all__ = ["Foreign", "Kill", "Scenario", "SlidingQuota", "VirtualClockLoop", "simulate"]


class _AdvancingSelector(selectors.DefaultSelector):
    """A selector that never waits: a select with a timeout moves the virtual clock instead."""

    advance: Callable[[float], None]

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("simulation deadlock: every task waits and no timer is scheduled")
        if timeout > 0:
            self.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``asyncio.sleep(3600)`` returns at once with ``loop.time()`` + 3600.

    Only for code that does no real I/O (timers and futures only).
    """

    def __init__(self) -> None:
        selector = _AdvancingSelector()
        super().__init__(selector)
        self._virtual_now = 0.0
        selector.advance = self._advance

    def time(self) -> float:
        return self._virtual_now

    def _advance(self, seconds: float) -> None:
        self._virtual_now += seconds


class SlidingQuota:
    """Sliding per-minute and per-hour windows, same semantics as the emulator's ``QuotaLimiter``.

    O(1) per request (a deque per window) so that a 60,000/min quota simulates quickly; the
    emulator's limiter counts its whole log on every request, which is fine for a server but slow here.
    """

    def __init__(self, per_minute: int, per_hour: int, clock: Callable[[], float]) -> None:
        self._windows = [(60.0, lim, deque[float]()) for lim in (per_minute,) if lim] + [
            (3600.0, lim, deque[float]()) for lim in (per_hour,) if lim
        ]
        self._clock = clock

    def try_acquire(self) -> int | None:
        """``None`` if the request is admitted, else its ``Retry-After`` in whole seconds."""
        now = self._clock()
        wait = 0.0
        for length, limit, log in self._windows:
            while log and log[0] <= now - length:
                log.popleft()
            if len(log) >= limit:
                wait = max(wait, log[len(log) - limit] + length - now)
        if wait > 0:
            return max(1, math.ceil(wait))
        for _, _, log in self._windows:
            log.append(now)
        return None


@dataclass(frozen=True, slots=True)
class Foreign:
    """Another application on the same subscription: ``rate`` attempts/s for ``seconds`` from ``at``.

    It ignores 429s (a rejected attempt is simply lost), as a sender that knows nothing of ours would.
    """

    at: float
    seconds: float
    rate: float


@dataclass(frozen=True, slots=True)
class Kill:
    """The newest running process dies at ``at`` (SIGKILL, a lost node); a new one starts ``replaced_after`` s later.

    Messages it held come back ``Scenario.lock`` seconds after the kill, when their locks expire; a
    send ACS had already taken is not repeated (the worker looks it up before resending).
    """

    at: float
    replaced_after: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """One simulated spike of ``backlog`` events against a shared quota.

    ``latency`` is the ACS call's; ``settle`` is the time a handler then spends settling the message
    before it takes the next one (the real worker's handlers spend more time settling than sending).

    ``changes`` are (time, +n or -n processes) applied mid-run. ``trickle_per_minute`` events arrive
    evenly before ``spike_at``, when the backlog arrives at once (low demand, then a spike).

    ``roster`` is the replica roster's heartbeat in seconds (0: no roster, the gates are never told
    the count). With one, every process is a :class:`~postbus.worker.roster.membership.Membership`
    of one shared :class:`~postbus.worker.roster.base.MemoryRoster` on the virtual clock, as the
    worker is of its store's: it joins before its first permit and tells its gate every count; a
    stopped process leaves at once, a killed one ages out three heartbeats after its last beat.
    """

    name: str
    per_minute: int
    per_hour: int
    workers: int
    backlog: int
    concurrency: int = 16
    latency: tuple[float, float] = (0.005, 0.100)
    settle: tuple[float, float] = (0.0, 0.0)
    changes: tuple[tuple[float, int], ...] = ()
    seed: int = 1
    tuning: dict[str, float] = field(default_factory=dict)
    sample_every: float = 60.0
    trickle_per_minute: float = 0.0
    spike_at: float = 0.0
    foreign: tuple[Foreign, ...] = ()
    kills: tuple[Kill, ...] = ()
    lock: float = 30.0
    roster: float = 0.0

    @property
    def trickle(self) -> int:
        """Events that arrive before the spike."""
        return int(self.trickle_per_minute * self.spike_at / 60.0)

    @property
    def bin(self) -> float:
        """Seconds per throughput bin: ten, or long enough for 10 sends at the full quota."""
        return max(10.0, 600.0 / (self.per_minute or self.per_hour))


@dataclass
class _Process:
    gate: AimdGate
    tasks: list[asyncio.Task[None]]
    accepted: int = 0
    throttled: int = 0
    stopped: bool = False
    killed: bool = False
    membership: Membership | None = None

    @property
    def running(self) -> bool:
        return not self.tasks[0].done()


def _ideal_drain(scenario: Scenario) -> float:
    """Seconds a perfect pacer needs: one send every 60/Q s, never more than per_hour in an hour."""
    step = 60.0 / (scenario.per_minute or scenario.per_hour)
    times: list[float] = []
    for i in range(scenario.backlog):
        t = times[-1] + step if times else 0.0
        if scenario.per_hour and i >= scenario.per_hour:
            t = max(t, times[i - scenario.per_hour] + 3600.0)
        times.append(t)
    return max(times[-1], step)


class _Run:
    """One scenario in progress: the shared backlog and quota, the worker processes, other senders."""

    def __init__(self, scenario: Scenario, gate_type: type[AimdGate]) -> None:
        self.scenario = scenario
        self.gate_type = gate_type
        self.loop = asyncio.get_running_loop()
        self.rng = random.Random(scenario.seed)
        self.quota = SlidingQuota(scenario.per_minute, scenario.per_hour, self.loop.time)
        self.backlog: asyncio.Queue[int] = asyncio.Queue()
        self.total = scenario.trickle + scenario.backlog
        self.delivered = 0
        self.done = asyncio.Event()
        self.spike_started = 0.0
        self.last_accept = 0.0
        self.accepted_at: list[float] = []
        self.foreign_accepted: list[float] = []
        self.processes: list[_Process] = []
        self.shares: list[tuple[float, list[float]]] = []
        self.roster = (
            MemoryRoster(clock=self.loop.time, expiry=LIVE_HEARTBEATS * scenario.roster)
            if scenario.roster > 0
            else None
        )

    async def sender(self, proc: _Process) -> None:
        while True:
            event = await self.backlog.get()
            taken = False
            try:
                await proc.gate.acquire()
                latency = self.rng.uniform(*self.scenario.latency)
                await asyncio.sleep(latency / 2)  # the server stamps the request half way
                retry_after = self.quota.try_acquire()
                taken = retry_after is None
                await asyncio.sleep(latency / 2)
            except asyncio.CancelledError:
                if taken:
                    self.accept(None)  # ACS has it; the redelivery finds it there
                elif proc.killed:
                    self.loop.call_later(self.scenario.lock, self.backlog.put_nowait, event)
                else:
                    self.backlog.put_nowait(event)  # a process that leaves abandons its message
                raise
            if retry_after is None:
                proc.gate.on_accepted()
                proc.accepted += 1
                self.accept(proc)
            else:
                proc.gate.on_throttled(retry_after)
                proc.throttled += 1
                self.backlog.put_nowait(event)
            if self.scenario.settle[1] > 0:
                # Settling with Service Bus keeps the handler away from the gate for a while.
                await asyncio.sleep(self.rng.uniform(*self.scenario.settle))

    def accept(self, proc: _Process | None) -> None:
        now = self.loop.time()
        self.delivered += 1
        self.last_accept = now
        self.accepted_at.append(now)
        if self.delivered == self.total:
            self.done.set()

    def start_process(self) -> None:
        s = self.scenario
        gate = self.gate_type(
            per_minute=s.per_minute, per_hour=s.per_hour, clock=self.loop.time, tuning=AimdTuning(**s.tuning)
        )
        proc = _Process(gate, [])
        self.processes.append(proc)
        if self.roster is not None:
            proc.membership = Membership(
                self.roster, heartbeat=s.roster, on_count=gate.set_replicas, replica=str(len(self.processes))
            )
            # Created before the senders, so it joins before any of them takes a permit.
            proc.tasks.append(asyncio.create_task(self.member(proc.membership)))
        proc.tasks += [asyncio.create_task(self.sender(proc)) for _ in range(s.concurrency)]

    def stop_process(self, *, killed: bool) -> None:
        leaving = [p for p in self.processes if p.running and not p.stopped][-1]
        leaving.stopped, leaving.killed = True, killed
        for task in leaving.tasks:
            task.cancel()
        if leaving.membership is not None and not killed:
            leaving.tasks.append(asyncio.create_task(leaving.membership.leave()))

    async def member(self, membership: Membership) -> None:
        await membership.join()
        await asyncio.sleep(self.rng.uniform(0.0, 1.0))  # replicas do not beat in step
        await membership.run()

    async def scale(self) -> None:
        for at, delta in self.scenario.changes:
            await asyncio.sleep(max(0.0, at - self.loop.time()))
            for _ in range(delta):
                self.start_process()
            for _ in range(-delta):
                self.stop_process(killed=False)

    async def kill(self, kill: Kill) -> None:
        await asyncio.sleep(kill.at)
        self.stop_process(killed=True)
        await asyncio.sleep(kill.replaced_after)
        self.start_process()

    async def arrivals(self) -> None:
        s = self.scenario
        if s.trickle:
            gap = s.spike_at / s.trickle
            for event in range(s.trickle):
                await asyncio.sleep(max(0.0, (event + 0.5) * gap - self.loop.time()))
                self.backlog.put_nowait(event)
        await asyncio.sleep(max(0.0, s.spike_at - self.loop.time()))
        self.spike_started = self.loop.time()
        for event in range(s.trickle, self.total):
            self.backlog.put_nowait(event)

    async def other_sender(self, foreign: Foreign) -> None:
        await asyncio.sleep(foreign.at)
        for attempt in range(round(foreign.seconds * foreign.rate)):
            await asyncio.sleep(max(0.0, foreign.at + attempt / foreign.rate - self.loop.time()))
            if self.quota.try_acquire() is None:
                self.foreign_accepted.append(self.loop.time())

    async def sample(self) -> None:
        while True:
            self.shares.append(
                (self.loop.time(), [p.gate.share if p.running else 0.0 for p in self.processes])
            )
            await asyncio.sleep(self.scenario.sample_every)

    async def run(self) -> dict[str, Any]:
        for _ in range(self.scenario.workers):
            self.start_process()
        helpers = [
            asyncio.create_task(self.scale()),
            asyncio.create_task(self.sample()),
            asyncio.create_task(self.arrivals()),
            *(asyncio.create_task(self.kill(k)) for k in self.scenario.kills),
            *(asyncio.create_task(self.other_sender(f)) for f in self.scenario.foreign),
        ]
        await self.done.wait()
        tasks = [t for p in self.processes for t in p.tasks] + helpers
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return self.result()

    def rate_from(self, start: float, span: float) -> float:
        """Our accepted sends in [start, start + span) as a fraction of the quota's rate."""
        s = self.scenario
        count = sum(1 for t in self.accepted_at if start <= t < start + span)
        return count / span * 60.0 / (s.per_minute or s.per_hour)

    def longest_stall(self) -> float:
        """Longest stretch without one of our sends accepted, from the first accepted send to the last.

        A clump that fills the window leaves ACS refusing everything until it slides out; this is how
        long that lasted at worst (the critical lane waits that long too).
        """
        return round(max((b - a for a, b in itertools.pairwise(sorted(self.accepted_at))), default=0.0), 1)

    def recovery(self) -> dict[str, Any]:
        """How the replicas came back after the other sender stopped.

        ``quota_free_s``: seconds from the end of the other sender's burst until its last accepted send
        left the minute window (the whole quota is ours again). ``recovered_s``: seconds from then
        until a whole bin of our sends ran at 90 % of the quota (0: it never dropped below).
        ``allowance_s``: seconds from the burst's end until the running gates together allowed 90 %
        of the quota (sampled every ``sample_every`` s).
        """
        s = self.scenario
        end = max(f.at + f.seconds for f in s.foreign)
        free = max([end, *(t + 60.0 for t in self.foreign_accepted)])
        recovered = None
        t = free
        while t + s.bin <= self.last_accept:
            if self.rate_from(t, s.bin) >= 0.9:
                recovered = round(t - free, 1)
                break
            t += 1.0
        allowance = next(
            (round(at - end, 1) for at, row in self.shares if at >= end and sum(row) >= 0.9 - 1e-9), None
        )
        return {
            "foreign_accepted": len(self.foreign_accepted),
            "quota_free_s": round(free - end, 1),
            "recovered_s": recovered,
            "allowance_s": allowance,
        }

    def result(self) -> dict[str, Any]:
        s, procs = self.scenario, self.processes
        attempts = sum(p.accepted + p.throttled for p in procs)
        throttled = sum(p.throttled for p in procs)
        ideal = _ideal_drain(s)
        drain = self.last_accept - self.spike_started
        accepted = [p.accepted for p in procs]
        utilisation = round(ideal / drain, 4) if drain > 0 else None
        out: dict[str, Any] = {
            "scenario": s.name,
            "per_minute": s.per_minute,
            "per_hour": s.per_hour,
            "workers": s.workers,
            "changes": [list(c) for c in s.changes],
            "backlog": s.backlog,
            "latency_ms": [round(1000 * x) for x in s.latency],
            "drain_s": round(drain, 1),
            "ideal_drain_s": round(ideal, 1),
            "utilisation": utilisation,
            "attempts": attempts,
            "throttled": throttled,
            "throttled_share": round(throttled / attempts, 4) if attempts else 0.0,
            "episodes": sum(p.gate.throttle_episodes for p in procs),
            "longest_stall_s": self.longest_stall(),
            "accepted_per_process": accepted,
            "jain_fairness": round(sum(accepted) ** 2 / (len(accepted) * sum(a * a for a in accepted)), 3),
            "rate_per_bin": [
                round(self.rate_from(t, s.bin), 2)
                for t in (self.spike_started + i * s.bin for i in range(math.ceil(drain / s.bin)))
            ],
            "shares": [[round(t), [round(x, 3) for x in row]] for t, row in self.shares],
            "tuning": s.tuning,
        }
        if s.roster:
            out["roster_heartbeat_s"] = s.roster
        if s.kills:
            out["kills"] = [[k.at, k.replaced_after] for k in s.kills]
        if s.foreign:
            out["foreign"] = [[f.at, f.seconds, f.rate] for f in s.foreign]
            out |= self.recovery()
        return out


def simulate(scenario: Scenario, gate_type: type[AimdGate] = AimdGate) -> dict[str, Any]:
    """Run one scenario on a fresh virtual-clock loop and return its figures.

    ``gate_type`` lets an experiment try a variant of the gate (a subclass) in the same scenarios.
    """
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(_simulate(scenario, gate_type))


async def _simulate(scenario: Scenario, gate_type: type[AimdGate]) -> dict[str, Any]:
    return await _Run(scenario, gate_type).run()
