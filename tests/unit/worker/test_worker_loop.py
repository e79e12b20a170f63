"""The worker loop over an in-memory broker: receive, process, settle, one line; reconnects and the stop path."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from postbus.bus import BusBusy, InMemoryBroker
from postbus.events import WireMessage, encode, parse_event
from postbus.logs import capture_lines, get_logger
from postbus.reasons import DeadLetterReason
from postbus.settings import Settings
from postbus.worker import runner
from postbus.worker.errors import SystemicError
from postbus.worker.mailer import FakeMailer, SendResult
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
        "sender": "orders",
        "data": _renderer.sample_data("order.confirmation"),
    }
    document.update(overrides)
    return encode(parse_event(document))


@contextlib.asynccontextmanager
async def running(worker: Worker, broker: InMemoryBroker) -> AsyncIterator[asyncio.Event]:
    """Run ``worker`` until the block ends (then stop it and wait for its summary)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await broker.wait_for(lambda: broker.opened > 0 or task.done(), timeout=10)
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def _lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def test_a_message_is_sent_completed_and_logged_once_with_its_timings(settings: Settings) -> None:
    # Given a queue holding one order confirmation
    broker, mailer = InMemoryBroker(), FakeMailer()
    broker.send(_order("order-1"))
    worker = Worker(settings, source=broker, mailer=mailer, renderer=_renderer)
    with capture_lines() as logs:
        async with running(worker, broker):
            # When the worker has handled it
            await broker.join(timeout=10)
    # Then it was sent once, completed, and told in one canonical line
    assert [message.message_id for message in broker.completed] == ["order-1"]
    assert len(mailer.sent) == 1
    (line,) = _lines(logs, "message processed")
    assert (line["outcome"], line["event_id"], line["type"], line["tenant"], line["attempt"]) == (
        "sent",
        "order-1",
        "order.confirmation",
        "contoso",
        0,
    )
    assert line["recipient_domain"] == "example.com"
    assert 0 <= line["gate_wait_ms"] <= line["duration_ms"]
    assert 0 <= line["acs_ms"] <= line["duration_ms"]
    (started,) = _lines(logs, "worker starting")
    assert (started["quota_per_minute"], started["quota_per_hour"]) == (None, None)
    (stopped,) = _lines(logs, "worker stopped")
    assert stopped["sent"] == 1


async def test_an_unreadable_event_is_dead_lettered_and_its_line_names_the_event(settings: Settings) -> None:
    # Given a body that is JSON with an id but breaks the contract
    body = json.dumps({"id": "order-9", "type": "order.confirmation", "tenant": "contoso", "to": []}).encode()
    broker = InMemoryBroker()
    broker.send(WireMessage(body=body, message_id="order-9", subject="order.confirmation"))
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer)
    with capture_lines() as logs:
        async with running(worker, broker):
            await broker.join(timeout=10)
    # Then it is dead-lettered as InvalidEvent, and support can find its line by event id
    (dead,) = broker.dead_lettered
    assert dead.reason is DeadLetterReason.INVALID_EVENT
    (line,) = _lines(logs, "message processed")
    assert (line["outcome"], line["reason"]) == ("dead_lettered", "InvalidEvent")
    assert (line["event_id"], line["type"], line["tenant"]) == ("order-9", "order.confirmation", "contoso")
    assert "attempt" not in line


async def test_the_message_context_is_bound_for_every_line_of_its_handling(settings: Settings) -> None:
    class Chatty(FakeMailer):
        async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
            get_logger("postbus.test").info("inside the send")
            return await super().send(payload, operation_id=operation_id)

    broker = InMemoryBroker()
    broker.send(_order("order-2"))
    worker = Worker(settings, source=broker, mailer=Chatty(), renderer=_renderer)
    with capture_lines() as logs:
        async with running(worker, broker):
            await broker.join(timeout=10)
    (inside,) = _lines(logs, "inside the send")
    assert (inside["message_id"], inside["delivery_count"]) == ("order-2", 0)
    (stopped,) = _lines(logs, "worker stopped")
    assert "message_id" not in stopped  # bound per message, not per process


async def test_broken_links_are_replaced_counted_and_nothing_is_lost(settings: Settings) -> None:
    broker = InMemoryBroker()
    broker.fail_receives(times=1)
    with captured_telemetry(settings) as captured:
        worker = Worker(
            settings, source=broker, mailer=FakeMailer(), renderer=_renderer, telemetry=captured.telemetry
        )
        async with running(worker, broker):
            # When the first receive fails, the worker opens new links and goes on
            await broker.wait_for(lambda: broker.opened == 2, timeout=10)
            broker.send(_order("order-3"))
            await broker.join(timeout=10)
        points = captured.metric("postbus.reconnects")
    assert [message.message_id for message in broker.completed] == ["order-3"]
    assert worker.counts["reconnects"] == 1
    assert [(point.attributes, point.value) for point in points] == [({"cause": "receive_failed"}, 1)]


async def test_a_receive_that_spins_instead_of_waiting_is_replaced(settings: Settings) -> None:
    broker = InMemoryBroker()
    broker.spin_receives(1)
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer)
    async with running(worker, broker):
        await broker.wait_for(lambda: broker.opened == 2, timeout=10)
    assert worker.counts["stalled_receives"] == 1


