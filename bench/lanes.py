"""Priority lanes under a spike: do critical events stay fast while the shared quota stays full?

Runs the real worker loop (``postbus.worker.runner.Worker``: one receive loop per lane, the lane
scheduler, the AIMD send gate, the pipeline and settlement) for 1, 2 and 4 worker processes on an
asyncio event loop with a *virtual* clock (``postbus.worker.throttle_sim.VirtualClockLoop``: timers fire at
once, so ten minutes of traffic take seconds and runs repeat exactly for a seed). The queues are
three in-memory brokers shared by the workers (peek-lock semantics), and ACS is a simulated
server: a sliding per-minute window shared by every worker (``postbus.worker.throttle_sim.SlidingQuota``,
the ACS emulator's semantics: 429 with ``Retry-After``) behind a uniformly random latency.
Templates are not rendered (a fixed email), which changes nothing the scheduler sees.

Traffic: normal and bulk events arrive at ``spike`` x the quota (half each) for ``spike_seconds``,
while critical events arrive at a steady trickle from the first second until the backlog has
drained. Each worker count runs twice: *cold* (the spike hits idle workers whose gates have never
seen a 429) and *warm* (three minutes at 0.9x the quota first, so the gates have learnt their
shares). Reported as JSON per run: publish-to-accepted latency per lane (p50/p95/p99/max,
seconds, over the whole run), quota utilisation from the spike's start to the last send, bulk's
share of normal+bulk sends while both lanes had a backlog (the weight says 1/5), 429s, and lost
and duplicate sends::

    .venv/bin/python bench/lanes.py                         # 1, 2, 4 workers, cold and warm, 600/min
    .venv/bin/python bench/lanes.py --workers 4 --warmup-seconds 0 --per-minute 1200 --json

The workers share one replica roster (``postbus.worker.roster.MemoryRoster`` on the virtual clock,
so joins, heartbeats and leaves run exactly as in a deployment), and each gate is told the live
count: until its first 429 it sends at 1/W of the quota. ``--no-roster`` runs the gates untold, as
a deployment with ``POSTBUS_ROSTER_ENABLED=false`` does: then a cold start with two or more workers
misses the critical goal, because every gate starts at the full quota, W workers fill the empty
minute window in 60/W seconds, and ACS accepts nothing at all, critical or not, until that clump
leaves the window (``Retry-After`` about 60 - 60/W s). docs/throttling.md discusses it::

    .venv/bin/python bench/lanes.py --no-roster             # the same runs without the roster
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from postbus.attachments import MemoryAttachmentStore
from postbus.bus import InMemoryBroker
from postbus.events import encode, parse_event
from postbus.lanes import LANES, Lane
from postbus.records import MemoryRecordStore
from postbus.settings import Settings, load_settings
from postbus.worker.errors import ThrottledError
from postbus.worker.mailer import OperationStatus, SendResult, operation_id_for
from postbus.worker.rendering import RenderedEmail
from postbus.worker.roster import LIVE_HEARTBEATS, MemoryRoster
from postbus.worker.runner import Worker
from postbus.worker.throttle import AimdGate
from postbus.worker.throttle_sim import SlidingQuota, VirtualClockLoop

#: Virtual time 0. Settlement schedules delayed retries at wall-clock instants, so the simulated
#: clock starts at the real one and, running faster, reaches every such instant soon.
EPOCH = datetime.now(UTC)
TENANTS = ("contoso", "fabrikam", "northwind", "tailspin")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One spike: quota, workers, traffic shape and the normal:bulk weights."""

    workers: int
    per_minute: int = 600
    spike: float = 10.0
    spike_seconds: float = 60.0
    critical_per_second: float = 0.5
    warmup_seconds: float = 0.0
    warmup_load: float = 0.9
    weights: tuple[int, int] = (4, 1)
    concurrency: int = 16
    latency: tuple[float, float] = (0.02, 0.2)
    seed: int = 1
    roster: bool = True


class _Renderer:
    """Every event renders to the same small email: rendering costs nothing the scheduler sees."""

    def render(
        self, event_type: str, *, locale: str, data: Mapping[str, Any], tenant: str = ""
    ) -> RenderedEmail:
        return RenderedEmail(subject=f"{event_type}", html="<p>hello</p>", text="hello")


class _Acs:
    """A simulated ACS shared by every worker: one sliding quota, random latency, records each acceptance."""

    def __init__(
        self, quota: SlidingQuota, loop: asyncio.AbstractEventLoop, rng: random.Random, scenario: Scenario
    ):
        self._quota = quota
        self._loop = loop
        self._rng = rng
        self._latency = scenario.latency
        self.accepted: dict[str, float] = {}  # operation id -> virtual time
        self.accepted_order: list[str] = []
        self.duplicates = 0
        self.throttled = 0

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        low, high = self._latency
        latency = self._rng.uniform(low, high)
        await asyncio.sleep(latency / 2)  # the server stamps the request half way
        retry_after = self._quota.try_acquire()
        await asyncio.sleep(latency / 2)
        if retry_after is not None:
            self.throttled += 1
            raise ThrottledError("429 Too Many Requests", retry_after=float(retry_after))
        if operation_id in self.accepted:
            self.duplicates += 1
            return SendResult.DUPLICATE
        self.accepted[operation_id] = self._loop.time()
        self.accepted_order.append(operation_id)
        return SendResult.ACCEPTED

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        return OperationStatus.SUCCEEDED if operation_id in self.accepted else None

    async def close(self) -> None:
        return None


