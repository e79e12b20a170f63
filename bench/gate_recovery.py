"""How long one replica's send gate takes to climb back after a single 429 taken at low traffic.

Another application briefly used the quota, and this replica, sending a handful of emails a minute,
got a 429. What it sent in that window was its demand, not its allowance, so the gate must not learn
it as its share: a spike that arrives right after must find the gate open. (Before the gate weighed
its measurement by how long it had been bound, this took 361 s to reach 10 % of a 600/min quota and
half an hour at 30/min.)

Runs the real :class:`worker.throttle.AimdGate` on a virtual clock: ``before`` evenly spaced sends in
the minute before the 429, then one 429 (Retry-After 1 s), then a message always waiting. Prints one
JSON object with, per scenario, the seconds and sends until the share reaches 10 %, 50 % and 100 %
(``null``: not within ``--horizon`` seconds).

    .venv/bin/python bench/gate_recovery.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

import structlog

from postbus.worker.throttle import AimdGate

LEVELS = (0.1, 0.5, 1.0)


async def _recovery(per_minute: int, before: int, horizon: float) -> dict[str, Any]:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    gate = AimdGate(per_minute=per_minute, per_hour=0, clock=lambda: now[0], sleep=sleep)
    for _ in range(before):
        await gate.acquire()
        gate.on_accepted()
        now[0] += 60.0 / before
    await gate.acquire()
    gate.on_throttled(1.0)
    throttled_at, share_after = now[0], gate.share
    reached: dict[str, Any] = {f"{level:.0%}": None for level in LEVELS}
    sends = 0
    while now[0] - throttled_at < horizon and None in reached.values():
        await gate.acquire()
        gate.on_accepted()
        sends += 1
        for level in LEVELS:
            key = f"{level:.0%}"
            if reached[key] is None and gate.share >= level - 1e-9:
                reached[key] = {"seconds": round(now[0] - throttled_at, 1), "sends": sends}
    return {
        "per_minute": per_minute,
        "sends_in_minute_before": before,
        "share_after_429": round(share_after, 4),
        "reached": reached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--horizon", type=float, default=3600.0, help="virtual seconds to follow")
    args = parser.parse_args()
    # The gate logs each 429 episode; only the JSON goes to stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    scenarios = [(600, 3), (600, 60), (30, 3), (1500, 3)]
    results = [asyncio.run(_recovery(q, before, args.horizon)) for q, before in scenarios]
    print(json.dumps({"benchmark": "gate_recovery", "horizon_seconds": args.horizon, "scenarios": results}))


if __name__ == "__main__":
    main()
