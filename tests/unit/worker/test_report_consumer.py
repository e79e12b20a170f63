"""The report consumer over an in-memory queue and store: record, dead-letter, abandon, metrics, suppression."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from postbus.bus import InMemoryBroker
from postbus.events import WireMessage
from postbus.logs import capture_lines
from postbus.records import MemoryRecordStore, Outcome, RecordStoreUnavailable, sent
from postbus.worker.reports import ReportConsumer, handle_report
from postbus.worker.suppression import SuppressionList
from tests.unit.telemetry.capture import captured_telemetry

OP = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _report(
    status: str = "Delivered", *, recipient: str = "pat@example.com", at: datetime | None = None
) -> bytes:
    at = at or datetime.now(UTC)
    return json.dumps(
        {
            "id": f"r-{status}-{at.timestamp()}",
            "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
            "eventTime": at.isoformat(),
            "data": {
                "sender": "care@clinic.example.org",
                "recipient": recipient,
                "messageId": OP,
                "status": status,
                "deliveryAttemptTimeStamp": at.isoformat(),
                "deliveryStatusDetails": {
                    "statusMessage": "550 5.1.1 no such user" if status == "Bounced" else ""
                },
            },
        }
    ).encode()


def _wire(body: bytes, message_id: str) -> WireMessage:
    return WireMessage(
        body=body,
        content_type="application/json",
        application_properties={},
        message_id=message_id,
        subject=None,
    )


async def _consume(broker: InMemoryBroker, store: Any, **kwargs: Any) -> ReportConsumer:
    stop = asyncio.Event()
    with captured_telemetry() as captured:
        consumer = ReportConsumer(
            broker, store, telemetry=captured.telemetry, concurrency=2, grace=5, **kwargs
        )
        task = asyncio.create_task(consumer.run(stop))
        await broker.join(timeout=10)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        consumer.points = captured.metrics()  # type: ignore[attr-defined]
    return consumer


async def test_reports_are_recorded_duplicates_change_nothing_and_bad_ones_are_dead_lettered() -> None:
    enqueued = datetime.now(UTC) - timedelta(seconds=30)
    store = MemoryRecordStore()
    await store.write(
        sent(
            operation_id=OP,
            event_id="appt-1",
            generation=0,
            tenant="clinic",
            type="appointment.reminder",
            recipient_domains=["example.com"],
            first_enqueued=enqueued,
            attempts=1,
            accepted_at=enqueued + timedelta(seconds=1),
        )
    )
    delivered = _report("Delivered")
    broker = InMemoryBroker("email-events")
    broker.send(_wire(delivered, "m1"))
    broker.send(_wire(delivered, "m2"))  # Event Grid delivers at least once
    broker.send(_wire(b"{not json", "m3"))
    broker.send(_wire(_report("Vanished"), "m4"))
    with capture_lines() as logs:
        consumer = await _consume(broker, store)
    assert consumer.counts["recorded"] == 2
    assert consumer.counts["dead_lettered"] == 2
    assert sorted((d.delivery.message_id, d.reason.value) for d in broker.dead_lettered) == [
        ("m3", "MalformedReport"),
        ("m4", "UnknownStatus"),
    ]
    record = store.records[OP]
    assert record.outcome is Outcome.DELIVERED
    assert record.event_id == "appt-1"
    lines = [line for line in logs if line["event"] == "report processed"]
    assert len(lines) == 4
    assert {line["outcome"] for line in lines} == {"recorded", "dead_lettered"}
    # The delivery latency is recorded once per email, not once per duplicate report
    points = {p.name: p for p in consumer.points}  # type: ignore[attr-defined]
    latency = points["postbus.delivery.latency"]
    assert latency.value == 1
    assert latency.attributes["slo_met"] == "true"
    received = [p for p in consumer.points if p.name == "postbus.reports.received"]  # type: ignore[attr-defined]
    by_status = {p.attributes["status"]: p.value for p in received}
    assert by_status == {"Delivered": 2, "invalid": 2}


async def test_a_store_that_is_down_gives_the_report_back_to_the_queue() -> None:
    store = MemoryRecordStore()
    store.fail_with = RecordStoreUnavailable("table records: connection refused")
    verdict = await handle_report(_report(), store)
    assert verdict.outcome == "abandoned"
    assert "connection refused" in verdict.description


async def test_hard_bounces_and_suppressions_feed_the_suppression_list_soft_bounces_do_not() -> None:
    store, suppressed = MemoryRecordStore(), SuppressionList(ttl_seconds=60)
    await handle_report(_report("Bounced", recipient="Gone@Example.com"), store, suppression=suppressed)
    await handle_report(_report("Suppressed", recipient="quiet@example.com"), store, suppression=suppressed)
    await handle_report(_report("Delivered", recipient="pat@example.com"), store, suppression=suppressed)
    assert suppressed.first_of(["pat@example.com", "gone@example.com"]) == "gone@example.com"
    assert suppressed.first_of(["QUIET@example.com"]) == "QUIET@example.com"
    assert suppressed.first_of(["pat@example.com"]) is None
    assert len(suppressed) == 2


def test_suppression_entries_expire_and_hold_no_address() -> None:
    now = [0.0]
    suppressed = SuppressionList(ttl_seconds=10, clock=lambda: now[0])
    suppressed.add("gone@example.com")
    assert "gone" not in repr(suppressed.__dict__)
    assert suppressed.first_of(["gone@example.com"]) == "gone@example.com"
    now[0] = 11.0
    assert suppressed.first_of(["gone@example.com"]) is None
    assert len(suppressed) == 0
