"""How many spans a short-lived process keeps under the Azure Monitor distro's default sampler.

The distro samples with its rate-limited sampler (5 traces/s). At its start the sampler counts the time
since it was created, so a burst right after start-up keeps only a few spans, however large. This drives
the distro's own sampler class the way a CLI does: create it (configure telemetry), wait ``--delay``
seconds (imports, settings, connecting), then start ``--spans`` root spans back to back (one publish
span per event), and counts the kept ones over ``--runs`` runs. Prints one JSON object.

    .venv/bin/python bench/cli_sampling.py [--delay 0.3] [--spans 100] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from azure.monitor.opentelemetry.exporter.export.trace._rate_limited_sampling import RateLimitedSampler
from opentelemetry.sdk.trace.sampling import Decision

DISTRO_DEFAULT_TRACES_PER_SECOND = 5.0


def kept_in_one_run(delay: float, spans: int, rng: random.Random) -> int:
    sampler = RateLimitedSampler(DISTRO_DEFAULT_TRACES_PER_SECOND)
    time.sleep(delay)
    kept = 0
    for _ in range(spans):
        result = sampler.should_sample(None, rng.getrandbits(128), "notifications publish")
        kept += result.decision is Decision.RECORD_AND_SAMPLE
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--delay", type=float, default=0.3, help="seconds from configuring telemetry to the burst"
    )
    parser.add_argument("--spans", type=int, default=100, help="spans in the burst")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(20)
    kept = [kept_in_one_run(args.delay, args.spans, rng) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "sampler": f"RateLimitedSampler({DISTRO_DEFAULT_TRACES_PER_SECOND})",
                "delay_seconds": args.delay,
                "spans": args.spans,
                "runs": args.runs,
                "kept_mean": round(statistics.fmean(kept), 2),
                "kept_min": min(kept),
                "kept_max": max(kept),
                # The k-th span of a burst t seconds after start-up is kept with probability about min(1, 5 t / k).
                "expected": round(sum(min(1.0, 5 * args.delay / k) for k in range(1, args.spans + 1)), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
