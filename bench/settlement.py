"""How long one ``complete`` takes when many are in flight, by Service Bus socket timeout; prints JSON.

Against the embedded Service Bus emulator, through Postbus's own adapter (the real SDK): for each
socket timeout and concurrency, receive ``--messages`` messages, then complete them with that many
completes in flight at once, timing each one. The SDK notices a settlement's confirmation only
when its own read of the connection times out, so with many in flight a ``complete`` takes about
the socket timeout instead of the round trip (docs/performance.md)::

    .venv/bin/python bench/settlement.py [--messages 256] [--timeouts 0.2,0.05,0.02,0.01] [--concurrency 1,16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from postbus.bus import QueueLinks, ServiceBusConnection
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import WireMessage
from postbus.logs import configure_logging
from postbus.settings import load_settings

QUEUE = "notifications"


async def _one(
    emulator: ServiceBusEmulator, socket_timeout: float, concurrency: int, messages: int
) -> dict[str, Any]:
    settings = load_settings(
        None,
        servicebus_connection_string=emulator.connection_string,
        servicebus_socket_timeout=socket_timeout,
    )
    async with ServiceBusConnection.from_settings(settings, purpose="the benchmark") as connection:
        links = await QueueLinks(connection, QUEUE, prefetch=messages).open()
        try:
            for start in range(0, messages, 100):
                for i in range(start, min(messages, start + 100)):
                    await links.send(
                        WireMessage(
                            body=b"x" * 512,
                            subject="bench",
                            message_id=f"m-{socket_timeout}-{concurrency}-{i}",
                        )
                    )
            held = []
            while len(held) < messages:
                held += await links.receive(messages - len(held), max_wait=2)
            gate = asyncio.Semaphore(concurrency)
            took: list[float] = []

            async def complete(delivery: Any) -> None:
                async with gate:
                    started = time.perf_counter()
                    await links.complete(delivery)
                    took.append((time.perf_counter() - started) * 1000)

            cpu0, started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(complete(d) for d in held))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        finally:
            await links.close()
    took.sort()
    return {
        "socket_timeout": socket_timeout,
        "concurrency": concurrency,
        "complete_ms_p50": round(statistics.median(took), 1),
        "complete_ms_p95": round(took[int(len(took) * 0.95) - 1], 1),
        "completes_per_second": round(messages / elapsed),
        # The emulator runs in this process too, so this is an upper bound of the client's share.
        "process_cpu_ms_per_complete": round(cpu * 1000 / messages, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=256)
    parser.add_argument("--timeouts", default="0.2,0.05,0.02,0.01")
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    timeouts = [float(t) for t in args.timeouts.split(",")]
    runs = []
    async with ServiceBusEmulator() as emulator:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for timeout in timeouts:
                runs.append(await _one(emulator, timeout, concurrency, args.messages))
    print(json.dumps({"benchmark": "settlement", "load_average": os.getloadavg(), "runs": runs}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
