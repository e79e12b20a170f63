"""Sends per second and CPU per message of one worker process, beside a quickstart-style consumer.

Both emulators run embedded in this process with an unlimited ACS quota and 100 ms of emulated ACS
latency per send. Then, side by side in the same run:

- ``postbus``: one real ``postbus worker`` process drains N queued events;
- ``naive``: a consumer written the way the ACS and Service Bus quickstarts do it (receive one,
  ``begin_send(...).result()``, complete), in its own process, for M events.

CPU is the consumer process's own user+system time between its first and last accepted email,
divided by the emails in between. Prints one JSON object.

    .venv/bin/python bench/throughput.py [--events 3000] [--naive-events 20] [--concurrency 256]

Targets (issue 6): >= 300 sends/s per process, <= 2 ms CPU per message, >= 20x the naive consumer.

The worker is latency-bound, not CPU-bound, here: against the emulators a message spends about half
a second in the Service Bus receive and settle round trips on top of the 100 ms send, so sends/s
grows with ``--concurrency`` (64: ~150/s, 128: ~240/s, 256: ~390/s) while CPU per message stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
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


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    sent = max(1, n1 - n0)
    return {
        "emails": n1,
        "sends_per_second": round(sent / max(t1 - t0, 1e-6), 2),
        "cpu_ms_per_message": round((cpu1 - cpu0) * 1000 / sent, 3),
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


async def _run_postbus(events: int, concurrency: int) -> dict[str, Any]:
    async with _backlog(events, seed=5) as (sb, acs):
        env = worker_env(sb, acs, quota=0, concurrency=concurrency, prefetch=str(concurrency * 2))
        proc = _spawn([sys.executable, "-m", "postbus.cli", "worker"], env)
        try:
            result = await _measure(acs, proc, events, limit=300)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait)
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


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--naive-events", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    postbus = await _run_postbus(args.events, args.concurrency)
    naive = await _run_naive(args.naive_events)
    print(
        json.dumps(
            {
                "benchmark": "throughput",
                "acs_latency_ms": LATENCY_MS,
                "postbus": postbus,
                "naive": naive,
                "speedup": round(postbus["sends_per_second"] / max(naive["sends_per_second"], 1e-9), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--naive-child":
        naive_consumer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        asyncio.run(main())
