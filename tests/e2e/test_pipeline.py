"""Producers -> emulated Service Bus -> worker -> emulated ACS, asserting what reached the mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import WireMessage, encode, parse_event
from postbus.producers.publisher import Publisher
from postbus.settings import Settings
from postbus.worker.mailer import EVENT_ID_HEADER
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import SENDERS

_renderer = TemplateRenderer()


def _event(event_id: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": event_id,
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["Jane Doe <jane@example.com>"],
        "bcc": ["audit@example.org"],
        "sender": "orders",
        "locale": "de-DE",
        "data": _renderer.sample_data("order.confirmation"),
    }
    document.update(overrides)
    return document


async def _dead_letters(servicebus: ServiceBusEmulator, count: int) -> list[Any]:
    async with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        receiver = client.get_queue_receiver("notifications", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        async with receiver:
            messages: list[Any] = []
            while len(messages) < count:
                batch = await receiver.receive_messages(max_message_count=count, max_wait_time=5)
                assert batch, f"expected {count} dead-letters, found {len(messages)}"
                for message in batch:
                    await receiver.complete_message(message)
                messages.extend(batch)
            return messages


async def test_an_order_confirmation_arrives_with_sender_recipients_subject_and_bodies(
    worker: Worker, publisher: Publisher, acs: EmailEmulator
) -> None:
    await publisher.publish(parse_event(_event("order-1")))
    (mail,) = await acs.mailbox.wait_for(count=1, timeout=20)
    expected = _renderer.render(
        "order.confirmation", locale="de-DE", data=_event("x")["data"], tenant="contoso"
    )
    assert mail.sender == SENDERS["orders"]
    assert mail.to == ("jane@example.com",)
    assert mail.bcc == ("audit@example.org",)
    assert mail.display_names.get("jane@example.com") == "Jane Doe"
    assert mail.subject == expected.subject
    assert mail.html == expected.html
    assert mail.plain_text == expected.text
    assert mail.headers[EVENT_ID_HEADER] == "order-1"


async def test_a_scheduled_reminder_is_not_delivered_before_send_at(
    worker: Worker, publisher: Publisher, acs: EmailEmulator
) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    reminder = _event(
        "visit-1",
        type="appointment.reminder",
        sender="care",
        locale="en",
        data=_renderer.sample_data("appointment.reminder"),
    )
    await publisher.publish(parse_event(reminder), send_at=send_at)
    (mail,) = await acs.mailbox.wait_for(count=1, timeout=15)
    assert mail.received_at >= send_at
    assert mail.headers[EVENT_ID_HEADER] == "visit-1"


async def test_bad_events_are_dead_lettered_with_reason_and_description(
    worker: Worker, publisher: Publisher, servicebus: ServiceBusEmulator, acs: EmailEmulator
) -> None:
    good = encode(parse_event(_event("schema-base")))
    broken = [
        WireMessage(body=b"{not json", message_id="bad-json", subject="order.confirmation"),
        WireMessage(
            body=good.body.replace(b'"sender":"orders"', b'"sender":"Not An Alias"'),
            message_id="bad-schema",
            subject="x",
        ),
    ]
    await publisher.publish_raw(broken)
    await publisher.publish_many(
        [
            parse_event(_event("no-template", type="gift.card")),
            parse_event(_event("no-sender", sender="marketing")),
            parse_event(_event("too-late", not_after=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())),
        ]
    )
    dead = await _dead_letters(servicebus, 5)
    by_id = {message.message_id: message for message in dead}
    reasons = {message_id: message.dead_letter_reason for message_id, message in by_id.items()}
    assert reasons == {
        "bad-json": "InvalidEvent",
        "bad-schema": "InvalidEvent",
        "no-template": "UnknownTemplate",
        "no-sender": "SenderNotAllowed",
        "too-late": "Expired",
    }
    assert "not valid JSON" in by_id["bad-json"].dead_letter_error_description
    assert by_id["bad-schema"].dead_letter_error_description.startswith("sender:")
    assert "gift.card" in by_id["no-template"].dead_letter_error_description
    assert "marketing" in by_id["no-sender"].dead_letter_error_description
    assert "not_after" in by_id["too-late"].dead_letter_error_description
    assert acs.mailbox.messages() == []


async def test_the_same_event_published_twice_yields_one_email(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    event = parse_event(_event("order-twice"))
    await publisher.publish(event)
    await publisher.publish(event)
    await publisher.publish(parse_event(_event("order-marker")))
    mails = await acs.mailbox.wait_for(count=2, timeout=20)
    await servicebus.wait_until_empty("notifications", timeout=20)
    ids = sorted(mail.headers[EVENT_ID_HEADER] for mail in acs.mailbox.messages())
    assert ids == ["order-marker", "order-twice"]
    assert len(mails) == 2


async def test_a_delayed_retry_after_acs_faults_sends_exactly_once(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    # every send fails with 503 for a while: quick retries, then a scheduled copy
    acs.faults.fail_rate = 1.0
    acs.faults.fail_statuses = (503,)
    await publisher.publish(parse_event(_event("order-flaky")))
    await servicebus.wait_for("notifications", lambda counts: counts.scheduled == 1, timeout=15)
    acs.faults.fail_rate = 0.0
    (mail,) = await acs.mailbox.wait_for(count=1, timeout=15)
    assert mail.headers[EVENT_ID_HEADER] == "order-flaky"
    await servicebus.wait_until_empty("notifications", timeout=20)
    assert len(acs.mailbox.messages()) == 1


async def test_worker_reports_ready_on_its_health_endpoint(worker: Worker, settings: Settings) -> None:
    status = worker.health()
    assert status.live
    assert status.ready
    assert status.detail["breaker"] == "closed"
