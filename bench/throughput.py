"""Sends per second and CPU per message of one worker process, beside a quickstart-style consumer.

Both emulators run embedded in this process with an unlimited ACS quota and 100 ms of emulated ACS
latency per send. Then, side by side in the same run:

- ``postbus``: one real ``postbus worker`` process drains N queued events;
- ``naive``: a consumer written the way the ACS and Service Bus quickstarts do it (receive one,
  ``begin_send(...).result()``, complete), in its own process, for M events.

CPU is the consumer process's own user+system time between its first and last accepted email,
divided by the emails in between; RSS is the worker's resident memory when the last email arrived.
The machine's load average is printed beside the numbers. Prints one JSON object.

    .venv/bin/python bench/throughput.py [--events 3000] [--naive-events 20] [--concurrency 256]

Comparisons (``--variant``, ``--concurrencies``, ``--rounds``) run one worker per variant and
concurrency, interleaved round by round so that a busy machine weighs on every variant alike, and
print each run plus the median per variant and concurrency. A variant is ``LABEL=REF`` plus
optional ``,NAME=VALUE`` environment entries; ``REF`` is a git revision whose code the worker runs
(``.`` is this tree), for example the SDK's socket timeout against ours, or the code before a change::

    .venv/bin/python bench/throughput.py --naive-events 0 --rounds 3 --concurrencies 16,64,256 \
        --variant sdk=.,POSTBUS_SERVICEBUS_SOCKET_TIMEOUT=0.2 --variant ours=.
    .venv/bin/python bench/throughput.py --naive-events 0 --rounds 3 --variant before=main --variant after=.

Targets: >= 300 sends/s per process, <= 1.3 ms CPU per message at concurrency 256, >= 20x the naive
consumer (docs/performance.md has the measurements).

The worker is latency-bound, not CPU-bound, here. Most of a message's time used to be the SDK
noticing its settlement's confirmation only when its own 0.2 s connection read timed out; with
``POSTBUS_SERVICEBUS_SOCKET_TIMEOUT`` at 0.02 s a worker at concurrency 16 sends about three times
as much (~40/s -> ~130/s), and sends/s still grows with ``--concurrency``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.harness import SENDERS, worker_env
from postbus.logs import configure_logging
from postbus.producers.publisher import Publisher
from postbus.producers.simulate import checkout_spike
from postbus.settings import load_settings

LATENCY_MS = 100


def naive_consumer(servicebus: str, endpoint: str, key: str, count: int) -> None:
    """The quickstart shape: one message at a time, wait for the send's final status, complete."""
    from azure.communication.email import EmailClient
    from azure.core.credentials import AzureKeyCredential
    from azure.servicebus import ServiceBusClient

    from postbus.bus import delivery_from
    from postbus.worker.mailer import build_payload
    from postbus.worker.rendering import TemplateRenderer

    renderer = TemplateRenderer()
    email = EmailClient(endpoint, AzureKeyCredential(key))
    done = 0
    with (
        ServiceBusClient.from_connection_string(servicebus) as client,
        client.get_queue_receiver("notifications") as r,
    ):
        while done < count:
            for message in r.receive_messages(max_message_count=1, max_wait_time=5):
                event = delivery_from(message).decode().event
                rendered = renderer.render(
                    event.type, locale=event.locale, data=event.data, tenant=event.tenant
                )
                payload = build_payload(
                    event,
                    subject=rendered.subject,
                    html=rendered.html,
                    text=rendered.text,
                    sender=SENDERS[event.sender],
                )
                email.begin_send(payload).result()
                r.complete_message(message)
                done += 1
    email.close()


def _spawn(
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    log: Any = subprocess.DEVNULL,
    cwd: str | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=cwd)


def _warnings(log_path: Path) -> list[str]:
    """The worker's warning and error lines (a run that stalls says why here)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if '"level": "warning"' in line or '"level": "error"' in line][-5:]


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _measure(
    acs: EmailEmulator, proc: subprocess.Popen[bytes], total: int, limit: float
) -> dict[str, Any]:
    """Sample the consumer's CPU at its first and last accepted email."""
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + limit
    with contextlib.suppress(TimeoutError):
        await acs.mailbox.wait_for(count=1, timeout=limit)
    cpu0, t0, n0 = _cpu(ps), time.monotonic(), len(acs.mailbox)
    with contextlib.suppress(TimeoutError):
        await acs.mailbox.wait_for(count=total, timeout=max(0.0, deadline - time.monotonic()))
    cpu1, t1, n1 = _cpu(ps), time.monotonic(), len(acs.mailbox)
    rss = ps.memory_info().rss
    sent = max(1, n1 - n0)
    return {
        "emails": n1,
        "sends_per_second": round(sent / max(t1 - t0, 1e-6), 2),
        "cpu_ms_per_message": round((cpu1 - cpu0) * 1000 / sent, 3),
        "rss_mb": round(rss / 2**20, 1),
    }


@contextlib.asynccontextmanager
async def _backlog(events: int, *, seed: int) -> AsyncIterator[tuple[ServiceBusEmulator, EmailEmulator]]:
    """Both emulators, ACS answering after LATENCY_MS, and ``events`` checkout events queued."""
    async with ServiceBusEmulator() as sb, EmailEmulator() as acs:
        acs.faults.latency_ms = LATENCY_MS
        settings = load_settings(servicebus_connection_string=sb.connection_string)
        spike = [item.event for item in checkout_spike(events, seed=seed, start=datetime.now(UTC))]
        async with Publisher.from_settings(settings) as publisher:
            await publisher.publish_many(spike)
        yield sb, acs


