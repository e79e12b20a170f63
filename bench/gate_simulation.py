"""Deterministic simulation of W worker processes' send gates sharing one sliding-window ACS quota.

Runs the real :class:`worker.throttle.AimdGate` (acquire, pause, AIMD) on an asyncio event loop whose
clock is *virtual*: the selector advances time instead of blocking, so an hour of traffic takes
seconds and every run with the same seed gives the same numbers. The server side is a sliding-window
limiter with the ACS emulator's semantics (``emulators/acs_email/quota.py``: a request is admitted
when every window has a free slot, otherwise ``Retry-After`` is the whole seconds, at least 1, until
the entry that blocks it leaves the window); ``tests/unit/policies`` checks the two agree.

Each process runs ``concurrency`` coroutines that take an event from the shared backlog (the queue),
await a permit, and "send" with a uniformly random latency (the server stamps the request half way).
A 429 reports ``Retry-After`` to the gate and puts the event back in the backlog. Processes can join
or leave mid-run (KEDA scaling out and in).

Prints one JSON object per scenario (``--json`` prints a single JSON list)::

    .venv/bin/python bench/gate_simulation.py                 # the tuning matrix of docs/throttling.md
    .venv/bin/python bench/gate_simulation.py --matrix robust  # seeds, W = 8, slow ACS, scaling
    .venv/bin/python bench/gate_simulation.py --per-minute 600 --workers 4 --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import selectors
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from postbus.worker.throttle import AimdGate, AimdTuning

__all__ = ["Scenario", "SlidingQuota", "VirtualClockLoop", "run", "simulate"]


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

    O(1) per request (a deque per window) so that a 6,000/min quota simulates quickly; the emulator's
    limiter counts its whole log on every request, which is fine for a server but slow here.
    """

    def __init__(self, per_minute: int, per_hour: int, clock: Callable[[], float]) -> None:
        self._windows = [(60.0, lim, deque[float]()) for lim in (per_minute,) if lim] + [
            (3600.0, lim, deque[float]()) for lim in (per_hour,) if lim
        ]
        self._clock = clock

    def try_acquire(self) -> int | None:
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
class Scenario:
    """One simulated spike. ``changes`` are (time, +n or -n processes) applied mid-run."""

    name: str
    per_minute: int
    per_hour: int
    workers: int
    backlog: int
    concurrency: int = 16
    latency: tuple[float, float] = (0.005, 0.100)
    changes: tuple[tuple[float, int], ...] = ()  # (at seconds, +n/-n processes)
    seed: int = 1
    tuning: dict[str, float] = field(default_factory=dict)
    sample_every: float = 60.0


@dataclass
class _Process:
    gate: AimdGate
    tasks: list[asyncio.Task[None]]
    accepted: int = 0
    throttled: int = 0

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
    """One scenario in progress: the shared backlog and quota, and the worker processes."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.loop = asyncio.get_running_loop()
        self.rng = random.Random(scenario.seed)
        self.quota = SlidingQuota(scenario.per_minute, scenario.per_hour, self.loop.time)
        self.backlog: asyncio.Queue[int] = asyncio.Queue()
        for event in range(scenario.backlog):
            self.backlog.put_nowait(event)
        self.delivered = 0
        self.done = asyncio.Event()
        self.last_accept = 0.0
        self.processes: list[_Process] = []
        self.shares: list[tuple[float, list[float]]] = []

    async def sender(self, proc: _Process) -> None:
        while True:
            event = await self.backlog.get()
            try:
                await proc.gate.acquire()
                latency = self.rng.uniform(*self.scenario.latency)
                await asyncio.sleep(latency / 2)  # the server stamps the request half way
                retry_after = self.quota.try_acquire()
                await asyncio.sleep(latency / 2)
            except asyncio.CancelledError:
                self.backlog.put_nowait(event)  # a process that leaves abandons its message
                raise
            if retry_after is None:
                proc.gate.on_accepted()
                proc.accepted += 1
                self.delivered += 1
                self.last_accept = self.loop.time()
                if self.delivered == self.scenario.backlog:
                    self.done.set()
            else:
                proc.gate.on_throttled(retry_after)
                proc.throttled += 1
                self.backlog.put_nowait(event)

    def start_process(self) -> None:
        s = self.scenario
        gate = AimdGate(
            per_minute=s.per_minute, per_hour=s.per_hour, clock=self.loop.time, tuning=AimdTuning(**s.tuning)
        )
        proc = _Process(gate, [])
        proc.tasks = [asyncio.create_task(self.sender(proc)) for _ in range(s.concurrency)]
        self.processes.append(proc)

    async def scale(self) -> None:
        for at, delta in self.scenario.changes:
            await asyncio.sleep(max(0.0, at - self.loop.time()))
            for _ in range(delta):
                self.start_process()
            for _ in range(-delta):
                leaving = [p for p in self.processes if p.running][-1]
                for task in leaving.tasks:
                    task.cancel()

    async def sample(self) -> None:
        while True:
            self.shares.append(
                (self.loop.time(), [p.gate.share if p.running else 0.0 for p in self.processes])
            )
            await asyncio.sleep(self.scenario.sample_every)

    async def run(self) -> dict[str, Any]:
        for _ in range(self.scenario.workers):
            self.start_process()
        helpers = [asyncio.create_task(self.scale()), asyncio.create_task(self.sample())]
        await self.done.wait()
        tasks = [t for p in self.processes for t in p.tasks] + helpers
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return self.result()

    def result(self) -> dict[str, Any]:
        s, procs = self.scenario, self.processes
        attempts = sum(p.accepted + p.throttled for p in procs)
        throttled = sum(p.throttled for p in procs)
        ideal = _ideal_drain(s)
        accepted = [p.accepted for p in procs]
        return {
            "scenario": s.name,
            "per_minute": s.per_minute,
            "per_hour": s.per_hour,
            "workers": s.workers,
            "changes": [list(c) for c in s.changes],
            "backlog": s.backlog,
            "latency_ms": [round(1000 * x) for x in s.latency],
            "drain_s": round(self.last_accept, 1),
            "ideal_drain_s": round(ideal, 1),
            "utilisation": round(ideal / self.last_accept, 4) if self.last_accept else None,
            "attempts": attempts,
            "throttled": throttled,
            "throttled_share": round(throttled / attempts, 4) if attempts else 0.0,
            "episodes": sum(p.gate.throttle_episodes for p in procs),
            "accepted_per_process": accepted,
            "meets_targets": bool(
                self.last_accept and ideal / self.last_accept >= 0.95 and throttled <= 0.02 * attempts
            ),
            "jain_fairness": round(sum(accepted) ** 2 / (len(accepted) * sum(a * a for a in accepted)), 3),
            "shares": [[round(t), [round(x, 3) for x in row]] for t, row in self.shares],
            "tuning": s.tuning,
        }


def simulate(scenario: Scenario) -> dict[str, Any]:
    """Run one scenario on a fresh virtual-clock loop and return its figures."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(_run(scenario))


