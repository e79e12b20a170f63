"""The worker writes the delivery record before it settles; a store that is down costs no message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from postbus.bus import InMemoryBroker
from postbus.events import WireMessage, encode, parse_event
from postbus.logs import capture_lines
from postbus.records import MemoryRecordStore, Outcome, RecordStoreUnavailable
from postbus.settings import Settings
from postbus.worker.mailer import FakeMailer, operation_id_for
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.unit.telemetry.capture import captured_telemetry

_renderer = TemplateRenderer()


def _order(event_id: str, **overrides: Any) -> WireMessage:
    document: dict[str, Any] = {
        "id": event_id,
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["jane@example.com"],
        "cc": ["Ops <ops@Fabrikam.example>"],
        "sender": "orders",
        "data": _renderer.sample_data("order.confirmation"),
    }
    document.update(overrides)
    return encode(parse_event(document))


@contextlib.asynccontextmanager
async def running(worker: Worker, broker: InMemoryBroker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await broker.wait_for(lambda: broker.opened > 0 or task.done(), timeout=10)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def _op(settings: Settings, event_id: str) -> str:
    return operation_id_for(event_id, namespace=settings.operation_namespace)


async def test_a_sent_event_is_recorded_with_what_the_worker_knows(settings: Settings) -> None:
    broker, store = InMemoryBroker(), MemoryRecordStore()
    broker.send(_order("order-1"))
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer, records=store)
    async with running(worker, broker):
        await broker.join(timeout=10)
    record = store.records[_op(settings, "order-1")]
    assert record.outcome is Outcome.SENT
    assert (record.event_id, record.generation, record.tenant, record.type) == (
        "order-1",
        0,
        "contoso",
        "order.confirmation",
    )
    # Domains only, never an address.
    assert record.recipient_domains == ("example.com", "fabrikam.example")
    assert record.attempts == 1
    assert record.accepted_at is not None
    assert record.first_enqueued is not None


async def test_a_dead_lettered_event_is_recorded_with_its_reason(settings: Settings) -> None:
    broker, store = InMemoryBroker(), MemoryRecordStore()
    broker.send(_order("order-2", sender="nobody"))
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer, records=store)
    async with running(worker, broker):
        await broker.join(timeout=10)
    (dead,) = broker.dead_lettered
    assert dead.reason == "SenderNotAllowed"
    record = store.records[_op(settings, "order-2")]
    assert record.outcome is Outcome.DEAD_LETTERED
    assert record.dead_letter_reason == "SenderNotAllowed"
    assert record.dead_letter_description is not None
    assert "nobody" in record.dead_letter_description


async def test_an_unreachable_store_costs_no_message_and_is_counted_and_logged(settings: Settings) -> None:
    # Given a store that refuses every write
    broker, store, mailer = InMemoryBroker(), MemoryRecordStore(), FakeMailer()
    store.fail_with = RecordStoreUnavailable("sqlite records.db: disk I/O error")
    for n in range(3):
        broker.send(_order(f"order-{n}"))
    with captured_telemetry() as captured:
        worker = Worker(
            settings,
            source=broker,
            mailer=mailer,
            renderer=_renderer,
            records=store,
            telemetry=captured.telemetry,
        )
        with capture_lines() as logs:
            async with running(worker, broker):
                await broker.join(timeout=30)
        points = captured.metric("postbus.records.write.failures")
    # Then every email went out and every message was completed, nothing dead-lettered or left
    assert len(mailer.sent) == 3
    assert sorted(m.message_id for m in broker.completed) == ["order-0", "order-1", "order-2"]
    assert not broker.dead_lettered
    # and each failure was counted and told in one warning line naming the store's error
    assert worker.counts["record_write_failures"] == 3
    failed = [line for line in logs if line["event"] == "record write failed"]
    assert len(failed) == 3
    assert all("disk I/O error" in line["error"] for line in failed)
    assert sum(point.value for point in points) == 3


async def test_a_store_that_recovers_within_the_tries_gets_the_write(settings: Settings) -> None:
    class Flaky(MemoryRecordStore):
        def __init__(self) -> None:
            super().__init__()
            self.refusals = 2

        async def write(self, update: Any) -> Any:
            if self.refusals:
                self.refusals -= 1
                raise RecordStoreUnavailable("table records: connection reset")
            return await super().write(update)

    broker, store = InMemoryBroker(), Flaky()
    broker.send(_order("order-9"))
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer, records=store)
    async with running(worker, broker):
        await broker.join(timeout=10)
    assert store.records[_op(settings, "order-9")].outcome is Outcome.SENT
    assert worker.counts["record_write_failures"] == 0
