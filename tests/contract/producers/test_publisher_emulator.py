"""The publisher over the real azure-servicebus SDK against the Service Bus emulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessageBatch, ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient

from postbus.bus import delivery_from
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.errors import InvalidEvent
from postbus.events import PROP_ATTEMPT, PROP_FIRST_ENQUEUED, PROP_SCHEMA, SCHEMA
from postbus.logs import capture_lines
from postbus.producers.outgoing import prepare
from postbus.producers.publisher import Publisher, PublishError, SyncPublisher
from postbus.producers.simulate import broken_bodies, checkout_spike, holiday_spike
from postbus.settings import Settings, load_settings

QUEUE = "notifications"
# Now, not a fixed date: the publisher refuses events whose not_after (derived from it) has passed.
START = datetime.now(UTC).replace(microsecond=0)
# Fast SDK retries: its default back-off (1.6 s, 3.2 s, 6.4 s) would dominate the fault tests.
FAST_RETRY = {"retry_total": 2, "retry_backoff_factor": 0.05, "retry_backoff_max": 0.2}


def doc(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order.confirmation",
        "to": ["a@example.com"],
        "sender": "orders",
    } | overrides


@pytest.fixture
async def emulator() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator() as sb:
        yield sb


@pytest.fixture
def settings(emulator: ServiceBusEmulator) -> Settings:
    return load_settings(servicebus_connection_string=emulator.connection_string, queue=QUEUE)


async def receive(
    emulator: ServiceBusEmulator, count: int, *, within: float = 20.0
) -> list[ServiceBusReceivedMessage]:
    """Receive (and delete) exactly ``count`` messages, waiting up to ``within`` seconds for them to appear."""
    messages: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + within
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        # With prefetch the receiver can do without a keep-alive task, whose end its close would await.
        receiver = client.get_queue_receiver(
            QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=count, keep_alive=0
        )
        async with receiver:
            while len(messages) < count:
                if time.monotonic() > deadline:
                    pytest.fail(f"received {len(messages)} of {count} messages in {within} s")
                batch = await receiver.receive_messages(
                    max_message_count=count - len(messages), max_wait_time=0.5
                )
                messages.extend(batch)
    return messages


def total(emulator: ServiceBusEmulator) -> int:
    counts = emulator.counts(QUEUE)
    return counts.active + counts.scheduled + counts.dead_lettered


async def test_one_event_arrives_with_the_contract_properties(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    async with Publisher.from_settings(settings) as publisher:
        message_id = await publisher.publish(doc("order-1001", tenant="contoso"))
    assert message_id == "order-1001"
    [message] = await receive(emulator, 1)
    assert message.message_id == "order-1001"
    assert message.subject == "order.confirmation"
    assert message.content_type == "application/json"
    decoded = delivery_from(message).decode()
    assert decoded.event.id == "order-1001"
    assert decoded.event.tenant == "contoso"
    assert decoded.attempt == 0
    assert decoded.application_properties[PROP_SCHEMA] == SCHEMA
    assert decoded.application_properties[PROP_ATTEMPT] == 0
    first = decoded.first_enqueued
    assert first is not None
    assert abs(datetime.now(UTC) - first) < timedelta(minutes=1)
    assert set(decoded.application_properties) == {PROP_SCHEMA, PROP_ATTEMPT, PROP_FIRST_ENQUEUED}


async def test_many_events_arrive_in_order_over_one_reused_connection(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    items = checkout_spike(40, seed=1, start=START)
    async with Publisher.from_settings(settings) as publisher:
        ids = await publisher.publish_many(items[:25])
        ids += await publisher.publish_many(items[25:])
        # One client, one sender: one AMQP connection for both calls.
        assert emulator.faults.drop_connections() == 1
    assert ids == [item.event.id for item in items]
    received = await receive(emulator, 40)
    assert [m.message_id for m in received] == ids
    assert [delivery_from(m).decode().event for m in received] == [item.event for item in items]


async def test_send_at_schedules_the_message_until_it_is_due(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=1.5)
    async with Publisher.from_settings(settings) as publisher:
        await publisher.publish(doc("appt-1", type="appointment.reminder", sender="care"), send_at=send_at)
        counts = emulator.counts(QUEUE)
        assert (counts.scheduled, counts.active) == (1, 0)
    [message] = await receive(emulator, 1)
    assert message.message_id == "appt-1"
    expected = send_at.replace(microsecond=send_at.microsecond // 1000 * 1000)
    assert message.scheduled_enqueue_time_utc == expected


async def test_a_large_set_is_split_into_several_size_limited_batches(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    items = holiday_spike(400, seed=2, start=START, lead_seconds=600)
    with capture_lines() as logs:
        # check=None: the spike holds events only the worker refuses (expired, unknown alias).
        async with Publisher.from_settings(settings, check=None) as publisher:
            await publisher.publish_many(items)
    assert publisher.batches_sent >= 2
    [line] = [entry for entry in logs if entry["event"] == "publish"]
    assert (line["count"], line["batches"], line["queue"]) == (400, publisher.batches_sent, QUEUE)
    assert line["scheduled"] == sum(1 for item in items if item.send_at is not None)
    assert total(emulator) == 400


async def test_a_batch_the_sdk_sizes_as_exactly_full_still_goes_through(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    # The SDK copies the first message id onto the batch envelope after sizing the batch, so a batch
    # it reports as exactly full is a few bytes over the link limit on the wire. Build such a pair.
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_sender(QUEUE, keep_alive=0) as sender,
    ):
        limit = (await sender.create_message_batch()).max_size_in_bytes

    def sized(event_id: str, pad: int) -> Any:
        [item] = prepare([doc(event_id, data={"pad": "x" * pad})])
        return item

    batch = ServiceBusMessageBatch(max_size_in_bytes=limit)
    batch.add_message(sized("fill-a", limit // 2 - 600).message)
    probe = limit // 2 - 1200
    batch.add_message(sized("fill-b", probe).message)
    exact = probe + (limit - batch.size_in_bytes)
    full = ServiceBusMessageBatch(max_size_in_bytes=limit)
    full.add_message(sized("fill-a", limit // 2 - 600).message)
    full.add_message(sized("fill-b", exact).message)
    assert full.size_in_bytes == limit
    async with Publisher.from_settings(settings) as publisher:
        ids = await publisher.publish_many(
            [doc("fill-a", data={"pad": "x" * (limit // 2 - 600)}), doc("fill-b", data={"pad": "x" * exact})]
        )
    assert sorted(m.message_id for m in await receive(emulator, 2)) == sorted(ids)


async def test_max_batch_bytes_caps_each_batch(emulator: ServiceBusEmulator, settings: Settings) -> None:
    items = checkout_spike(60, seed=3, start=START)
    async with Publisher.from_settings(settings, max_batch_bytes=16 * 1024) as publisher:
        await publisher.publish_many(items)
    size = sum(len(item.event.to_json()) for item in items)
    assert publisher.batches_sent >= size // (16 * 1024) + 1
    assert len(await receive(emulator, 60)) == 60


async def test_an_invalid_event_in_a_list_sends_nothing(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    async with Publisher.from_settings(settings) as publisher:
        with pytest.raises(InvalidEvent, match=r"events\[2\]: sender"):
            await publisher.publish_many([doc("a"), doc("b"), doc("c", sender="Not An Alias")])
        await publisher.publish(doc("after"))  # the publisher is still usable
    [message] = await receive(emulator, 1)
    assert message.message_id == "after"


async def test_an_event_over_the_message_size_limit_fails_before_anything_is_sent(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    huge = doc("huge-1", data={"blob": "x" * 400_000})
    async with Publisher.from_settings(settings) as publisher:
        with pytest.raises(PublishError) as caught:
            await publisher.publish_many([doc("a"), huge, doc("b")])
    assert "event 'huge-1' is larger than the" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert total(emulator) == 0


async def test_a_missing_queue_is_one_line_naming_queue_and_namespace(emulator: ServiceBusEmulator) -> None:
    settings = load_settings(servicebus_connection_string=emulator.connection_string, queue="no-such-queue")
    async with Publisher.from_settings(settings) as publisher:
        with pytest.raises(PublishError) as caught:
            await publisher.publish(doc("a"))
    assert str(caught.value) == f"queue 'no-such-queue' does not exist in 127.0.0.1:{emulator.port}"
    assert not caught.value.retryable


async def test_a_busy_moment_is_ridden_out_and_a_busy_spell_is_a_retryable_error(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    async with Publisher.from_settings(settings, client_options=FAST_RETRY) as publisher:
        await publisher.publish(doc("warm-up"))
        emulator.faults.fail_next_sends(1)
        await publisher.publish(doc("after-one-busy"))
        emulator.faults.fail_next_sends(10)
        with pytest.raises(PublishError) as caught:
            await publisher.publish_many([doc("x"), doc("y")])
    assert caught.value.retryable
    assert caught.value.published == ()
    assert str(caught.value).startswith("Service Bus is busy")
    assert [m.message_id for m in await receive(emulator, 2)] == ["warm-up", "after-one-busy"]


async def test_the_properties_hook_adds_application_properties(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with Publisher.from_settings(
        settings, properties_hook=lambda event: {"traceparent": traceparent}
    ) as pub:
        await pub.publish(doc("traced"))
    [message] = await receive(emulator, 1)
    assert delivery_from(message).decode().application_properties["traceparent"] == traceparent


async def test_raw_wire_messages_arrive_byte_for_byte(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    wires = broken_bodies(8, seed=1)
    async with Publisher.from_settings(settings) as publisher:
        assert await publisher.publish_raw(wires) == [wire.message_id for wire in wires]
    received = {m.message_id: b"".join(m.body) for m in await receive(emulator, 8)}
    assert received == {wire.message_id: wire.body for wire in wires}


async def test_concurrent_calls_on_one_publisher_are_serialised_safely(
    emulator: ServiceBusEmulator, settings: Settings
) -> None:
    items = checkout_spike(30, seed=5, start=START)
    async with Publisher.from_settings(settings) as publisher:
        await asyncio.gather(*(publisher.publish(item.event) for item in items))
    assert total(emulator) == 30


@pytest.fixture
def sync_emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator() as sb:
        yield sb


def test_the_sync_publisher_has_the_same_behaviour(sync_emulator: ServiceBusEmulator) -> None:
    settings = load_settings(servicebus_connection_string=sync_emulator.connection_string)
    later = datetime.now(UTC) + timedelta(minutes=10)
    with SyncPublisher.from_settings(settings, max_batch_bytes=8 * 1024) as publisher:
        assert publisher.publish(doc("one")) == "one"
        assert publisher.publish(doc("later"), send_at=later) == "later"
        ids = publisher.publish_many(item.event for item in checkout_spike(20, seed=6, start=START))
        with pytest.raises(InvalidEvent):
            publisher.publish_many([doc("ok"), doc("bad", to=[])])
    assert len(ids) == 20
    assert publisher.batches_sent >= 4
    counts = sync_emulator.counts(QUEUE)
    assert (counts.active, counts.scheduled) == (21, 1)


def test_publish_file_sends_good_lines_and_reports_bad_ones(
    sync_emulator: ServiceBusEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from postbus.cli import COMMANDS, LazyCommand, main

    monkeypatch.setitem(
        COMMANDS, "publish", LazyCommand("postbus.producers.cli:app", "Publish notification events.")
    )
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", sync_emulator.connection_string)
    monkeypatch.setenv("POSTBUS_LOG_LEVEL", "warning")
    good = [item.event for item in checkout_spike(6, seed=7, start=START)]
    lines = [good[0].model_dump_json(by_alias=True), json.dumps(doc("bad-1", to=["x"])), "{oops"]
    lines += [
        json.dumps({"event": json.loads(e.to_json()), "send_at": "2030-01-01T00:00:00Z"}) for e in good[1:3]
    ]
    lines += ["", *(e.model_dump_json(by_alias=True) for e in good[3:])]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        assert main(["publish", "--file", str(path)]) == 1
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "postbus"]:
            root.removeHandler(handler)
    captured = capsys.readouterr()
    assert captured.out.split() == [e.id for e in good]
    # The emulator shares this process: its log lines (JSON) land on the same stderr.
    assert [line for line in captured.err.splitlines() if not line.startswith("{")] == [
        "line 2: to.0.address: not a valid email address: 'x'",
        "line 3: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "published 6, failed 2",
    ]
    counts = sync_emulator.counts(QUEUE)
    assert (counts.active, counts.scheduled) == (4, 2)
