"""ACS's delivery reports end in the record: emulated ACS -> email-events -> the worker's report consumer.

Everything crosses real sockets through the real SDKs: the worker sends with
azure-communication-email, the ACS emulator reports through azure-servicebus into the Service Bus
emulator's ``email-events`` queue, and the worker's report consumer reads them with azure-servicebus
and merges them into the SQLite record.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from pydantic import SecretStr

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.acs_email.reports import delivery_event
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import parse_event
from postbus.producers.publisher import Publisher
from postbus.records import DeliveryRecord, Outcome, RecordStore, record_store
from postbus.settings import Settings
from postbus.worker.mailer import operation_id_for
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.azurite.server import KEY, Azurite
from tests.support import eventually, running

_renderer = TemplateRenderer()


@pytest.fixture
async def acs(servicebus: ServiceBusEmulator) -> AsyncIterator[EmailEmulator]:
    async with EmailEmulator(report_servicebus=servicebus.connection_string, report_delay=0.1) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def record_backend() -> str:
    """Which store the worker writes to: SQLite unless a test asks for the Table backend too."""
    return "sqlite"


@pytest.fixture
def settings(settings: Settings, record_backend: str, request: pytest.FixtureRequest) -> Settings:
    if record_backend == "sqlite":
        return settings
    server: Azurite = request.getfixturevalue("azurite")
    table = f"records{uuid.uuid4().hex[:12]}"
    return settings.model_copy(
        update={"record_url": server.table_url(table), "record_account_key": SecretStr(KEY)}
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RecordStore]:
    async with record_store(settings) as opened:
        yield opened


def _event(event_id: str, to: str, **extra: Any) -> Any:
    return parse_event(
        {
            "id": event_id,
            "type": "appointment.reminder",
            "tenant": "clinic",
            "to": [to],
            "sender": "care",
            "data": _renderer.sample_data("appointment.reminder"),
            **extra,
        }
    )


async def _send_to_events(servicebus: ServiceBusEmulator, *bodies: bytes | str) -> None:
    client = ServiceBusClient.from_connection_string(servicebus.connection_string)
    async with client, client.get_queue_sender("email-events") as sender:
        for body in bodies:
            await sender.send_messages(ServiceBusMessage(body, content_type="application/json"))


async def _final(store: RecordStore, op: str, *, within: float = 30.0) -> DeliveryRecord:
    """The record of ``op`` once a report decided it (the store announces nothing: poll it)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        record = await store.get(op)
        if record is not None and record.outcome.from_report:
            return record
        assert asyncio.get_running_loop().time() < deadline, f"no report-decided record for {op}: {record}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("record_backend", ["sqlite", "table"])
async def test_each_address_ends_in_the_record_state_acs_reported_with_its_details(
    settings: Settings, worker: Worker, publisher: Publisher, store: RecordStore, acs: EmailEmulator
) -> None:
    cases = {
        "r-delivered": ("pat@example.com", Outcome.DELIVERED),
        "r-bounced": ("bounce@example.com", Outcome.BOUNCED),
        "r-suppressed": ("suppressed@example.org", Outcome.SUPPRESSED),
        "r-spam": ("spam@example.net", Outcome.FILTERED_SPAM),
        "r-expired": ("expire@example.com", Outcome.EXPIRED),
    }
    await publisher.publish_many([_event(event_id, to) for event_id, (to, _) in cases.items()])
    records = {
        event_id: await _final(store, operation_id_for(event_id, namespace=settings.operation_namespace))
        for event_id in cases
    }
    for event_id, (to, outcome) in cases.items():
        record = records[event_id]
        assert record.outcome is outcome, event_id
        # The worker's half of the story is there too
        assert (record.event_id, record.tenant, record.type) == (event_id, "clinic", "appointment.reminder")
        assert record.accepted_at is not None
        assert record.recipient_domains == (to.rpartition("@")[2],)
        assert record.status_message
        assert record.mail_server == f"mx.{to.rpartition('@')[2]}"
    delivered = records["r-delivered"]
    assert delivered.delivered_at is not None
    assert (delivered.smtp_code, delivered.smtp_status) == (250, "2.6.0")
    assert records["r-bounced"].delivered_at is None
    assert (records["r-bounced"].smtp_code, records["r-bounced"].smtp_status) == (550, "5.1.1")
    assert (records["r-spam"].smtp_code, records["r-spam"].smtp_status) == (550, "5.7.1")
    assert records["r-expired"].smtp_status == "4.4.1"
    await eventually(lambda: worker.report_counts["recorded"] == len(cases))
    assert worker.health().detail["reports"] == {"recorded": len(cases)}


