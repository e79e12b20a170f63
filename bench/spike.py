"""The holiday spike: a burst of B events against an ACS quota Q shared by W worker processes.

For each W, both emulators start embedded in this process, W real ``postbus worker`` processes
share the queue and the ACS emulator's sliding-window quota, and the burst is published at once.
Prints one JSON object: per W the drain time against the ideal B/Q, quota utilisation (achieved
send rate / Q), 429s as a share of send attempts, and lost and duplicate counts.

ACS limits a sliding window: any 60 s may hold Q sends, so a burst can take a whole window's
quota at once and the first minute says little. Utilisation is therefore measured on the steady
state after the first window (sends accepted from first + 60 s to the last, per second, over
Q/60); the burst should be at least twice Q for that segment to exist.

    .venv/bin/python bench/spike.py [--burst 2400] [--quota 1200] [--workers 1 2 4]
    .venv/bin/python bench/spike.py --workers 2 4 --kill-at 45   # one worker SIGKILLed, replaced 10 s later

Targets: utilisation >= 0.98 for every W, 429s <= 1% of attempts, zero lost, zero duplicates; with a
worker killed and replaced mid-spike, utilisation >= 0.97. A killed worker's messages come back when
their locks expire, and its replacement starts at share 1 and finds its share from one 429 episode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postbus.demo import start_workers, stop_workers, worker_env
from postbus.emulators.acs_email import EmailEmulator, QuotaConfig
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.logs import configure_logging
from postbus.producers.publisher import Publisher
from postbus.producers.simulate import checkout_spike
from postbus.settings import load_settings

EVENT_ID_HEADER = "X-Postbus-Event-Id"


async def _kill_and_replace(
    procs: list[subprocess.Popen[bytes]],
    handles: list[Any],
    env: dict[str, str],
    logs: Path,
    *,
    at: float,
    after: float,
) -> None:
    """SIGKILL the newest worker ``at`` s into the drain; start a replacement ``after`` s later."""
    await asyncio.sleep(at)
    procs[-1].kill()
    await asyncio.sleep(after)
    new_procs, new_handles = start_workers(1, env, logs / "replacement")
    procs.extend(new_procs)
    handles.extend(new_handles)


async def run_once(
    *,
    burst: int,
    quota: int,
    workers: int,
    seed: int,
    logs: Path,
    kill_at: float | None = None,
    replace_after: float = 10.0,
) -> dict[str, Any]:
    """One spike with ``workers`` processes (one killed and replaced if ``kill_at``); returns its figures."""
    events = [item.event for item in checkout_spike(burst, seed=seed, start=datetime.now(UTC))]
    async with (
        ServiceBusEmulator() as sb,
        EmailEmulator(quota=QuotaConfig(sends_per_minute=quota)) as acs,
    ):
        env = worker_env(sb, acs, quota=quota, concurrency=16)
        procs, handles = start_workers(workers, env, logs)
        chaos: asyncio.Task[None] | None = None
        try:
            # let every worker connect before the burst, so start-up is not counted as drain time
            await asyncio.sleep(3)
            settings = load_settings(servicebus_connection_string=sb.connection_string)
            async with Publisher.from_settings(settings) as publisher:
                t0 = time.monotonic()
                await publisher.publish_many(events)
            if kill_at is not None:
                (logs / "replacement").mkdir()
                chaos = asyncio.create_task(
                    _kill_and_replace(procs, handles, env, logs, at=kill_at, after=replace_after)
                )
            deadline = t0 + burst / quota * 60 * 3 + 60
            while len(acs.mailbox) < burst and time.monotonic() < deadline:  # noqa: ASYNC110 - the emulator thread offers no notification
                await asyncio.sleep(0.1)
            mails = acs.mailbox.messages()
            first = min((m.received_at for m in mails), default=None)
            last = max((m.received_at for m in mails), default=None)
            stats = acs.stats()
        finally:
            if chaos is not None:
                chaos.cancel()
                await asyncio.gather(chaos, return_exceptions=True)
            await asyncio.to_thread(stop_workers, procs, handles)
    ids = Counter(m.headers.get(EVENT_ID_HEADER, "") for m in mails)
    drain = (last - first).total_seconds() if first and last else float("inf")
    timeline: list[int] = []
    if first:
        for mail in mails:
            slot = int((mail.received_at - first).total_seconds() // 10)
            timeline.extend([0] * (slot + 1 - len(timeline)))
            timeline[slot] += 1
    steady: float | None = None
    if first and last and drain > 70:
        later = [m.received_at for m in mails if (m.received_at - first).total_seconds() >= 60]
        span = (last - min(later)).total_seconds() if later else 0.0
        steady = round((len(later) - 1) / span / (quota / 60), 4) if span > 0 else None
    # The window spans burst-1 intervals between the first and the last acceptance.
    ideal = (burst - 1) / quota * 60
    accepted = int(stats.get("accepted", 0) or 0)
    throttled = int(stats.get("throttled", 0) or 0)
    return {
        "workers": workers,
        "killed_at_seconds": kill_at,
        "replaced_after_seconds": replace_after if kill_at is not None else None,
        "burst": burst,
        "quota_per_minute": quota,
        "drain_seconds": round(drain, 2),
        "ideal_drain_seconds": round(ideal, 2),
        "drain_vs_ideal": round(ideal / drain, 4) if drain else None,
        "utilisation": steady,
        "send_attempts": accepted + throttled,
        "throttled": throttled,
        "throttled_share": round(throttled / max(1, accepted + throttled), 4),
        "lost": sum(1 for e in events if ids.get(e.id, 0) == 0),
        "duplicates": sum(count - 1 for count in ids.values() if count > 1),
        "accepted_per_10s": timeline,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=2400)
    parser.add_argument("--quota", type=int, default=1200, help="ACS sends per minute")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--kill-at", type=float, help="SIGKILL one worker this many seconds into the drain")
    parser.add_argument(
        "--replace-after", type=float, default=10.0, help="seconds until its replacement starts"
    )
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    runs = []
    with tempfile.TemporaryDirectory(prefix="postbus-spike-") as tmp:
        for count in args.workers:
            logs = Path(tmp) / f"w{count}"
            logs.mkdir()
            runs.append(
                await run_once(
                    burst=args.burst,
                    quota=args.quota,
                    workers=count,
                    seed=args.seed,
                    logs=logs,
                    kill_at=args.kill_at,
                    replace_after=args.replace_after,
                )
            )
    print(json.dumps({"benchmark": "spike", "runs": runs}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
