"""The pipeline view in a real browser: its numbers are the emulators' at the end of a small spike."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.harness import free_ports
from postbus.pipeline_view import ConsoleServer, EmbeddedSource
from postbus.producers.publisher import Publisher
from postbus.producers.simulate import broken_bodies
from postbus.records import record_store
from postbus.settings import Settings
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import running

TIMEOUT_MS = 30_000
_renderer = TemplateRenderer()


@pytest.fixture
async def watched_worker(settings: Settings) -> AsyncIterator[tuple[Worker, str]]:
    """A worker with its health endpoint on a known port, so the view can show its readiness."""
    [port] = free_ports(1)
    async with running(Worker(settings.model_copy(update={"health_port": port}))) as started:
        yield started, f"http://127.0.0.1:{port}"


async def test_the_numbers_match_the_emulators_after_a_small_spike(
    page: Page,
    servicebus: ServiceBusEmulator,
    acs: EmailEmulator,
    watched_worker: tuple[Worker, str],
    publisher: Publisher,
    settings: Settings,
) -> None:
    _, health_url = watched_worker
    published_at: dict[str, float] = {}
    # The record the worker writes (as in the demo): the view shows its outcomes.
    records = record_store(settings)
    source = EmbeddedSource(
        servicebus,
        acs,
        quota_per_minute=600,
        published_at=published_at,
        worker_urls=[health_url],
        records=records,
    )
    async with records, ConsoleServer(source, interval=0.2) as pipeline:
        await page.goto(pipeline.url)
        await expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)

        events: list[dict[str, Any]] = [
            {
                "id": f"spike-{n:03d}",
                "type": "order.confirmation",
                "tenant": "contoso",
                "to": [f"c{n}@example.test"],
                "sender": "orders",
                "data": _renderer.sample_data("order.confirmation"),
            }
            for n in range(15)
        ]
        for event in events:
            published_at[event["id"]] = time.time()
        await publisher.publish_many(events)
        await publisher.publish_raw(broken_bodies(2, seed=3))
        await acs.mailbox.wait_for(count=len(events), timeout=30)
        await servicebus.wait_for("notifications", lambda c: c.dead_lettered == 2, timeout=30)
        await servicebus.wait_for("notifications", lambda c: c.active + c.locked == 0, timeout=30)
        final = await pipeline.sample_once()

        await expect(page.locator("#sent")).to_have_text(str(len(acs.mailbox)), timeout=TIMEOUT_MS)
        assert final.sent == len(events)
        assert final.delivery == {"sent": len(events)}  # no reports in this pipeline: accepted, not more
        await expect(page.locator("#published")).to_have_text(str(len(events)))
        await expect(page.locator("#dead-lettered")).to_have_text("2")
        await expect(page.locator("#throttled")).to_have_text(str(acs.stats()["throttled"]))
        await expect(page.locator("#dead-letters")).to_contain_text("InvalidEvent")
        await expect(page.locator("#dead-letters tbody tr")).to_have_count(1)
        # The emulator's lane queues share the prefix: the row whose name is exactly the normal lane's
        notifications = page.locator(
            "#queues tbody tr", has=page.get_by_role("cell", name="notifications", exact=True)
        )
        await expect(notifications.locator("td").nth(3)).to_have_text("2")
        latency_count = page.locator('#latency tr[data-kind="accepted"] td').nth(3)
        await expect(latency_count).to_have_text(str(len(events)))
        await expect(page.locator('#workers li[data-ready="true"]')).to_have_count(1)
        await expect(page.locator("#quota")).to_have_text("quota 600/min")
        await expect(page.locator("#delivery tbody tr", has_text="sent")).to_contain_text(str(len(events)))
        assert await page.locator("#rate-chart canvas").count() >= 1


async def test_a_worker_that_does_not_answer_shows_as_not_ready(page: Page, acs: EmailEmulator) -> None:
    [closed_port] = free_ports(1)
    async with ServiceBusEmulator() as servicebus:
        source = EmbeddedSource(
            servicebus,
            acs,
            quota_per_minute=None,
            published_at={},
            worker_urls=[f"http://127.0.0.1:{closed_port}"],
        )
        async with ConsoleServer(source) as pipeline:
            await page.goto(pipeline.url)
            await expect(page.locator('#workers li[data-ready="false"]')).to_have_count(1, timeout=TIMEOUT_MS)
            await expect(page.locator("#quota")).to_have_text("no quota set")
            await expect(page.locator("#no-dead-letters")).to_be_visible()
