"""Delivery reports consumed per second by one worker's report consumer. Prints one JSON object.

The Service Bus emulator's ``email-events`` queue is filled with ``--reports`` Event Grid delivery
reports (through the real azure-servicebus SDK, in batches), each for an operation that already has
the worker's ``sent`` record; then one :class:`~postbus.worker.reports.ReportConsumer` with
``--concurrency`` handlers drains the queue into a fresh SQLite record file, as it runs inside
``postbus worker``. Per report: a receive, a parse, a record read and a read-merge-write, a
completion. Everything shares the machine's cores with the emulator, so this is the pipeline's
cost on one machine, not Service Bus's or Azure Table Storage's.

    .venv/bin/python bench/reports.py [--reports 2000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from postbus.bus import ServiceBusConnection, ServiceBusSource
from postbus.emulators.acs_email.reports import delivery_event
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.logs import configure_logging
from postbus.records import Outcome, sent
from postbus.records.sqlite import SqliteRecordStore
from postbus.settings import load_settings
from postbus.telemetry import configure_telemetry
from postbus.worker.reports import ReportConsumer


async def _fill(sb: ServiceBusEmulator, ops: list[str]) -> None:
    client = ServiceBusClient.from_connection_string(sb.connection_string)
    async with client, client.get_queue_sender("email-events") as sender:
        for start in range(0, len(ops), 100):
            batch = await sender.create_message_batch()
            for op in ops[start : start + 100]:
                event = delivery_event(
                    operation_id=op,
                    sender="care@clinic.example.org",
                    recipient="pat@example.com",
                    status="Delivered",
                    at=datetime.now(UTC),
                )
                batch.add_message(ServiceBusMessage(json.dumps(event), content_type="application/json"))
            await sender.send_messages(batch)


async def run(reports: int, concurrency: int) -> dict[str, Any]:
    ops = [str(uuid.uuid4()) for _ in range(reports)]
    with tempfile.TemporaryDirectory(prefix="postbus-bench-") as folder:
        async with ServiceBusEmulator() as sb, SqliteRecordStore(Path(folder) / "records.db") as store:
            enqueued = datetime.now(UTC) - timedelta(seconds=5)
            for n, op in enumerate(ops):
                await store.write(
                    sent(
                        operation_id=op,
                        event_id=f"bench-{n}",
                        generation=0,
                        tenant="clinic",
                        type="appointment.reminder",
                        recipient_domains=["example.com"],
                        first_enqueued=enqueued,
                        attempts=1,
                        accepted_at=enqueued + timedelta(seconds=1),
                    )
                )
            await _fill(sb, ops)
            settings = load_settings(None, servicebus_connection_string=sb.connection_string)
            telemetry = configure_telemetry(settings)
            source = ServiceBusSource(
                ServiceBusConnection.from_settings(settings, purpose="the benchmark"), "email-events"
            )
            consumer = ReportConsumer(source, store, telemetry=telemetry, concurrency=concurrency, grace=10)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(consumer.run(stop))
            await sb.wait_for("email-events", lambda counts: counts.total == 0, timeout=600)
            elapsed = time.perf_counter() - started
            stop.set()
            await task
            await source.close()
            records = [await store.get(op) for op in ops]
            delivered = sum(1 for r in records if r is not None and r.outcome is Outcome.DELIVERED)
    return {
        "benchmark": "report_consumer",
        "reports": reports,
        "concurrency": concurrency,
        "store": "sqlite",
        "seconds": round(elapsed, 3),
        "reports_per_second": round(reports / elapsed, 1),
        "recorded": consumer.counts["recorded"],
        "records_delivered": delivered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    configure_logging(level="warning", stream=sys.stderr)  # stdout carries only the JSON
    print(json.dumps(asyncio.run(run(args.reports, args.concurrency))))


if __name__ == "__main__":
    main()
