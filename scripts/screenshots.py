"""Regenerate the console screenshots in docs/images/ (``make screenshots``).

Runs a small spike through both emulators and an in-process worker, then photographs the pipeline
view while it drains and the mailbox console after, in Debian's Chromium (``apt-get install
chromium``). The README shows these files; rerun this after changing either page.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import async_playwright

from postbus.emulators.acs_email import EmailEmulator, QuotaConfig
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.harness import SENDERS, free_ports
from postbus.logs import configure_logging
from postbus.pipeline_view import ConsoleServer, EmbeddedSource
from postbus.producers.publisher import Publisher
from postbus.producers.simulate import holiday_spike
from postbus.settings import load_settings
from postbus.worker.runner import Worker

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
QUOTA = 240
EVENTS = 80


async def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("screenshots need Debian's chromium: apt-get install chromium", file=sys.stderr)
        return 1
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    [health_port] = free_ports(1)
    async with ServiceBusEmulator() as sb, EmailEmulator(quota=QuotaConfig(sends_per_minute=QUOTA)) as acs:
        settings = load_settings(
            None,
            servicebus_connection_string=sb.connection_string,
            acs_endpoint=acs.endpoint,
            acs_access_key=acs.access_key,
            senders=SENDERS,
            quota_per_minute=QUOTA,
            quota_per_hour=0,
            health_port=health_port,
            log_level="error",
        )
        published_at: dict[str, float] = {}
        source = EmbeddedSource(
            sb,
            acs,
            quota_per_minute=QUOTA,
            published_at=published_at,
            worker_urls=[f"http://127.0.0.1:{health_port}"],
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(settings).run(stop))
        try:
            async with (
                ConsoleServer(source, interval=0.5) as pipeline,
                # check=None: the spike holds events the worker must dead-letter (expired, unknown alias).
                Publisher.from_settings(settings, check=None) as publisher,
                async_playwright() as playwright,
            ):
                browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                spike = holiday_spike(
                    EVENTS, seed=11, start=datetime.now(UTC), invalid_ratio=0.05, lead_seconds=2
                )
                now = datetime.now(UTC).timestamp()
                for item in spike:
                    published_at[item.event.id] = item.send_at.timestamp() if item.send_at else now
                await publisher.publish_many([i.event for i in spike if i.send_at is None])
                for item in spike:
                    if item.send_at is not None:
                        await publisher.publish(item.event, send_at=item.send_at)

                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(pipeline.url)
                await acs.mailbox.wait_for(count=EVENTS // 2, timeout=120)
                await page.wait_for_timeout(1500)  # let the charts draw the latest samples
                await page.screenshot(path=OUT / "pipeline-view.png", full_page=True)

                await sb.wait_for(
                    "notifications", lambda c: c.active + c.scheduled + c.locked == 0, timeout=120
                )
                mailbox = await browser.new_page(viewport={"width": 1280, "height": 800})
                await mailbox.goto(f"{acs.endpoint}/_emulator/ui/")
                await mailbox.locator(".message", has_text="order").first.click()
                await mailbox.frame_locator("#html-frame").locator("body").wait_for()
                await mailbox.screenshot(path=OUT / "mailbox.png")

                dark = await browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
                await dark.goto(f"{acs.endpoint}/_emulator/ui/")
                await dark.locator(".message").first.wait_for()
                await dark.screenshot(path=OUT / "mailbox-phone-dark.png")
                await browser.close()
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await worker
    for name in ("pipeline-view.png", "mailbox.png", "mailbox-phone-dark.png"):
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
