"""Benchmark the Service Bus emulator with the async azure-servicebus SDK; prints one JSON object.

Measures: start-up time (construct -> accepting connections, in-process, and the CLI process until it
prints its connection string), batched send throughput and receive+complete throughput with prefetch
for 20,000 1 KB messages, and the emulator's resident memory with 100,000 1 KB messages queued (the
emulator runs in a subprocess via the CLI so RSS is its own).

    .venv/bin/python bench/servicebus_emulator.py [--messages 20000] [--queued 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.logs import configure_logging

QUEUE = "notifications"  # the packaged Config.json (duplicate detection on, as in production)
BODY = b"x" * 1024


def _startup_in_process(rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        emulator = ServiceBusEmulator()
        emulator.start()
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=1):
            elapsed = time.perf_counter() - started
        emulator.stop()
        best = min(best, elapsed)
    return best


def _start_cli() -> tuple[subprocess.Popen[str], str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "postbus.emulators.servicebus", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    conn_str = proc.stdout.readline().strip()
    elapsed = time.perf_counter() - started
    if not conn_str.startswith("Endpoint="):
        proc.kill()
        raise SystemExit(f"emulator did not start: {conn_str!r}")
    return proc, conn_str, elapsed


async def _send(client: ServiceBusClient, count: int, senders: int = 1) -> float:
    async def one(n: int, offset: int) -> None:
        async with client.get_queue_sender(QUEUE) as sender:
            batch = await sender.create_message_batch()
            for i in range(n):
                message = ServiceBusMessage(BODY, message_id=f"m-{offset + i}")
                try:
                    batch.add_message(message)
                except ValueError:  # MessageSizeExceededError derives from ValueError too
                    await sender.send_messages(batch)
                    batch = await sender.create_message_batch()
                    batch.add_message(message)
            if len(batch):
                await sender.send_messages(batch)

    started = time.perf_counter()
    share = count // senders
    await asyncio.gather(*(one(share, k * share + _send.offset) for k in range(senders)))  # type: ignore[attr-defined]
    _send.offset += count  # type: ignore[attr-defined]
    return time.perf_counter() - started


_send.offset = 0  # type: ignore[attr-defined]


async def _receive_complete(client: ServiceBusClient, count: int, prefetch: int) -> float:
    started = time.perf_counter()
    done = 0
    async with client.get_queue_receiver(QUEUE, prefetch_count=prefetch) as receiver:
        while done < count:
            messages = await receiver.receive_messages(max_message_count=prefetch, max_wait_time=5)
            if not messages:
                raise SystemExit(f"receive stalled after {done} messages")
            for message in messages:
                await receiver.complete_message(message)
            done += len(messages)
    return time.perf_counter() - started


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "servicebus_emulator", "message_bytes": len(BODY)}
    result["startup_in_process_s"] = round(_startup_in_process(), 4)
    proc, conn_str, cli_startup = _start_cli()
    result["startup_cli_process_s"] = round(cli_startup, 3)
    try:
        emulator = psutil.Process(proc.pid)
        result["rss_idle_mb"] = round(emulator.memory_info().rss / 2**20, 1)
        async with ServiceBusClient.from_connection_string(conn_str) as client:
            elapsed = await _send(client, args.messages)
            result["send_msgs"] = args.messages
            result["send_msg_per_s"] = round(args.messages / elapsed)
            elapsed = await _receive_complete(client, args.messages, args.prefetch)
            result["receive_complete_msg_per_s"] = round(args.messages / elapsed)
            result["prefetch"] = args.prefetch
            elapsed = await _send(client, args.queued, senders=2)
            result["fill_msg_per_s_2_senders"] = round(args.queued / elapsed)
            result["queued"] = args.queued
            result["rss_queued_mb"] = round(emulator.memory_info().rss / 2**20, 1)
            # Receiving from a deep queue must not be slower than from a shallow one.
            elapsed = await _receive_complete(client, min(args.messages, args.queued), args.prefetch)
            result["receive_complete_deep_queue_msg_per_s"] = round(min(args.messages, args.queued) / elapsed)
    finally:
        proc.terminate()
        result["cli_exit_code"] = proc.wait(10)
    result["targets_met"] = {
        "startup_lt_1s": result["startup_in_process_s"] < 1.0,
        "send_ge_1500": result["send_msg_per_s"] >= 1500,
        "receive_complete_ge_1000": result["receive_complete_msg_per_s"] >= 1000,
        "rss_lt_200mb": result["rss_queued_mb"] < 200,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--prefetch", type=int, default=500)
    args = parser.parse_args()
    configure_logging(level="warning", stream=sys.stderr)  # stdout carries only the JSON result
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
