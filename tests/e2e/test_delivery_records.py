"""The worker's delivery-record writes over the real SDKs: a crash between send and write, a store that is down."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import parse_event
from postbus.producers.publisher import Publisher
from postbus.records import DeliveryRecord, Outcome, RecordStoreUnavailable, parse_report
from postbus.records.sqlite import SqliteRecordStore
from postbus.settings import Settings
from postbus.worker.mailer import operation_id_for
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import eventually, running

_renderer = TemplateRenderer()


def _event(event_id: str, to: str = "jane@example.com") -> Any:
    return parse_event(
        {
            "id": event_id,
            "type": "order.confirmation",
            "tenant": "contoso",
            "to": [to],
            "sender": "orders",
            "data": _renderer.sample_data("order.confirmation"),
        }
    )


def _delivered_report(operation_id: str, at: datetime) -> bytes:
    return json.dumps(
        {
            "id": "report-1",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Communication/CommunicationServices/acs",
            "subject": f"sender/orders@shop.example.com/message/{operation_id}",
            "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
            "eventTime": at.isoformat(),
            "dataVersion": "1.0",
            "data": {
                "sender": "orders@shop.example.com",
                "recipient": "jane@example.com",
                "messageId": operation_id,
                "status": "Delivered",
                "deliveryAttemptTimeStamp": at.isoformat(),
                "deliveryStatusDetails": {
                    "statusMessage": "250 2.6.0 Queued mail for delivery",
                    "recipientMailServerHostName": "mx.example.com",
                },
            },
        }
    ).encode()


class _Stuck(SqliteRecordStore):
    """A store whose writes never finish: the worker "dies" while it waits here."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.waiting = asyncio.Event()

    async def write(self, update: DeliveryRecord) -> DeliveryRecord:
        self.waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_worker_killed_between_send_and_record_write_still_ends_with_one_correct_record(
    settings: Settings, servicebus: ServiceBusEmulator, acs: EmailEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "records.db"
    fast_stop = settings.model_copy(update={"shutdown_grace_seconds": 0.2})
    op = operation_id_for("order-77", namespace=settings.operation_namespace)
    # Given a worker that sent the email and then stopped dead before its record write
    stuck = _Stuck(path)
    async with Publisher.from_settings(settings) as publisher, running(Worker(fast_stop, records=stuck)):
        await publisher.publish(_event("order-77"))
        await acs.mailbox.wait_for(count=1, timeout=20)
        await asyncio.wait_for(stuck.waiting.wait(), timeout=20)
    await stuck.close()
    async with SqliteRecordStore(path) as store:
        assert await store.get(op) is None
        # and ACS's delivery report arrived first
        delivered_at = datetime.now(UTC)
        await store.write(parse_report(_delivered_report(op, delivered_at)).as_write())
        # When another worker gets the message back
        async with running(Worker(settings, records=store)) as second:
            await eventually(lambda: second.counts["already_sent"] == 1)
        # Then ACS has one email, and the store one record with both stories merged
        assert len(acs.mailbox) == 1
        (record,) = await store.by_event("order-77")
    assert record.operation_id == op
    assert record.outcome is Outcome.DELIVERED
    assert (record.tenant, record.type, record.generation) == ("contoso", "order.confirmation", 0)
    assert record.delivered_at is not None
    assert record.accepted_at is not None
    assert record.smtp_code == 250
    assert record.smtp_status == "2.6.0"
    assert record.mail_server == "mx.example.com"
    await servicebus.wait_until_empty("notifications", timeout=20)


class _Down(SqliteRecordStore):
    async def write(self, update: DeliveryRecord) -> DeliveryRecord:
        raise RecordStoreUnavailable(f"sqlite {self.path}: unable to open database file")


async def test_a_store_that_is_down_does_not_stop_sending_nor_lose_a_message(
    settings: Settings, servicebus: ServiceBusEmulator, acs: EmailEmulator, tmp_path: Path
) -> None:
    store = _Down(tmp_path / "records.db")
    async with (
        Publisher.from_settings(settings) as publisher,
        running(Worker(settings, records=store)) as worker,
    ):
        await publisher.publish_many([_event(f"order-{n}") for n in range(5)])
        await acs.mailbox.wait_for(count=5, timeout=30)
        await servicebus.wait_until_empty("notifications", timeout=30)
        await eventually(lambda: worker.counts["record_write_failures"] == 5)
    assert len(acs.mailbox) == 5
    assert servicebus.counts("notifications").dead_lettered == 0
