"""Benchmark the ingest API against publishing directly with the SDK; prints one JSON object.

The API runs as a real `postbus api` process (uvicorn) in front of the Service Bus emulator; a load
generator in this process sends order confirmations over HTTP with httpx at a fixed concurrency,
one event per request and then batches. The baseline publishes the same events with the SDK
through `Publisher` (one per call, then `publish_many` batches of the same size). Reported per
mode: requests/s, events/s and request latency p50/p99 in milliseconds.

    .venv/bin/python bench/ingest.py [--singles 1000] [--batches 20] [--batch-size 100] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.producers.api import hash_key
from postbus.producers.publisher import Publisher
from postbus.settings import load_settings
from postbus.worker.rendering import TemplateRenderer

QUEUE = "notifications"
KEY = "pb_bench-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _events(prefix: str, count: int, data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i}",
            "type": "order.confirmation",
            "tenant": "shop",
            "to": [f"customer{i}@example.com"],
            "sender": "orders",
            "data": data,
        }
        for i in range(count)
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _drive(
    calls: list[Callable[[], Awaitable[None]]], concurrency: int, events_per_call: int
) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)

    async def worker() -> None:
        while not queue.empty():
            call = queue.get_nowait()
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(calls),
        "requests_per_s": round(len(calls) / elapsed, 1),
        "events_per_s": round(len(calls) * events_per_call / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(_percentile(latencies, 99), 2),
    }


async def _via_api(url: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, limits=limits, timeout=60) as http:

        def single(event: dict[str, Any]) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                response = await http.post("/v1/notifications", json=event)
                if response.status_code != 202:
                    raise SystemExit(f"API refused an event: {response.status_code} {response.text}")

            return call

        def batch(events: list[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                response = await http.post("/v1/notifications/batch", json={"events": events})
                if response.status_code != 200 or response.json()["rejected"]:
                    raise SystemExit(f"API refused a batch: {response.status_code} {response.text[:300]}")

            return call

        # Warm up: connections, the sender link, template compilation.
        await _drive([single(e) for e in _events("warm", args.concurrency, data)], args.concurrency, 1)
        singles = await _drive([single(e) for e in _events("api", args.singles, data)], args.concurrency, 1)
        events = _events("api-batch", args.batches * args.batch_size, data)
        chunks = [events[i : i + args.batch_size] for i in range(0, len(events), args.batch_size)]
        batches = await _drive(
            [batch(c) for c in chunks], min(args.concurrency, len(chunks)), args.batch_size
        )
    return {"single": singles, "batch": batches}


async def _via_sdk(connection_string: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings(None, servicebus_connection_string=connection_string, queue=QUEUE)
    async with Publisher.from_settings(settings) as publisher:

        def single(event: dict[str, Any]) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                await publisher.publish(event)

            return call

        def batch(events: list[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                await publisher.publish_many(events)

            return call

        await _drive([single(e) for e in _events("sdk-warm", args.concurrency, data)], args.concurrency, 1)
        singles = await _drive([single(e) for e in _events("sdk", args.singles, data)], args.concurrency, 1)
        events = _events("sdk-batch", args.batches * args.batch_size, data)
        chunks = [events[i : i + args.batch_size] for i in range(0, len(events), args.batch_size)]
        batches = await _drive(
            [batch(c) for c in chunks], min(args.concurrency, len(chunks)), args.batch_size
        )
    return {"single": singles, "batch": batches}


async def _wait_until_up(url: str, proc: asyncio.subprocess.Process, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SystemExit(f"postbus api exited with {proc.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("postbus api did not become ready")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    data = TemplateRenderer().sample_data("order.confirmation")
    clients = {
        "clients": [
            {
                "name": "bench",
                "api_keys": [hash_key(KEY)],
                "types": ["order.confirmation"],
                "senders": ["orders"],
                "tenants": ["shop"],
                "rate_limit": {"per_second": 1_000_000, "burst": 1_000_000},
            }
        ]
    }
    async with ServiceBusEmulator() as emulator:
        port = _free_port()
        with tempfile.TemporaryDirectory() as tmp:
            env = {name: value for name, value in os.environ.items() if not name.startswith("POSTBUS_")} | {
                "POSTBUS_ENV_FILE": "",
                "POSTBUS_SERVICEBUS_CONNECTION_STRING": emulator.connection_string,
                "POSTBUS_QUEUE": QUEUE,
                "POSTBUS_API_CLIENTS": json.dumps(clients),
                "POSTBUS_API_PORT": str(port),
                "POSTBUS_RECORD_URL": f"sqlite:///{Path(tmp) / 'records.db'}",
                "POSTBUS_API_RENDER_CHECK": "true" if args.render_check else "false",
                "POSTBUS_LOG_LEVEL": "warning",
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "postbus.cli",
                "api",
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                await _wait_until_up(url, proc)
                api = await _via_api(url, args, data)
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
        sdk = await _via_sdk(emulator.connection_string, args, data)
    return {
        "benchmark": "ingest",
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "render_check": args.render_check,
        "cpu_count": os.cpu_count(),
        "api": api,
        "sdk": sdk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--singles", type=int, default=1000, help="events sent one per request")
    parser.add_argument("--batches", type=int, default=20, help="batch requests")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument(
        "--no-render-check", dest="render_check", action="store_false", help="POSTBUS_API_RENDER_CHECK=false"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
