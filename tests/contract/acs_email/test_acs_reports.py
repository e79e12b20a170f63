"""The emulator's delivery reports: Event Grid events on a Service Bus queue or a validated webhook.

Sends go through the real azure-communication-email SDK; reports are read back with the real
azure-servicebus SDK and parsed with Postbus's own report parser, so the emulator's events are
exactly what the report consumer accepts.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.servicebus.aio import ServiceBusClient

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.acs_email.reports import DeliveryMix, status_for, worst_status
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.records import DeliveryReport, DeliveryStatus, parse_report

_SENDER = "DoNotReply@contoso.test"


def _message(*recipients: str) -> dict[str, Any]:
    return {
        "senderAddress": _SENDER,
        "recipients": {"to": [{"address": address} for address in recipients]},
        "content": {"subject": "Your appointment", "plainText": "See you at 9."},
    }


@pytest.fixture
async def servicebus() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator() as emulator:
        yield emulator


async def _reports(servicebus: ServiceBusEmulator, count: int) -> list[tuple[DeliveryReport, Any]]:
    await servicebus.wait_for("email-events", lambda counts: counts.active >= count, timeout=20)
    found: list[tuple[DeliveryReport, Any]] = []
    client = ServiceBusClient.from_connection_string(servicebus.connection_string)
    async with client, client.get_queue_receiver("email-events") as receiver:
        while len(found) < count:
            batch = await receiver.receive_messages(max_message_count=count, max_wait_time=5)
            assert batch, f"expected {count} reports, got {len(found)}"
            for message in batch:
                report = parse_report(b"".join(message.body))
                assert isinstance(report, DeliveryReport)
                found.append((report, message))
                await receiver.complete_message(message)
    return found


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
async def test_each_recipient_gets_the_report_its_local_part_asks_for(
    servicebus: ServiceBusEmulator, schema: Any
) -> None:
    recipients = {
        "jane@example.com": DeliveryStatus.DELIVERED,
        "bounce@example.com": DeliveryStatus.BOUNCED,
        "suppressed+7@fabrikam.example": DeliveryStatus.SUPPRESSED,
        "spam@example.org": DeliveryStatus.FILTERED_SPAM,
        "quarantine@example.net": DeliveryStatus.QUARANTINED,
        "Expire@Example.com": DeliveryStatus.EXPIRED,
    }
    async with (
        EmailEmulator(report_servicebus=servicebus.connection_string, report_schema=schema) as acs,
        EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client,
    ):
        poller = await client.begin_send(
            _message(*recipients), operation_id="5b1d6a4e-7f37-4f0c-9d7e-3d6a1b9c2e10"
        )
        await poller.result()
        reports = await _reports(servicebus, len(recipients))
        assert sum(acs.reports_sent.values()) == len(recipients)
    by_domain_status = sorted((r.recipient_domain, r.status) for r, _ in reports)
    assert by_domain_status == sorted(
        (address.rpartition("@")[2].lower(), status) for address, status in recipients.items()
    )
    for report, message in reports:
        assert report.operation_id == "5b1d6a4e-7f37-4f0c-9d7e-3d6a1b9c2e10"
        assert report.envelope == schema
        assert message.content_type == "application/json"
        assert message.application_properties[b"aeg-event-type"] == b"Notification"
    bounced = next(r for r, _ in reports if r.status is DeliveryStatus.BOUNCED)
    assert (bounced.smtp_code, bounced.smtp_status) == (550, "5.1.1")
    assert bounced.mail_server == "mx.example.com"


async def test_a_send_the_emulator_failed_for_suppression_reports_suppressed(
    servicebus: ServiceBusEmulator,
) -> None:
    async with (
        EmailEmulator(report_servicebus=servicebus.connection_string) as acs,
        EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client,
    ):
        poller = await client.begin_send(_message("ann@suppressed.test"))
        with pytest.raises(Exception, match="suppression"):
            await poller.result()
        ((report, _),) = await _reports(servicebus, 1)
    assert report.status is DeliveryStatus.SUPPRESSED


async def test_reports_come_after_the_configured_delay_not_before(servicebus: ServiceBusEmulator) -> None:
    async with (
        EmailEmulator(report_servicebus=servicebus.connection_string, report_delay=30) as acs,
        EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client,
    ):
        await (await client.begin_send(_message("jane@example.com"))).result()
        assert servicebus.counts("email-events").active == 0
        assert acs.reports_sent == {}


async def test_a_webhook_is_validated_then_gets_each_report_as_a_one_event_array() -> None:
    received: list[Any] = []
    validations: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        events = await request.json()
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            code = events[0]["data"]["validationCode"]
            validations.append(code)
            return web.json_response({"validationResponse": code})
        received.extend(events)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/events", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            EmailEmulator(report_webhook=f"http://127.0.0.1:{port}/events") as acs,
            EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client,
        ):
            await (await client.begin_send(_message("bounce@example.com"))).result()
            await _until(lambda: received)
    finally:
        await runner.cleanup()
    assert len(validations) == 1
    (event,) = received
    report = parse_report(json.dumps(event))
    assert isinstance(report, DeliveryReport)
    assert report.status is DeliveryStatus.BOUNCED


async def test_a_webhook_that_does_not_validate_stops_the_emulator_from_starting() -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/events", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(ValueError, match="did not validate the subscription"):
            async with EmailEmulator(report_webhook=f"http://127.0.0.1:{port}/events"):
                pass
    finally:
        await runner.cleanup()


async def _until(condition: Any) -> None:
    from tests.support import eventually

    await eventually(condition)


def test_the_delivery_mix_draws_by_weight_and_local_parts_still_win() -> None:
    mix = DeliveryMix.parse("delivered=0.5,bounced=0.5")
    rng = random.Random(3)
    drawn = [status_for(f"user{n}@example.com", mix=mix, rng=rng) for n in range(400)]
    assert set(drawn) == {"Delivered", "Bounced"}
    assert 150 < drawn.count("Bounced") < 250
    assert status_for("spam@example.com", mix=mix, rng=rng) == "FilteredSpam"
    assert DeliveryMix.parse("bounced=0.02").weights == (("Bounced", 0.02), ("Delivered", 0.98))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("delivered=0.9,lost=0.1", "STATUS one of"),
        ("bounced=2", "between 0 and 1"),
        ("bounced=0.6,suppressed=0.6", "more than 1"),
        ("bounced", "STATUS=SHARE"),
    ],
)
def test_a_bad_delivery_mix_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeliveryMix.parse(text)


async def test_the_mailbox_shows_the_worst_reported_status_of_an_email_live_and_on_request(
    servicebus: ServiceBusEmulator,
) -> None:
    async with (
        EmailEmulator(report_servicebus=servicebus.connection_string) as acs,
        EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client,
        aiohttp.ClientSession() as http,
        http.get(f"{acs.endpoint}/_emulator/events") as stream,
    ):
        assert await stream.content.readline() == b": connected\n"
        await stream.content.readline()
        poller = await client.begin_send(_message("jane@example.com", "bounce@example.com"))
        operation_id = (await poller.result())["id"]

        # Given the email as captured: no report yet
        assert await stream.content.readline() == b"event: added\n"
        added = json.loads((await stream.content.readline()).removeprefix(b"data: "))
        assert (added["operationId"], added["deliveryStatus"]) == (operation_id, None)
        await stream.content.readline()
        # When the reports went out (one delivered, one bounced), the console hears the worse one
        assert await stream.content.readline() == b"event: updated\n"
        updated = json.loads((await stream.content.readline()).removeprefix(b"data: "))
        assert (updated["operationId"], updated["deliveryStatus"]) == (operation_id, "Bounced")
        # And the inspection API says the same in the list and the detail view
        async with http.get(f"{acs.endpoint}/_emulator/messages", params={"summary": "1"}) as response:
            [summary] = await response.json()
        async with http.get(f"{acs.endpoint}/_emulator/messages/{operation_id}") as response:
            detail = await response.json()
        assert summary["deliveryStatus"] == detail["deliveryStatus"] == "Bounced"
        assert sorted(acs.reports_sent.items()) == [("Bounced", 1), ("Delivered", 1)]


def test_the_worst_status_stands_for_an_email_with_several_recipients() -> None:
    assert worst_status(["Delivered"]) == "Delivered"
    assert worst_status(["Delivered", "Quarantined", "Delivered"]) == "Quarantined"
    assert worst_status(["Suppressed", "Bounced", "Delivered"]) == "Bounced"
    assert worst_status(["Bounced", "Failed"]) == "Failed"
