"""Benchmark the ACS Email emulator: accepted sends/s and server-side latency at a paced rate.

The emulator runs as a separate process (``python -m emulators.acs_email``, the same code as
``postbus emulator email``) so client and server do not share a GIL. Clients are raw aiohttp
POSTs signed per request with HMAC-SHA256 exactly as the SDK signs (the SDK's own pipeline costs
far more client CPU than the server spends, so it would measure the client). Prints one JSON object.

    .venv/bin/python bench/acs_email_emulator.py [--duration 10] [--rate 500] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp

from postbus.emulators.acs_email.auth import sign_headers

KEY = "ZW11bGF0b3ItdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="
TARGET = "/emails:send?api-version=2025-09-01"
BODY = json.dumps(
    {
        "senderAddress": "DoNotReply@contoso.test",
        "recipients": {"to": [{"address": "ann@contoso.test", "displayName": "Ann"}]},
        "content": {
            "subject": "Order 42 confirmed",
            "plainText": "Thanks for your order.",
            "html": "<p>Thanks</p>",
        },
    }
).encode()


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


async def _send(session: aiohttp.ClientSession, endpoint: str, host: str) -> int:
    headers = sign_headers(access_key=KEY, method="POST", target=TARGET, host=host, body=BODY)
    headers["Content-Type"] = "application/json"
    async with session.post(endpoint + TARGET, data=BODY, headers=headers) as resp:
        await resp.read()
        return resp.status


async def _throughput(endpoint: str, host: str, *, concurrency: int, duration: float) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    deadline = 0.0

    async def client() -> None:
        # One session (connection) per concurrent client, as 64 independent senders would have.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            while time.perf_counter() < deadline:
                status = await _send(session, endpoint, host)
                statuses[status] = statuses.get(status, 0) + 1

    deadline = time.perf_counter() + 1.0  # warm-up: connections, caches
    await asyncio.gather(*(client() for _ in range(concurrency)))
    statuses.clear()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "duration_s": round(elapsed, 2),
        "accepted": statuses.get(202, 0),
        "other_statuses": {str(k): v for k, v in statuses.items() if k != 202},
        "accepted_per_s": round(statuses.get(202, 0) / elapsed, 1),
    }


async def _paced(endpoint: str, host: str, *, rate: float, duration: float) -> dict[str, Any]:
    client_latency: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        await session.delete(f"{endpoint}/_emulator/stats")

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            status = await _send(session, endpoint, host)
            client_latency.append(time.perf_counter() - t0)
            if status != 202:
                errors += 1

        total = int(rate * duration)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - start)
        async with session.get(f"{endpoint}/_emulator/stats") as resp:
            server = (await resp.json())["latency"]["send"]
    return {
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(achieved, 1),
        "requests": total,
        "non_202": errors,
        "server_p50_ms": server["p50_ms"],
        "server_p99_ms": server["p99_ms"],
        "server_max_ms": server["max_ms"],
        "client_p50_ms": round(_percentile(client_latency, 50) * 1000, 3),
        "client_p99_ms": round(_percentile(client_latency, 99) * 1000, 3),
        "client_mean_ms": round(statistics.fmean(client_latency) * 1000, 3) if client_latency else 0.0,
    }


async def _run(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    host = endpoint.removeprefix("http://")
    throughput = await _throughput(endpoint, host, concurrency=args.concurrency, duration=args.duration)
    paced = await _paced(endpoint, host, rate=args.rate, duration=args.duration)
    return {
        "benchmark": "acs_email_emulator",
        "client": "raw aiohttp POST /emails:send, HMAC-SHA256 signed per request like the SDK",
        "server": "emulator CLI subprocess, quota unlimited, no latency, no mailbox dir",
        "server_latency": "handler time recorded by the emulator (/_emulator/stats), excludes HTTP parsing",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "throughput": throughput,
        "paced": paced,
        "targets": {
            "accepted_per_s_min": 1000,
            "p99_ms_max_at_500_per_s": 25,
            "met": throughput["accepted_per_s"] >= 1000 and paced["server_p99_ms"] < 25,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=500.0, help="paced requests per second")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "postbus.emulators.acs_email",
        "--port",
        "0",
        "--access-key",
        KEY,
        "--quota",
        "unlimited",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        if not endpoint.startswith("http://"):
            raise RuntimeError(f"emulator did not start: {endpoint!r}")
        result = asyncio.run(_run(endpoint, args))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
