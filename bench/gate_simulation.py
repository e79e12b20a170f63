"""Deterministic simulation of W worker processes' send gates sharing one sliding-window ACS quota.

Runs the real :class:`worker.throttle.AimdGate` in virtual time (``postbus.worker.throttle_sim``):
an hour of traffic takes seconds and every run with the same seed gives the same numbers.

Prints one JSON object per scenario (``--json`` prints a single JSON list)::

    .venv/bin/python bench/gate_simulation.py                   # the tuning matrix of docs/throttling.md
    .venv/bin/python bench/gate_simulation.py --matrix robust   # seeds, W = 8, slow ACS, scaling
    .venv/bin/python bench/gate_simulation.py --matrix recovery # another sender's burst, a killed replica
    .venv/bin/python bench/gate_simulation.py --matrix scale    # W = 8, 16, 64 scaling out and in
    .venv/bin/python bench/gate_simulation.py --matrix coldstart  # W = 1-8 starting together, B = 10 Q
    .venv/bin/python bench/gate_simulation.py --per-minute 600 --workers 4 --minutes 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

import structlog

from postbus.worker.throttle_sim import Foreign, Kill, Scenario, simulate


def _recovery(t: dict[str, float]) -> list[Scenario]:
    """Another application's burst at low and at high demand, and a replica killed and replaced."""
    out = []
    for q in (600, 30):
        burst = Foreign(at=100.0, seconds=3.0, rate=q / 3.0)  # a window's worth in 3 s, 20 x our rate
        for w in (1, 2, 4):
            # Low demand (5 % of the quota) when the other sender fills the window, a spike 10 s later.
            out.append(
                Scenario(
                    f"q{q}-w{w}-foreign-low",
                    q,
                    60 * q,
                    w,
                    5 * q,
                    trickle_per_minute=q / 20,
                    spike_at=113.0,
                    foreign=(burst,),
                    sample_every=1.0,
                    tuning=t,
                )
            )
            # High demand: mid-spike, the other sender takes half the quota for a minute, then stops.
            out.append(
                Scenario(
                    f"q{q}-w{w}-foreign-high",
                    q,
                    60 * q,
                    w,
                    6 * q,
                    foreign=(Foreign(at=90.0, seconds=60.0, rate=q / 120.0),),
                    sample_every=1.0,
                    tuning=t,
                )
            )
    out += [
        Scenario(
            f"q1200-w{w}-kill", 1200, 72_000, w, 7200, kills=(Kill(at=120.0, replaced_after=15.0),), tuning=t
        )
        for w in (2, 4)
    ]
    return out


def _scale(t: dict[str, float]) -> list[Scenario]:
    """W = 8, 16, 64 at a quota that gives each replica a few sends per second; out and in mid-spike."""
    out = []
    for w, q in ((8, 6000), (16, 12_000), (64, 30_000)):
        half = w // 2
        out += [
            Scenario(f"q{q}-w{w}", q, 60 * q, w, 5 * q, tuning=t),
            Scenario(f"q{q}-out-{half}to{w}", q, 60 * q, half, 5 * q, changes=((90.0, w - half),), tuning=t),
            Scenario(f"q{q}-in-{w}to{half}", q, 60 * q, w, 5 * q, changes=((90.0, half - w),), tuning=t),
        ]
    return out


def _coldstart(t: dict[str, float]) -> list[Scenario]:
    """W replicas starting cold together under a ten-minute backlog (B = 10 Q)."""
    return [
        Scenario(f"q{q}-w{w}-cold", q, 60 * q, w, 10 * q, tuning=t)
        for q in (600, 1200, 6000)
        for w in (1, 2, 4, 8)
    ]


def matrix(kind: str = "default", tuning: dict[str, float] | None = None) -> list[Scenario]:
    """The scenarios behind docs/throttling.md.

    ``default``: five-minute drains at 600, 1,200 and 6,000/min for W = 1, 2, 4, the Azure default
    quota (30/min, 100/h), and replicas joining and leaving mid-spike. ``quick``: a smaller set.
    ``robust``: other seeds, W = 8, slow and heavy-tailed ACS latency, scaling 1 -> 4 -> 1, 120/min.
    ``recovery``: another sender's burst at low and high demand, a replica killed mid-spike.
    ``scale``: W = 8, 16, 64, steady and scaling out and in mid-spike.
    ``coldstart``: W = 1, 2, 4, 8 starting together under a ten-minute backlog at 600-6,000/min.
    """
    t = tuning or {}
    if kind == "quick":
        return [Scenario(f"q{q}-w{w}", q, 60 * q, w, q * 3, tuning=t) for q in (600, 1200) for w in (1, 2, 4)]
    if kind == "recovery":
        return _recovery(t)
    if kind == "scale":
        return _scale(t)
    if kind == "coldstart":
        return _coldstart(t)
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
    # Handlers that spend 0.3-1 s settling each message: about what the gate allows, as in the worker.
    out += [
        Scenario(f"q1200-w{w}-settle", 1200, 72_000, w, 6000, settle=(0.3, 1.0), tuning=t) for w in (2, 4)
    ]
    return [
        *out,
        Scenario("q1200-join-2to4", 1200, 72_000, 2, 7200, changes=((120, 2),), tuning=t),
        Scenario("q1200-leave-4to2", 1200, 72_000, 4, 7200, changes=((120, -2),), tuning=t),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--matrix",
        choices=["default", "quick", "robust", "recovery", "scale", "coldstart"],
        default="default",
    )
    parser.add_argument("--per-minute", type=int, help="one scenario with this per-minute quota")
    parser.add_argument("--per-hour", type=int, default=0, help="with --per-minute (default 60 x per-minute)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=5.0, help="backlog = per-minute x minutes")
    parser.add_argument("--tune", action="append", default=[], metavar="KEY=VALUE", help="AimdGate tuning")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of one object per line")
    parser.add_argument("--brief", action="store_true", help="leave out the share samples")
    parser.add_argument(
        "--roster",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="tell the gates the replica count through a roster with this heartbeat (the worker's default is 2)",
    )
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
    if args.roster:
        scenarios = [dataclasses.replace(s, roster=args.roster) for s in scenarios]
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