async def _run(scenario: Scenario) -> dict[str, Any]:
    return await _Run(scenario).run()


def matrix(kind: str = "default", tuning: dict[str, float] | None = None) -> list[Scenario]:
    """The scenarios behind docs/throttling.md.

    ``default``: five-minute drains at 600, 1,200 and 6,000/min for W = 1, 2, 4, the Azure default
    quota (30/min, 100/h), and replicas joining and leaving mid-spike. ``quick``: a smaller set.
    ``robust``: other seeds, W = 8, slow and heavy-tailed ACS latency, scaling 1 -> 4 -> 1, 120/min.
    """
    t = tuning or {}
    if kind == "quick":
        return [Scenario(f"q{q}-w{w}", q, 60 * q, w, q * 3, tuning=t) for q in (600, 1200) for w in (1, 2, 4)]
    if kind == "robust":
        out = [
            Scenario(f"q{q}-w8-seed{seed}", q, 60 * q, 8, 5 * q, seed=seed, tuning=t)
            for q in (600, 6000)
            for seed in (1, 2, 3)
        ]
        out += [
            Scenario(
                f"q{q}-w{w}-latency{lo}-{hi}s",
                q,
                60 * q,
                w,
                5 * q,
                latency=(lo, hi),
                concurrency=256,
                tuning=t,
            )
            for lo, hi in ((0.2, 0.5), (0.2, 2.0))
            for q in (600, 6000)
            for w in (1, 2, 4)
        ]
        return [
            *out,
            Scenario(
                "q1200-join-1to4", 1200, 72_000, 1, 7200, changes=((60, 1), (120, 1), (180, 1)), tuning=t
            ),
            Scenario("q1200-leave-4to1", 1200, 72_000, 4, 7200, changes=((90, -3),), tuning=t),
            Scenario("q120-w4", 120, 7200, 4, 600, tuning=t),
            Scenario("q600-w4-concurrency2", 600, 36_000, 4, 3000, concurrency=2, tuning=t),
        ]
    out = [
        Scenario(f"q{q}-w{w}", q, 60 * q, w, q * 5, tuning=t) for q in (600, 1200, 6000) for w in (1, 2, 4)
    ]
    out += [Scenario(f"azure-default-w{w}", 30, 100, w, 100, tuning=t) for w in (1, 2, 4)]
    out += [Scenario(f"azure-default-hours-w{w}", 30, 100, w, 250, tuning=t) for w in (1, 4)]
    return [
        *out,
        Scenario("q1200-join-2to4", 1200, 72_000, 2, 7200, changes=((120, 2),), tuning=t),
        Scenario("q1200-leave-4to2", 1200, 72_000, 4, 7200, changes=((120, -2),), tuning=t),
    ]


def run(scenarios: list[Scenario]) -> list[dict[str, Any]]:
    return [simulate(s) for s in scenarios]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", choices=["default", "quick", "robust"], default="default")
    parser.add_argument("--per-minute", type=int, help="one scenario with this per-minute quota")
    parser.add_argument("--per-hour", type=int, default=0, help="with --per-minute (default 60 x per-minute)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=5.0, help="backlog = per-minute x minutes")
    parser.add_argument("--tune", action="append", default=[], metavar="KEY=VALUE", help="AimdGate tuning")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of one object per line")
    parser.add_argument("--brief", action="store_true", help="leave out the share samples")
    args = parser.parse_args()
    # The gate logs every throttle episode; the figures are the output here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tuning = {k: float(v) for k, v in (item.split("=", 1) for item in args.tune)}
    if args.per_minute:
        per_hour = args.per_hour or 60 * args.per_minute
        scenarios = [
            Scenario(
                f"q{args.per_minute}-w{args.workers}",
                args.per_minute,
                per_hour,
                args.workers,
                round(args.per_minute * args.minutes),
                tuning=tuning,
            )
        ]
    else:
        scenarios = matrix(args.matrix, tuning)
    started = time.perf_counter()
    results = []
    for scenario in scenarios:
        result = simulate(scenario)
        if args.brief:
            result.pop("shares")
        results.append(result)
        if not args.json:
            print(json.dumps(result), flush=True)
    if args.json:
        print(json.dumps({"results": results, "wall_s": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