async def test_a_receive_that_waits_for_messages_is_kept(settings: Settings) -> None:
    broker = InMemoryBroker()
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer)
    async with running(worker, broker):
        await broker.wait_for(lambda: broker.receives >= 2, timeout=10)
    assert (worker.counts["stalled_receives"], broker.opened) == (0, 1)


async def test_a_stop_during_the_reconnect_pause_takes_the_one_stop_path(settings: Settings) -> None:
    # Given a worker whose links broke, pausing before it opens new ones
    broker = InMemoryBroker()
    worker = Worker(settings, source=broker, mailer=FakeMailer(), renderer=_renderer)
    with capture_lines() as logs:
        async with running(worker, broker):
            broker.fail_receives(times=1)
            await broker.wait_for(lambda: broker.closed == 1, timeout=10)
            # When SIGTERM arrives now (the block's end sets stop)
    # Then the worker stops without reopening and writes its summary line
    assert broker.opened == 1
    (stopped,) = _lines(logs, "worker stopped")
    assert stopped["reconnects"] == 1
    assert stopped["grace_seconds"] == 5


async def test_a_stop_during_the_reconnect_drain_gives_work_the_shutdown_grace(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a send that takes longer than the reconnect grace (but well inside the shutdown grace)
    monkeypatch.setattr(runner, "RECONNECT_GRACE", 1.0)
    sending = asyncio.Event()

    class Slow(FakeMailer):
        async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
            sending.set()
            await asyncio.sleep(runner.RECONNECT_GRACE * 2)  # the ACS call's latency
            return await super().send(payload, operation_id=operation_id)

    broker = InMemoryBroker()
    broker.send(_order("order-4"))
    worker = Worker(settings, source=broker, mailer=Slow(), renderer=_renderer)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(sending.wait(), timeout=10)
    # When the links break while it sends, and SIGTERM arrives as the worker drains them
    broker.fail_receives(times=1)
    await broker.wait_for(lambda: not broker.faults.receive_errors, timeout=10)
    # Well inside the reconnect grace, which has just begun.
    await asyncio.sleep(runner.RECONNECT_GRACE * 0.3)
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    # Then the send finished and its message was completed, not abandoned
    assert [message.message_id for message in broker.completed] == ["order-4"]
    assert worker.counts["abandoned_on_reconnect"] == worker.counts["abandoned_on_shutdown"] == 0
    assert broker.opened == 1


async def test_work_that_outlasts_the_shutdown_grace_is_abandoned(settings: Settings) -> None:
    release = asyncio.Event()

    class Stuck(FakeMailer):
        async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
            await release.wait()
            return await super().send(payload, operation_id=operation_id)

    broker = InMemoryBroker()
    broker.send(_order("order-5"))
    worker = Worker(
        settings.model_copy(update={"shutdown_grace_seconds": 0.1}),
        source=broker,
        mailer=Stuck(),
        renderer=_renderer,
    )
    async with running(worker, broker):
        await broker.wait_for(lambda: bool(broker.locked), timeout=10)
    release.set()
    assert worker.counts["abandoned_on_shutdown"] == 1
    assert [message.message_id for message in broker.active] == ["order-5"]
    assert broker.active[0].delivery_count == 1


async def test_a_systemic_failure_opens_the_breaker_and_the_next_message_probes(settings: Settings) -> None:
    # Given ACS refusing the credentials once
    broker = InMemoryBroker()
    broker.send(_order("order-6"))
    mailer = FakeMailer(failures=[SystemicError("ACS rejected the credentials (401)")])
    worker = Worker(
        settings.model_copy(update={"breaker_cooldown_seconds": 0.1, "breaker_cooldown_max_seconds": 0.2}),
        source=broker,
        mailer=mailer,
        renderer=_renderer,
    )
    async with running(worker, broker):
        # Then the message is abandoned (never dead-lettered), and after the cool-down it probes and is sent
        await broker.wait_for(lambda: len(broker.completed) == 1, timeout=10)
    assert (worker.counts["abandoned"], worker.counts["sent"]) == (1, 1)
    assert broker.dead_lettered == []
    assert worker.ready is False  # stopped
    assert worker.health().detail["breaker"] == "closed"
    # /readyz carries the counts `postbus console` adds up across workers
    assert worker.health().detail["counts"] == {"abandoned": 1, "sent": 1}


async def test_health_is_strict_json_when_the_gate_is_unlimited(settings: Settings) -> None:
    status = Worker(settings, source=InMemoryBroker(), mailer=FakeMailer()).health()
    assert status.detail["send_rate"] is None
    json.dumps(status.detail, allow_nan=False)


async def test_a_settlement_service_bus_refuses_is_reported_on_the_line(settings: Settings) -> None:
    # Given a queue whose next settlement fails
    broker, mailer = InMemoryBroker(), FakeMailer()
    broker.fail_settlements(BusBusy("complete the message", "namespace busy"))
    broker.send(_order("order-7"))
    worker = Worker(settings, source=broker, mailer=mailer, renderer=_renderer)
    with capture_lines() as logs:
        async with running(worker, broker):
            await broker.wait_for(lambda: bool(mailer.sent) and not broker.faults.settle_errors, timeout=10)
    # Then the email went out, the message stays locked (its lock would expire and bring it back,
    # where its operation id keeps it from being sent twice) and the line says why
    (line,) = _lines(logs, "message processed")
    assert (line["outcome"], line["settle_error"]) == (
        "sent",
        "could not complete the message: namespace busy",
    )
    assert [message.message_id for message in broker.locked] == ["order-7"]
    assert broker.completed == []