def _settings(scenario: Scenario) -> Settings:
    return load_settings(
        None,
        senders={"orders": "orders@shop.example.com"},
        quota_per_minute=scenario.per_minute,
        quota_per_hour=0,
        health_port=0,
        concurrency=scenario.concurrency,
        lanes=True,
        lane_normal_weight=scenario.weights[0],
        lane_bulk_weight=scenario.weights[1],
        shutdown_grace_seconds=30,
        roster_enabled=scenario.roster,
    )


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "count": len(values),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 3),
    }


async def _run(scenario: Scenario) -> dict[str, Any]:  # noqa: C901 - one run reads best top to bottom
    loop = asyncio.get_running_loop()
    rng = random.Random(scenario.seed)
    settings = _settings(scenario)
    now = lambda: EPOCH + timedelta(seconds=loop.time())  # noqa: E731
    brokers = {lane: InMemoryBroker(f"notifications-{lane.value}", now=now) for lane in LANES}
    acs = _Acs(SlidingQuota(scenario.per_minute, 0, loop.time), loop, rng, scenario)
    published: dict[str, tuple[Lane, float]] = {}  # operation id -> (lane, publish time)
    both_backlogged: Counter[Lane] = Counter()

    def publish(lane: Lane, number: int) -> None:
        event_id = f"{lane.value}-{number}"
        event = parse_event(
            {
                "id": event_id,
                "type": "order.confirmation",
                "tenant": TENANTS[number % len(TENANTS)],
                "to": ["jane@example.com"],
                "sender": "orders",
            }
        )
        brokers[lane].send(encode(event, first_enqueued=now()))
        published[operation_id_for(event_id, namespace=settings.operation_namespace, generation=0)] = (
            lane,
            loop.time(),
        )

    stop = asyncio.Event()
    # In memory, as the brokers are: the virtual clock allows no real I/O (threads, files, sockets).
    records = MemoryRecordStore()
    # One roster for every worker, as they would share one store; None: each gate starts untold.
    roster = (
        MemoryRoster(clock=loop.time, expiry=LIVE_HEARTBEATS * settings.roster_heartbeat)
        if scenario.roster
        else None
    )
    workers = [
        Worker(
            settings,
            sources=brokers,
            mailer=acs,
            renderer=_Renderer(),
            gate=AimdGate(per_minute=scenario.per_minute, per_hour=0, clock=loop.time, sleep=asyncio.sleep),
            records=records,
            attachments=MemoryAttachmentStore(),
            roster=roster,
        )
        for _ in range(scenario.workers)
    ]
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]

    async def spike() -> None:
        number = 0
        phases = ((scenario.warmup_load, scenario.warmup_seconds), (scenario.spike, scenario.spike_seconds))
        for load, seconds in phases:
            if load <= 0 or seconds <= 0:
                continue
            rate = load * scenario.per_minute / 60.0
            if load == scenario.spike:
                spike_started.append(loop.time())
            for _ in range(round(rate * seconds)):
                publish(Lane.NORMAL if number % 2 == 0 else Lane.BULK, number)
                number += 1
                await asyncio.sleep(1.0 / rate)

    async def trickle() -> None:
        number = 0
        while not spike_done.is_set() or any(brokers[lane].active for lane in (Lane.NORMAL, Lane.BULK)):
            publish(Lane.CRITICAL, number)
            number += 1
            await asyncio.sleep(1.0 / scenario.critical_per_second)

    async def watch_backlog() -> None:
        # Which sends happened while normal and bulk both had messages waiting on their queues.
        seen = 0
        while not stop.is_set():
            await asyncio.sleep(0.5)
            both = bool(brokers[Lane.NORMAL].active) and bool(brokers[Lane.BULK].active)
            for operation_id in acs.accepted_order[seen:]:
                if both:
                    both_backlogged[published[operation_id][0]] += 1
            seen = len(acs.accepted_order)

    spike_done = asyncio.Event()
    spike_started: list[float] = []
    watcher = asyncio.create_task(watch_backlog())
    # The critical trickle runs from the first second to the end of the drain, alongside the spike.
    trickling = asyncio.create_task(trickle())
    await spike()
    spike_done.set()
    await trickling

    def drained() -> bool:
        return len(acs.accepted) >= len(published) and all(
            b.idle and not b.scheduled for b in brokers.values()
        )

    async with asyncio.timeout(24 * 3600):
        while not drained():  # noqa: ASYNC110 - virtual time: a poll costs nothing here
            await asyncio.sleep(1.0)
    stop.set()
    summaries = await asyncio.gather(*tasks)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)

    latency: dict[Lane, list[float]] = defaultdict(list)
    for operation_id, accepted_at in acs.accepted.items():
        lane, published_at = published[operation_id]
        latency[lane].append(accepted_at - published_at)
    # Utilisation is measured from the spike's start (the warm-up runs below the quota on purpose).
    first = spike_started[0] if spike_started else min(at for _, at in published.values())
    last = max(acs.accepted.values())
    spike_sends = sum(1 for at in acs.accepted.values() if at >= first)
    normal_bulk = both_backlogged[Lane.NORMAL] + both_backlogged[Lane.BULK]
    weight_share = scenario.weights[1] / sum(scenario.weights)
    bulk_share = both_backlogged[Lane.BULK] / normal_bulk if normal_bulk else None
    critical_p99 = _percentiles(latency[Lane.CRITICAL])["p99"]
    totals: Counter[str] = Counter()
    for summary in summaries:
        totals.update(summary)
    return {
        "scenario": f"w{scenario.workers}-q{scenario.per_minute}-spike{scenario.spike:g}x{scenario.spike_seconds:g}s"
        + (f"-warm{scenario.warmup_seconds:g}s" if scenario.warmup_seconds else "-cold")
        + ("" if scenario.roster else "-no-roster"),
        "workers": scenario.workers,
        "per_minute": scenario.per_minute,
        "published": {
            lane.value: sum(1 for lane_, _ in published.values() if lane_ is lane) for lane in LANES
        },
        "latency_s": {lane.value: _percentiles(latency[lane]) for lane in LANES},
        "utilisation": round(spike_sends / ((last - first) * scenario.per_minute / 60.0), 4),
        "drain_s": round(last - first, 1),
        "bulk_share_while_both_backlogged": None if bulk_share is None else round(bulk_share, 4),
        "bulk_weight_share": round(weight_share, 4),
        "bulk_share_error": None
        if bulk_share is None
        else round(abs(bulk_share - weight_share) / weight_share, 4),
        "sends_while_both_backlogged": normal_bulk,
        "throttled_429": acs.throttled,
        "lost": len(set(published) - set(acs.accepted)),
        "duplicates": acs.duplicates,
        "retries_scheduled": totals["retry_scheduled"],
        "abandoned_on_shutdown": totals["abandoned_on_shutdown"],
        "goals": {
            "critical_p99_under_10s": critical_p99 is not None and critical_p99 < 10,
            "utilisation_at_least_0.97": spike_sends / ((last - first) * scenario.per_minute / 60.0) >= 0.97,
            "bulk_share_within_20pct": bulk_share is not None
            and abs(bulk_share - weight_share) <= 0.2 * weight_share,
            "nothing_lost_or_duplicated": not (set(published) - set(acs.accepted)) and acs.duplicates == 0,
        },
    }


