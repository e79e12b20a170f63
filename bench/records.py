"""Delivery-record writes and reads per second, for each store backend. Prints one JSON object.

Each record gets the two writes it gets in production: the worker's ``sent`` (an insert) and then
an ACS delivery report (a read-merge-replace of the existing record). Writes run ``--concurrency``
at a time, as the worker's handlers and the report consumer would issue them; reads are
``get(operation_id)`` at the same concurrency, then one ``summary`` over everything.

- ``sqlite``: a fresh file in a temporary folder (WAL, ``synchronous=FULL``);
- ``table``: Azure Table Storage through the real azure-data-tables SDK against Azurite (installed
  by ``make azurite``), started here on a free loopback port; Azurite keeps data in memory, so this
  measures the client, the protocol and the emulator, not Azure's service latency.

    .venv/bin/python bench/records.py [--records 2000] [--concurrency 16] [--backends sqlite,table]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the Azurite launcher the tests use

from postbus.records.record import DeliveryRecord, sent  # noqa: E402
from postbus.records.reports import DeliveryReport, DeliveryStatus  # noqa: E402
from postbus.records.sqlite import SqliteRecordStore  # noqa: E402
from postbus.records.store import RecordStore  # noqa: E402
from postbus.records.tables import TableRecordStore  # noqa: E402
from postbus.records.url import TableLocation, parse_record_url  # noqa: E402
from tests.azurite.server import KEY, Azurite, AzuriteMissing  # noqa: E402

NAMESPACE = UUID("6f0b7c8e-3f4a-5d2b-9c1e-2a7d4b8e9f10")


def writes(count: int) -> tuple[list[DeliveryRecord], list[DeliveryRecord]]:
    start = datetime.now(UTC)
    sends, reports = [], []
    for n in range(count):
        event_id = f"bench-{n}"
        operation_id = str(uuid5(NAMESPACE, event_id))
        at = start + timedelta(milliseconds=n)
        sends.append(
            sent(
                operation_id=operation_id,
                event_id=event_id,
                generation=0,
                tenant="shop",
                type="order.confirmation",
                recipient_domains=["contoso.com"],
                first_enqueued=at - timedelta(seconds=1),
                attempts=1,
                accepted_at=at,
                at=at,
            )
        )
        reports.append(
            DeliveryReport(
                report_id=f"eg-{n}",
                operation_id=operation_id,
                status=DeliveryStatus.DELIVERED,
                recipient_domain="contoso.com",
                attempted_at=at + timedelta(seconds=20),
                event_time=at + timedelta(seconds=20),
            ).as_write(at=at + timedelta(seconds=21))
        )
    return sends, reports


async def timed(calls: list[Callable[[], Awaitable[Any]]], concurrency: int) -> tuple[float, list[float]]:
    """Run ``calls`` ``concurrency`` at a time; wall seconds and each call's latency."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(one(call) for call in calls))
    return time.perf_counter() - began, latencies


def quantile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q * 100) - 1] * 1000, 2)


async def measure(store: RecordStore, count: int, concurrency: int) -> dict[str, Any]:
    sends, reports = writes(count)
    await store.open()

    def write_of(record: DeliveryRecord) -> Callable[[], Awaitable[Any]]:
        return lambda: store.write(record)

    def read_of(operation_id: str) -> Callable[[], Awaitable[Any]]:
        return lambda: store.get(operation_id)

    insert_s, insert_lat = await timed([write_of(w) for w in sends], concurrency)
    update_s, update_lat = await timed([write_of(w) for w in reports], concurrency)
    read_s, read_lat = await timed([read_of(w.operation_id) for w in sends], concurrency)
    began = time.perf_counter()
    summary = await store.summary(
        since=sends[0].created_at, until=reports[-1].created_at + timedelta(seconds=1)
    )
    summary_s = time.perf_counter() - began
    assert summary.total == count, summary.total
    assert summary.count() == summary.delivered_within_slo == count
    writes_lat = insert_lat + update_lat
    return {
        "writes_per_s": round(2 * count / (insert_s + update_s), 1),
        "inserts_per_s": round(count / insert_s, 1),
        "updates_per_s": round(count / update_s, 1),
        "write_p50_ms": quantile(writes_lat, 0.50),
        "write_p99_ms": quantile(writes_lat, 0.99),
        "reads_per_s": round(count / read_s, 1),
        "read_p50_ms": quantile(read_lat, 0.50),
        "read_p99_ms": quantile(read_lat, 0.99),
        "summary_s": round(summary_s, 3),
    }


async def bench_sqlite(count: int, concurrency: int, folder: Path) -> dict[str, Any]:
    store = SqliteRecordStore(folder / "records.db")
    try:
        return await measure(store, count, concurrency)
    finally:
        await store.close()


async def bench_table(count: int, concurrency: int, endpoint_url: str) -> dict[str, Any]:
    location = parse_record_url(endpoint_url)
    assert isinstance(location, TableLocation)
    store = TableRecordStore(location, account_key=KEY)
    try:
        return await measure(store, count, concurrency)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,table")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="postbus-records-bench-") as tmp:
        folder = Path(tmp)
        if "sqlite" in backends:
            results["sqlite"] = asyncio.run(bench_sqlite(args.records, args.concurrency, folder))
        if "table" in backends:
            try:
                azurite = Azurite(folder / "azurite")
                azurite.start()
            except AzuriteMissing as exc:
                sys.exit(f"bench/records.py: {exc}")
            with azurite:
                url = azurite.table_url(f"bench{uuid.uuid4().hex[:12]}")
                results["table"] = asyncio.run(bench_table(args.records, args.concurrency, url))
    print(
        json.dumps(
            {
                "bench": "records",
                "records": args.records,
                "concurrency": args.concurrency,
                "backends": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
