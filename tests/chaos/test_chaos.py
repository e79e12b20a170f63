"""Conservation under faults: every event is sent exactly once or dead-lettered with a reason.

Workers run as real ``postbus worker`` processes (so SIGTERM and SIGKILL are real); both emulators
run in the test process. Locks are short here (5 s) so that work held by a killed worker comes
back quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import EmulatorConfig, QueueCounts, ServiceBusEmulator
from postbus.events import parse_event
from postbus.harness import DemoReport, account, dead_letters, worker_env
from postbus.producers.publisher import Publisher
from postbus.producers.simulate import broken_bodies, holiday_spike
from postbus.records import Outcome, parse_report
from postbus.records.sqlite import SqliteRecordStore
from postbus.records.url import SqliteLocation, parse_record_url
from postbus.settings import load_settings
from postbus.worker.mailer import EVENT_ID_HEADER, operation_id_for
from tests.support import WorkerProcess

# A bounded run: about a minute on an idle 2-core machine; the timeout only stops a hang.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUEUE = {
    "notifications": {
        "MaxDeliveryCount": 10,
        "LockDuration": "PT5S",
        "RequiresDuplicateDetection": True,
        "DuplicateDetectionHistoryTimeWindow": "PT10M",
        "DeadLetteringOnMessageExpiration": True,
        "DefaultMessageTimeToLive": "P1D",
    }
}
FAST_RETRIES = {"retry_backoff_base_seconds": "0.2", "retry_backoff_cap_seconds": "2"}
# worker_env starts from a clean environment: stopping a worker need not wait for link keep-alives.
NO_KEEP_ALIVE = {"servicebus_keep_alive_seconds": "0"}


@pytest.fixture
async def servicebus() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator(config=EmulatorConfig.from_queues(QUEUE)) as emulator:
        yield emulator


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes that are always reaped, whatever the test did."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], name: str) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"{name}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.reap()


def _env(sb: ServiceBusEmulator, acs: EmailEmulator, **extra: str) -> dict[str, str]:
    # The namespace has only the notifications queue: no report consumer (it would log that the queue is missing).
    return worker_env(
        sb, acs, quota=0, concurrency=8, reports_queue="", **{**FAST_RETRIES, **NO_KEEP_ALIVE, **extra}
    )


async def _publish(sb: ServiceBusEmulator, events: list[Any], raw: list[Any] | None = None) -> None:
    settings = load_settings(servicebus_connection_string=sb.connection_string)
    # No publish checks: the spike holds events the worker must dead-letter.
    async with Publisher.from_settings(settings, check=None) as p:
        await p.publish_many(events)
        if raw:
            await p.publish_raw(raw)


def _order(event_id: str, **fields: Any) -> Any:
    from postbus.worker.rendering import TemplateRenderer

    data = TemplateRenderer().sample_data("order.confirmation")
    return parse_event(
        {
            "id": event_id,
            "type": "order.confirmation",
            "to": ["jane@example.com"],
            "sender": "orders",
            "data": data,
            **fields,
        }
    )


def _sent_ids(acs: EmailEmulator) -> Counter[str]:
    return Counter(mail.headers.get(EVENT_ID_HEADER, "") for mail in acs.mailbox.messages())


async def _drain_with_a_new_worker(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, spawn: Callable[..., WorkerProcess]
) -> WorkerProcess:
    """Start a second worker, wait until the queue is empty, stop it; returns it for its log."""
    second = spawn(_env(servicebus, acs), "second")
    try:
        await servicebus.wait_until_empty("notifications", timeout=60)
    finally:
        await asyncio.to_thread(second.terminate)
    return second


async def test_sigterm_with_messages_in_flight_loses_none(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, spawn: Callable[..., WorkerProcess]
) -> None:
    # Given a worker busy with slow sends and a grace period shorter than they take
    acs.faults.latency_ms = 1500
    first = spawn(_env(servicebus, acs, shutdown_grace_seconds="0.3"), "first")
    await _publish(servicebus, [_order(f"order-{i}") for i in range(24)])
    await servicebus.wait_for("notifications", lambda counts: counts.locked >= 8, timeout=30)
    # When it is told to stop
    exit_code = await asyncio.to_thread(first.terminate)
    # Then it exits cleanly, having abandoned what it could not finish, and nothing is lost
    assert exit_code == 0, first.log()
    assert "worker stopped" in first.log()
    assert "abandoned_on_shutdown" in first.log()
    acs.faults.latency_ms = 0
    await _drain_with_a_new_worker(servicebus, acs, spawn)
    assert _sent_ids(acs) == Counter({f"order-{i}": 1 for i in range(24)})
    assert servicebus.counts("notifications").dead_lettered == 0


async def test_a_crash_between_send_and_complete_yields_one_email(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, spawn: Callable[..., WorkerProcess]
) -> None:
    # Given a worker whose completions are slow to be confirmed
    servicebus.faults.settle_delay = 3.0
    first = spawn(_env(servicebus, acs), "first")
    await _publish(servicebus, [_order("order-crash")])
    # When it is killed after ACS accepted the email but before Service Bus took the completion
    await acs.mailbox.wait_for(count=1, timeout=30)
    await asyncio.to_thread(first.kill)
    servicebus.faults.settle_delay = 0.0
    # Then the redelivered message is recognised as already sent
    second = await _drain_with_a_new_worker(servicebus, acs, spawn)
    assert _sent_ids(acs) == Counter({"order-crash": 1})
    assert "already_sent" in second.log()
    assert servicebus.counts("notifications").dead_lettered == 0


async def test_a_crash_after_the_send_then_a_redelivery_past_not_after_is_not_dead_lettered(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, spawn: Callable[..., WorkerProcess]
) -> None:
    # Given an appointment reminder sent shortly before its not_after, by a worker that is killed
    # before Service Bus took the completion
    servicebus.faults.settle_delay = 3.0
    first = spawn(_env(servicebus, acs), "first")
    not_after = datetime.now(UTC) + timedelta(seconds=12)
    await _publish(servicebus, [_order("order-deadline", not_after=not_after.isoformat())])
    await acs.mailbox.wait_for(count=1, timeout=12)
    await asyncio.to_thread(first.kill)
    servicebus.faults.settle_delay = 0.0
    # When the message comes back only after its deadline (a deadline passing is the condition)
    await asyncio.sleep((not_after - datetime.now(UTC)).total_seconds() + 0.5)
    second = await _drain_with_a_new_worker(servicebus, acs, spawn)
    # Then ACS is asked before the deadline is checked: one email, reported already sent, and no
    # Expired dead letter for an email that went out
    assert _sent_ids(acs) == Counter({"order-deadline": 1})
    assert "already_sent" in second.log()
    assert servicebus.counts("notifications").dead_lettered == 0


async def test_a_worker_killed_between_send_and_record_write_ends_with_one_record(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, spawn: Callable[..., WorkerProcess]
) -> None:
    location = parse_record_url(os.environ["POSTBUS_RECORD_URL"])
    assert isinstance(location, SqliteLocation)
    async with SqliteRecordStore(location.path):
        pass  # the file and its schema exist before the worker starts
    # Given a worker whose record write cannot get the file's write lock (this test holds it)
    blocker = sqlite3.connect(location.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        first = spawn(_env(servicebus, acs), "first")
        await _publish(servicebus, [_order("order-unrecorded")])
        # When it is killed after ACS accepted the email, while it waits to write the record
        await acs.mailbox.wait_for(count=1, timeout=30)
        await asyncio.to_thread(first.kill)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    op = operation_id_for("order-unrecorded", namespace=load_settings().operation_namespace)
    async with SqliteRecordStore(location.path) as store:
        assert await store.get(op) is None
        # and ACS's delivery report came before any worker wrote the record
        delivered_at = datetime.now(UTC)
        report = {
            "id": "report-unrecorded",
            "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
            "eventTime": delivered_at.isoformat(),
            "data": {"recipient": "jane@example.com", "messageId": op, "status": "Delivered"},
        }
        await store.write(parse_report(json.dumps(report)).as_write())
        # Then the redelivered message is recognised as sent, and the record joins both stories
        second = await _drain_with_a_new_worker(servicebus, acs, spawn)
        assert "already_sent" in second.log()
        (record,) = await store.by_event("order-unrecorded")
    assert _sent_ids(acs) == Counter({"order-unrecorded": 1})
    assert record.operation_id == op
    assert record.outcome is Outcome.DELIVERED
    assert record.delivered_at == delivered_at
    assert record.type == "order.confirmation"
    assert record.accepted_at is not None


async def test_two_workers_under_faults_send_every_event_once_or_dead_letter_it(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, spawn: Callable[..., WorkerProcess]
) -> None:
    # Given 2,000 events, ACS failing 10% of sends with 5xx, 429 bursts and latency jitter
    spike = holiday_spike(2000, seed=11, start=datetime.now(UTC), invalid_ratio=0.01, lead_seconds=3)
    broken = broken_bodies(10, seed=11)
    expected = {item.event.id: item.expect for item in spike} | {
        wire.message_id: "InvalidEvent" for wire in broken
    }
    acs.faults.fail_rate = 0.1
    acs.faults.latency_ms = 5
    acs.faults.jitter_ms = 20
    workers = [spawn(_env(servicebus, acs), f"worker-{n}") for n in range(2)]
    stop_bursts = asyncio.Event()

    async def throttle_bursts() -> None:
        # A handful of 429 bursts during the run (endless bursts would starve the last message forever).
        for _ in range(8):
            if stop_bursts.is_set():
                return
            acs.faults.throttle_next(5, retry_after=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_bursts.wait(), timeout=3)

    bursts = asyncio.create_task(throttle_bursts())
    try:
        await _publish(servicebus, list(spike), broken)
        # When one Service Bus connection drop and one SIGKILL hit mid-run
        await acs.mailbox.wait_for(count=400, timeout=60)
        dropped = servicebus.faults.drop_connections()
        await acs.mailbox.wait_for(count=900, timeout=60)
        await asyncio.to_thread(workers[0].kill)

        def drained(counts: QueueCounts) -> bool:
            # An email is stored before its message is completed, so a queue change follows the last one.
            settled = len(acs.mailbox) + counts.dead_lettered >= len(expected)
            return settled and counts.active + counts.scheduled + counts.locked + counts.deferred == 0

        try:
            await servicebus.wait_for("notifications", drained, timeout=90)
        except TimeoutError:
            sent = Counter(mail.headers.get(EVENT_ID_HEADER, "") for mail in acs.mailbox.messages())
            missing = [event_id for event_id in expected if event_id not in sent][:10]
            state = f"{servicebus.counts('notifications')}, {len(sent)} sent, not sent (first 10): {missing}"
            raise AssertionError(f"not drained within 90 s: {state}") from None
    finally:
        stop_bursts.set()
        await bursts
        await asyncio.to_thread(workers[1].terminate)
    # Then every event id is in the mailbox exactly once or dead-lettered with its reason, and nothing else
    report = DemoReport(published=len(expected))
    sent = [mail.headers.get(EVENT_ID_HEADER, "") for mail in acs.mailbox.messages()]
    account(report, expected, sent, await dead_letters(servicebus))
    assert report.problems == [], report.problems[:10]
    assert acs.stats()["throttled"] > 0
    # And the connection cut, which the workers recovered from, left no error lines or tracebacks
    lines = [json.loads(line) for w in workers for line in w.log().splitlines() if line.startswith("{")]
    # (the SDK sometimes reconnects inside a receive, so whether the worker logged a reconnect of its
    # own depends on timing; that the cut happened does not)
    assert dropped >= len(workers)
    noisy = [line for line in lines if line["level"] in ("error", "critical") or "exception" in line]
    assert noisy == [], noisy[:3]