def simulate(scenario: Scenario) -> dict[str, Any]:
    """Run one scenario on its own virtual-clock loop; returns its JSON-ready result."""
    loop = VirtualClockLoop()
    started = time.perf_counter()
    try:
        result = loop.run_until_complete(_run(scenario))
    finally:
        loop.close()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, action="append", help="worker processes (repeatable; default 1, 2, 4)"
    )
    parser.add_argument("--per-minute", type=int, default=600)
    parser.add_argument("--spike", type=float, default=10.0, help="normal+bulk arrival rate, times the quota")
    parser.add_argument("--spike-seconds", type=float, default=60.0)
    parser.add_argument("--critical-per-second", type=float, default=0.5)
    parser.add_argument("--weights", default="4:1", help="normal:bulk")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        action="append",
        help="traffic at 0.9x the quota before the spike, so the gates have learnt their shares "
        "(repeatable; default 0 = a cold start, and 180)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-roster",
        action="store_true",
        help="gates not told the replica count (POSTBUS_ROSTER_ENABLED=false)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON list instead of one object per line")
    args = parser.parse_args()
    # Every message writes its line and the gate logs each throttle episode; the figures are the output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    normal, bulk = (int(part) for part in args.weights.split(":"))
    results = []
    for workers, warmup in itertools.product(args.workers or [1, 2, 4], args.warmup_seconds or [0.0, 180.0]):
        scenario = Scenario(
            workers=workers,
            warmup_seconds=warmup,
            per_minute=args.per_minute,
            spike=args.spike,
            spike_seconds=args.spike_seconds,
            critical_per_second=args.critical_per_second,
            weights=(normal, bulk),
            seed=args.seed,
            roster=not args.no_roster,
        )
        result = simulate(scenario)
        results.append(result)
        if not args.json:
            print(json.dumps(result), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
