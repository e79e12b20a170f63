"""What one azure-servicebus link costs a test: opening it, closing it with and without keep-alive.

Against the local Service Bus emulator (which answers a frame within milliseconds), with the real
async SDK. The numbers behind the test-suite advice in ``tests/conftest.py``: an open is paced by
the SDK (it sleeps 50 ms between handshake frames), a close waits for the link's keep-alive task
unless ``keep_alive=0``, and a receiver without prefetch always has one. Prints one JSON object
of medians in seconds.

    .venv/bin/python bench/link_lifecycle.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from postbus.emulators.servicebus import ServiceBusEmulator

QUEUE = "notifications"


async def _timed(step: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def _round(client: ServiceBusClient, **options: Any) -> tuple[float, float]:
    """(open, close) seconds of one handler; ``kind`` picks sender or receiver."""
    kind = options.pop("kind")
    if kind == "sender":
        handler: Any = client.get_queue_sender(QUEUE, **options)
    else:
        handler = client.get_queue_receiver(QUEUE, **options)
    opened = await _timed(handler.__aenter__)
    if kind == "sender":
        await handler.send_messages(ServiceBusMessage("x"))
    else:
        await handler.receive_messages(max_message_count=1, max_wait_time=0.2)
    closed = await _timed(handler.close)
    return opened, closed


async def main(rounds: int) -> dict[str, Any]:
    cases: dict[str, dict[str, Any]] = {
        "sender": {"kind": "sender"},
        "sender_keep_alive_0": {"kind": "sender", "keep_alive": 0},
        "receiver_prefetch_0": {"kind": "receiver"},
        "receiver_prefetch_16_keep_alive_0": {"kind": "receiver", "prefetch_count": 16, "keep_alive": 0},
    }
    result: dict[str, Any] = {
        "benchmark": "link_lifecycle",
        "rounds": rounds,
        "python": platform.python_version(),
    }
    starts: list[float] = []
    for name, options in cases.items():
        opens: list[float] = []
        closes: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            async with ServiceBusEmulator() as emulator:
                starts.append(time.perf_counter() - started)
                async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
                    opened, closed = await _round(client, **dict(options))
            opens.append(opened)
            closes.append(closed)
        result[name] = {
            "open_s": round(statistics.median(opens), 3),
            "close_s": round(statistics.median(closes), 3),
        }
    result["emulator_start_s"] = round(statistics.median(starts), 3)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the emulator's started/stopped lines are not the output
    print(json.dumps(asyncio.run(main(args.rounds))))
