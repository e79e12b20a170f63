"""Start-up rules tried against the stall of W replicas starting together (docs/throttling.md).

Each candidate is a subclass of the real :class:`AimdGate` run in the same virtual-time simulation as
``bench/gate_simulation.py``: the default matrix's five-minute drains at W = 1, 2, 4 (utilisation and
429 share) and the cold-start matrix's ten-minute drains at W = 2, 4, 8 (longest stall). None of them
was in the worker when it was written, and this script is the record of why; ``told-set_replicas``
is the rule the worker now has (the real gate told W through :meth:`AimdGate.set_replicas`, as the
replica roster tells it). It gave the same figures as ``told-1/W-no-growth`` until the gate gained
its fair-share ceiling; now its stalls are the same and its 429s fewer (docs/throttling.md)::

    .venv/bin/python bench/gate_coldstart.py                     # every candidate at 1,200/min (25 s)
    .venv/bin/python bench/gate_coldstart.py --per-minute 600 --only told
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import structlog

from postbus.worker.throttle import AimdGate
from postbus.worker.throttle_sim import Scenario, simulate


def slow_start(initial: float, doubling: float) -> type[AimdGate]:
    """Start at ``initial`` and double every ``doubling`` seconds until the first 429."""

    class SlowStart(AimdGate):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(initial_share=initial, **kwargs)
            self._started = self._clock()

        def _regrown(self, now: float) -> float:
            if self.throttle_episodes:
                return super()._regrown(now)
            return min(1.0, initial * 2.0 ** ((now - self._started) / doubling))

    return SlowStart


def jittered(seconds: float) -> type[AimdGate]:
    """Hold the first send back by a uniformly random 0-``seconds`` s (seeded: the runs repeat)."""
    rng = random.Random(5)

    class Jittered(AimdGate):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._paused_until = self._clock() + rng.uniform(0.0, seconds)

    return Jittered


def told(workers: int, *, grow: bool) -> type[AimdGate]:
    """Told the replica count: start at 1/W; with ``grow`` False, no growth until the first 429."""

    class Told(AimdGate):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(initial_share=1.0 / workers, **kwargs)

        def on_accepted(self) -> None:
            share = self._share
            super().on_accepted()
            if not grow and not self.throttle_episodes:
                self._share = share

        def _regrown(self, now: float) -> float:
            if not grow and not self.throttle_episodes:
                return self._share
            return super()._regrown(now)

    return Told


def told_by_roster(workers: int) -> type[AimdGate]:
    """The real gate, told the replica count at start as the worker's roster tells it."""

    class ToldByRoster(AimdGate):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.set_replicas(workers)

    return ToldByRoster


def initial(share: float) -> Callable[[int], type[AimdGate]]:
    class Initial(AimdGate):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(initial_share=share, **kwargs)

    return lambda _workers: Initial


CANDIDATES: dict[str, Callable[[int], type[AimdGate]]] = {
    "now": lambda _w: AimdGate,
    "initial-1/2": initial(0.5),
    "initial-1/4": initial(0.25),
    "initial-1/8": initial(0.125),
    "initial-1/16": initial(0.0625),
    "slow-1/2-2s": lambda _w: slow_start(0.5, 2.0),
    "slow-1/4-3s": lambda _w: slow_start(0.25, 3.0),
    "slow-1/8-3s": lambda _w: slow_start(0.125, 3.0),
    "slow-1/8-6s": lambda _w: slow_start(0.125, 6.0),
    "slow-1/8-12s": lambda _w: slow_start(0.125, 12.0),
    "jitter-10s": lambda _w: jittered(10.0),
    "jitter-30s": lambda _w: jittered(30.0),
    "jitter-60s": lambda _w: jittered(60.0),
    "told-1/W": lambda w: told(w, grow=True),
    "told-1/W-no-growth": lambda w: told(w, grow=False),
    "told-set_replicas": told_by_roster,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-minute", type=int, default=1200)
    parser.add_argument("--only", help="candidates whose name contains this")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    q = args.per_minute
    for name, make in CANDIDATES.items():
        if args.only and args.only not in name:
            continue
        row: dict[str, Any] = {"candidate": name, "per_minute": q}
        for w in (1, 2, 4):
            r = simulate(Scenario(f"q{q}-w{w}", q, 60 * q, w, 5 * q), make(w))
            row[f"w{w}"] = {"utilisation": r["utilisation"], "throttled_share": r["throttled_share"]}
        for w in (2, 4, 8):
            r = simulate(Scenario(f"q{q}-w{w}-cold", q, 60 * q, w, 10 * q), make(w))
            row[f"cold_w{w}"] = {"longest_stall_s": r["longest_stall_s"], "utilisation": r["utilisation"]}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