@dataclass(frozen=True)
class Variant:
    """A worker to measure: the code of ``ref`` (``.`` = this tree) with ``env`` added."""

    label: str
    ref: str = "."
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``LABEL=REF[,NAME=VALUE...]``."""
        head, *pairs = text.split(",")
        label, _, ref = head.partition("=")
        env = dict(pair.split("=", 1) for pair in pairs)
        return cls(label, ref or ".", env)


def _checkout(ref: str, into: Path) -> str | None:
    """The code of ``ref`` unpacked under ``into``, for the worker's PYTHONPATH (``None`` for this tree)."""
    if ref == ".":
        return None
    target = into / ref.replace("/", "_")
    if not target.exists():
        target.mkdir(parents=True)
        root = Path(__file__).resolve().parent.parent
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", ref], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="tar")
    return str(target)


async def _run_postbus(
    events: int, concurrency: int, variant: Variant | None = None, pythonpath: str | None = None
) -> dict[str, Any]:
    async with _backlog(events, seed=5) as (sb, acs):
        env = worker_env(sb, acs, quota=0, concurrency=concurrency, prefetch=str(concurrency * 2))
        if variant is not None:
            env.update(variant.env)
        if pythonpath is not None:
            # ``-m`` puts the working directory first on sys.path: run from the checkout, or this
            # tree's ``postbus/`` would be imported instead of the revision's.
            env["PYTHONPATH"] = pythonpath
        with tempfile.NamedTemporaryFile(prefix="postbus-bench-worker-", suffix=".log") as log:
            proc = _spawn([sys.executable, "-m", "postbus.cli", "worker"], env, log=log, cwd=pythonpath)
            try:
                result = await _measure(acs, proc, events, limit=120)
            finally:
                proc.terminate()
                await asyncio.to_thread(proc.wait)
            if warnings := _warnings(Path(log.name)):
                result["worker_warnings"] = warnings
    return {"concurrency": concurrency, **result}


async def _run_naive(events: int) -> dict[str, Any]:
    async with _backlog(events, seed=6) as (sb, acs):
        proc = _spawn(
            [
                sys.executable,
                __file__,
                "--naive-child",
                sb.connection_string,
                acs.endpoint,
                acs.access_key,
                str(events),
            ]
        )
        try:
            result = await _measure(acs, proc, events, limit=300)
        finally:
            await asyncio.to_thread(proc.wait)
    return result


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def _compare(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant at every concurrency, ``rounds`` times, interleaved; medians per variant."""
    variants = [Variant.parse(text) for text in args.variant] or [Variant("current")]
    concurrencies = (
        [int(c) for c in args.concurrencies.split(",")] if args.concurrencies else [args.concurrency]
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="postbus-bench-") as tmp:
        paths = {variant.label: _checkout(variant.ref, Path(tmp)) for variant in variants}
        for round_no in range(args.rounds):
            for concurrency in concurrencies:
                # Enough messages for several seconds of steady sending at each concurrency.
                events = min(args.events, max(400, concurrency * 16))
                order = variants if round_no % 2 == 0 else variants[::-1]
                for variant in order:
                    load = _load()
                    result = await _run_postbus(events, concurrency, variant, paths[variant.label])
                    runs.append({"variant": variant.label, "round": round_no, "load_average": load, **result})
                    print(json.dumps(runs[-1]), file=sys.stderr)
    medians = []
    for concurrency in concurrencies:
        for variant in variants:
            mine = [r for r in runs if r["variant"] == variant.label and r["concurrency"] == concurrency]
            medians.append(
                {
                    "variant": variant.label,
                    "ref": variant.ref,
                    "env": variant.env,
                    "concurrency": concurrency,
                    **{
                        key: round(statistics.median(r[key] for r in mine), 3)
                        for key in ("sends_per_second", "cpu_ms_per_message", "rss_mb")
                    },
                }
            )
    return {"runs": runs, "medians": medians}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--naive-events", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--concurrencies", default="", help="comma-separated, for comparisons")
    parser.add_argument("--variant", action="append", default=[], help="LABEL=REF[,NAME=VALUE...]")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    report: dict[str, Any] = {
        "benchmark": "throughput",
        "acs_latency_ms": LATENCY_MS,
        "load_average": _load(),
    }
    if args.variant or args.concurrencies or args.rounds > 1:
        report |= await _compare(args)
    else:
        report["postbus"] = await _run_postbus(args.events, args.concurrency)
    if args.naive_events > 0:
        naive = await _run_naive(args.naive_events)
        report["naive"] = naive
        if "postbus" in report:
            speedup = report["postbus"]["sends_per_second"] / max(naive["sends_per_second"], 1e-9)
            report["speedup"] = round(speedup, 1)
    report["load_average_after"] = _load()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--naive-child":
        naive_consumer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        # A SIGTERM unwinds like Ctrl-C, so the worker process is stopped too instead of living on
        # against a later run's emulators (a port can be reused) and taking its messages.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        asyncio.run(main())