async def test_a_duplicate_report_changes_nothing_and_an_early_one_waits_for_the_send(
    settings: Settings,
    worker: Worker,
    publisher: Publisher,
    store: RecordStore,
    servicebus: ServiceBusEmulator,
) -> None:
    op = operation_id_for("r-early", namespace=settings.operation_namespace)
    # A report for an operation nobody has written yet (it came before the worker's write), twice
    early = json.dumps(
        delivery_event(
            operation_id=op,
            sender="care@clinic.example.org",
            recipient="pat@example.com",
            status="Delivered",
            at=datetime.now(UTC),
        )
    )
    await _send_to_events(servicebus, early, early)
    await eventually(lambda: worker.report_counts["recorded"] == 2)
    first = await store.get(op)
    assert first is not None
    assert first.outcome is Outcome.DELIVERED
    assert first.event_id is None  # only the report's half so far
    # When the worker sends the event (and the emulator reports it delivered again)
    await publisher.publish(_event("r-early", "pat@example.com"))
    await eventually(lambda: worker.report_counts["recorded"] == 3)
    (record,) = await store.by_event("r-early")
    assert record.operation_id == op
    assert record.outcome is Outcome.DELIVERED
    assert (record.tenant, record.type) == ("clinic", "appointment.reminder")
    assert record.delivered_at == first.delivered_at  # the first delivery time is kept


async def test_malformed_and_foreign_events_are_dead_lettered_with_a_reason(
    worker: Worker, servicebus: ServiceBusEmulator
) -> None:
    validation = {
        "id": "v-1",
        "topic": "t",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": datetime.now(UTC).isoformat(),
        "data": {"validationCode": "x"},
    }
    unknown_status = delivery_event(
        operation_id="op-1",
        sender="a@b.example",
        recipient="c@d.example",
        status="Vanished",
        at=datetime.now(UTC),
    )
    await _send_to_events(servicebus, b"{not json", json.dumps(validation), json.dumps(unknown_status))
    await eventually(lambda: worker.report_counts["dead_lettered"] == 3)
    client = ServiceBusClient.from_connection_string(servicebus.connection_string)
    reasons = {}
    async with (
        client,
        client.get_queue_receiver("email-events", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq,
    ):
        while len(reasons) < 3:
            batch = await dlq.receive_messages(max_message_count=3, max_wait_time=5)
            assert batch
            for message in batch:
                reasons[message.dead_letter_reason] = message.dead_letter_error_description
                await dlq.complete_message(message)
    assert set(reasons) == {"MalformedReport", "UnsupportedEventType", "UnknownStatus"}
    assert "not valid JSON" in reasons["MalformedReport"]
    assert "Vanished" in reasons["UnknownStatus"]
    assert worker.ready  # the worker took no harm


async def test_with_the_suppression_list_a_bounced_recipient_is_not_sent_to_again(
    settings: Settings, servicebus: ServiceBusEmulator, acs: EmailEmulator, store: RecordStore
) -> None:
    suppressing = settings.model_copy(update={"suppress_days": 30})
    async with Publisher.from_settings(settings) as publisher, running(Worker(suppressing)) as worker:
        await publisher.publish(_event("s-1", "bounce@example.com"))
        await _final(store, operation_id_for("s-1", namespace=settings.operation_namespace))
        await publisher.publish(_event("s-2", "Bounce@Example.com"))
        await eventually(lambda: worker.counts["dead_lettered"] == 1)
    assert len(acs.mailbox) == 1
    (record,) = await store.by_event("s-2")
    assert record.outcome is Outcome.DEAD_LETTERED
    assert record.dead_letter_reason == "RecipientSuppressed"
    assert record.dead_letter_description is not None
    assert "bounce@example.com" not in record.dead_letter_description.lower()
