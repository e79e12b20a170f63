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
    .venv/bin/python bench/spike.py --other-sender before        # another app filled the window just before

Targets: utilisation >= 0.98 for every W, 429s <= 1% of attempts, zero lost, zero duplicates; with a
worker killed and replaced mid-spike, utilisation >= 0.97. A killed worker's messages come back when
their locks expire. The workers share the replica roster in the checkout's record file (the default
``POSTBUS_RECORD_URL``), so each gate starts at 1/W of the quota; a replacement counts the killed
worker too until it ages out (three heartbeats), starts at 1/(W + 1) and finds its share from its
first 429 episode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
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


OTHER_MESSAGE = {
    "senderAddress": "marketing@contoso.test",
    "recipients": {"to": [{"address": "list@contoso.test"}]},
    "content": {"subject": "Newsletter", "plainText": "Another application on the same subscription."},
}


async def _other_sender(acs: EmailEmulator, *, rate: float, seconds: float, refused: list[int]) -> None:
    """Another application on the subscription: ``rate`` sends/s for ``seconds``, through the real SDK.

    It does not retry: a 429 is its loss, as for an application that knows nothing of ours. Each
    429 it gets is appended to ``refused`` (so that ours can be told from its).
    """
    from azure.communication.email.aio import EmailClient
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import HttpResponseError

    async def one(client: EmailClient) -> None:
        try:
            await client.begin_send(OTHER_MESSAGE, polling=False)
        except HttpResponseError as exc:
            if exc.status_code != 429:
                raise
            refused.append(1)

    async with EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key), retry_total=0) as client:
        start = time.monotonic()
        sends = []
        for n in range(round(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            sends.append(asyncio.create_task(one(client)))
        await asyncio.gather(*sends)


def _recovery(ours: list[datetime], others: list[datetime], quota: int, after: datetime) -> dict[str, Any]:
    """Seconds from the moment the other sender's sends have left the window until ours run at 90 %."""
    if not others:
        return {"other_accepted": 0}
    free = max(max(others) + timedelta(seconds=60), after)
    stamps = sorted((t - free).total_seconds() for t in ours)
    needed = 0.9 * quota / 6  # sends in 10 s at 90 % of the quota
    recovered = next(
        (t for t in range(600) if sum(1 for x in stamps if t <= x < t + 10) >= needed),
        None,
    )
    return {
        "other_accepted": len(others),
        "quota_free_after_its_last_send_s": round((free - max(others)).total_seconds(), 1),
        "recovered_s": recovered,
    }


def ours(mails: list[Any]) -> list[Any]:
    """The mails our workers sent (the other sender's carry no event id)."""
    return [m for m in mails if EVENT_ID_HEADER in m.headers]


async def _delayed(seconds: float, coro: Any) -> None:
    await asyncio.sleep(seconds)
    await coro


async def run_once(
    *,
    burst: int,
    quota: int,
    workers: int,
    seed: int,
    logs: Path,
    kill_at: float | None = None,
    replace_after: float = 10.0,
    other: str | None = None,
) -> dict[str, Any]:
    """One spike with ``workers`` processes; returns its figures.

    ``kill_at``: one worker is killed that many seconds into the drain and replaced. ``other``:
    another application sends on the same quota, ``"before"`` (a window's worth in 3 s, the spike
    published 10 s later, while its sends still fill the window) or ``"during"`` (half the quota for
    30 s, 30 s into the drain).
    """
    events = [item.event for item in checkout_spike(burst, seed=seed, start=datetime.now(UTC))]
    async with (
        ServiceBusEmulator() as sb,
        EmailEmulator(quota=QuotaConfig(sends_per_minute=quota)) as acs,
    ):
        env = worker_env(sb, acs, quota=quota, concurrency=16)
        procs, handles = start_workers(workers, env, logs)
        background: list[asyncio.Task[None]] = []
        refused: list[int] = []  # the other sender's 429s
        try:
            # let every worker connect before the burst, so start-up is not counted as drain time
            await asyncio.sleep(3)
            if other == "before":
                await _other_sender(acs, rate=quota / 3, seconds=3.0, refused=refused)
                await asyncio.sleep(10)
            settings = load_settings(servicebus_connection_string=sb.connection_string)
            async with Publisher.from_settings(settings) as publisher:
                t0 = time.monotonic()
                await publisher.publish_many(events)
            published = datetime.now(UTC)
            if other == "during":
                later = _delayed(30.0, _other_sender(acs, rate=quota / 120, seconds=30.0, refused=refused))
                background.append(asyncio.create_task(later))
            if kill_at is not None:
                (logs / "replacement").mkdir()
                chaos = _kill_and_replace(procs, handles, env, logs, at=kill_at, after=replace_after)
                background.append(asyncio.create_task(chaos))
            deadline = t0 + burst / quota * 60 * 3 + 60
            while len(ours(acs.mailbox.messages())) < burst and time.monotonic() < deadline:  # noqa: ASYNC110 - the emulator thread offers no notification
                await asyncio.sleep(0.5)
            everything = acs.mailbox.messages()
            mails = ours(everything)
            others = [m.received_at for m in everything if EVENT_ID_HEADER not in m.headers]
            first = min((m.received_at for m in mails), default=None)
            last = max((m.received_at for m in mails), default=None)
            stats = acs.stats()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
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
    # Ours only: the emulator counts the other sender's requests too.
    accepted = int(stats.get("accepted", 0) or 0) - len(others)
    throttled = int(stats.get("throttled", 0) or 0) - len(refused)
    return {
        "workers": workers,
        "other_sender": other,
        **(_recovery([m.received_at for m in mails], others, quota, published) if other else {}),
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
    parser.add_argument(
        "--other-sender",
        choices=["before", "during"],
        help="another application on the quota: a window's worth just before the spike, or half of it during",
    )
    parser.add_argument(
        "--keep-logs",
        type=Path,
        metavar="DIR",
        help="keep the workers' JSON logs in DIR (w<N>/worker-<i>.log)",
    )
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    runs = []
    with contextlib.ExitStack() as stack:
        tmp = args.keep_logs or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="postbus-spike-"))
        )
        for count in args.workers:
            logs = tmp / f"w{count}"
            logs.mkdir(parents=True)
            runs.append(
                await run_once(
                    burst=args.burst,
                    quota=args.quota,
                    workers=count,
                    seed=args.seed,
                    logs=logs,
                    kill_at=args.kill_at,
                    replace_after=args.replace_after,
                    other=args.other_sender,
                )
            )
    print(json.dumps({"benchmark": "spike", "runs": runs}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
