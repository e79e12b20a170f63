"""Publish -> ACS accepted latency with and without the claim check. Prints one JSON object.

Both emulators run embedded in this process (unlimited ACS quota, no emulated latency) with one
worker on the same event loop, so the numbers are the pipeline's own cost on one machine. Each
scenario publishes ``--events`` return labels one at a time and waits for each to be accepted,
so it measures latency, not throughput:

- ``inline``: a 40 KB PDF travels inside the message (under the 64 KB threshold);
- ``claim_check_local_40k``/``claim_check_blob_40k``: the same 40 KB PDF forced through the claim
  check (threshold 0), local directory or Azurite Blob: the claim check's own overhead;
- ``claim_check_local_300k``/``claim_check_blob_300k``: a 300 KB PDF, which only travels through
  the claim check (the message limit is 256 KB).

``publish_ms`` is the publish call (upload included); ``accepted_ms`` runs from the call's start to
the ACS emulator accepting the email (download, verify, render and send included). The Blob
scenarios need Azurite (``make azurite``); without it they are reported as skipped.

    .venv/bin/python bench/claimcheck.py [--events 40]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.harness import SENDERS
from postbus.logs import configure_logging
from postbus.producers.publisher import Publisher
from postbus.producers.simulate import label_pdf
from postbus.settings import Settings, load_settings
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.azurite.server import Azurite, AzuriteMissing
from tests.support import running

_data = TemplateRenderer().sample_data("return.label")


def _event(event_id: str, pdf: bytes) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "return.label",
        "to": ["jane@example.com"],
        "sender": "returns",
        "data": _data,
        "attachments": [
            {
                "name": "label.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(pdf).decode(),
            }
        ],
    }


def _pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))], 1)


async def _scenario(
    name: str, settings: Settings, acs: EmailEmulator, *, size: int, events: int
) -> dict[str, Any]:
    acs.mailbox.clear()
    publish_ms: list[float] = []
    accepted_ms: list[float] = []
    async with running(Worker(settings)), Publisher.from_settings(settings) as publisher:
        # Publish 0 opens the AMQP link and warms the worker; it is not measured.
        for i in range(events + 1):
            pdf = label_pdf(f"{name}-{i}", size=size)  # distinct content: every publish uploads
            started_wall, started = time.time(), time.perf_counter()
            await publisher.publish(_event(f"{name}-{i}", pdf))
            published = (time.perf_counter() - started) * 1000
            mails = await acs.mailbox.wait_for(count=i + 1, timeout=60)
            assert mails[-1].attachments[0].content == pdf
            if i:
                publish_ms.append(published)
                accepted_ms.append((mails[-1].received_at.timestamp() - started_wall) * 1000)
    return {
        "attachment_bytes": size,
        "events": events,
        "publish_ms": {
            "p50": _pct(publish_ms, 50),
            "p95": _pct(publish_ms, 95),
            "mean": round(statistics.fmean(publish_ms), 1),
        },
        "accepted_ms": {
            "p50": _pct(accepted_ms, 50),
            "p95": _pct(accepted_ms, 95),
            "mean": round(statistics.fmean(accepted_ms), 1),
        },
    }


async def main(events: int) -> dict[str, Any]:
    configure_logging(level="error", fmt="json")
    results: dict[str, Any] = {"benchmark": "claimcheck", "events_per_scenario": events, "scenarios": {}}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        async with ServiceBusEmulator() as sb, EmailEmulator() as acs:
            base = load_settings(
                None,
                servicebus_connection_string=sb.connection_string,
                acs_endpoint=acs.endpoint,
                acs_access_key=acs.access_key,
                senders=SENDERS,
                quota_per_minute=0,
                quota_per_hour=0,
                health_port=0,
                log_format="json",
                log_level="error",
                attachment_store_url=f"file://{root / 'attachments'}",
            )
            forced = base.model_copy(update={"attachment_inline_max_bytes": 0})
            plan: list[tuple[str, Settings, int]] = [
                ("inline_40k", base, 40_000),
                ("claim_check_local_40k", forced, 40_000),
                ("claim_check_local_300k", base, 300 * 1024),
            ]
            azurite: Azurite | None = Azurite(root / "azurite", service="blob")
            try:
                assert azurite is not None
                azurite.start()
                blob = {
                    "attachment_store_url": azurite.container_url("claimchecks"),
                    "attachment_store_connection_string": SecretStr(azurite.connection_string),
                }
                plan += [
                    ("claim_check_blob_40k", forced.model_copy(update=blob), 40_000),
                    ("claim_check_blob_300k", base.model_copy(update=blob), 300 * 1024),
                ]
            except AzuriteMissing as exc:
                results["skipped"] = {"blob": str(exc)}
                azurite = None
            try:
                # A short unreported pass first, so the first scenario does not pay for warming up.
                await _scenario("warmup", base, acs, size=40_000, events=3)
                for name, settings, size in plan:
                    results["scenarios"][name] = await _scenario(
                        name, settings, acs, size=size, events=events
                    )
            finally:
                if azurite is not None:
                    azurite.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.events)), indent=2))
