"""Several operations in flight on one connection, as Azure serves them.

The SDK numbers a transfer before it awaits the socket, so concurrent lock renewals, schedules,
peeks and sends on one connection reach the broker with delivery-ids repeated or out of order.
Azure accepts that; these tests fail (connection closed with ``amqp:session:invalid-field``) on a
broker that does not. The ``*_sample`` tests run the logic of Microsoft's ``auto_lock_renew``
samples for azure-servicebus 7.15 (sync and async), with the emulator's connection string and
durations scaled from minutes to seconds.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from azure.servicebus import AutoLockRenewer, ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import AutoLockRenewer as AsyncAutoLockRenewer
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from postbus.emulators.servicebus import ServiceBusEmulator

pytestmark = pytest.mark.timeout(90)

AwaitUntil = Callable[..., Awaitable[None]]
WaitUntil = Callable[..., None]
LOCK = timedelta(seconds=5)  # the "renew" queue's LockDuration


@pytest.fixture
def closed_connections() -> Iterator[list[dict[str, Any]]]:
    """Every ``servicebus.connection_closed`` line the emulator logs during the test."""
    with structlog.testing.capture_logs() as logs:
        closed: list[dict[str, Any]] = []
        yield closed
        closed.extend(line for line in logs if line["event"] == "servicebus.connection_closed")


def _ten_messages() -> list[ServiceBusMessage]:
    return [ServiceBusMessage(f"message: {i}", message_id=str(uuid.uuid4())) for i in range(10)]


class _LockFailures:
    """Renewal failures, except those of a renewal that crossed the test's own settlement.

    A renewal the renewer sends just before the test completes that message can reach the broker
    after the completion and be answered "lock lost" -- in Azure as in the emulator; the samples
    have the same race. Such a failure says nothing about whether locks were kept.
    """

    def __init__(self) -> None:
        self.settling: set[str] = set()
        self.errors: list[BaseException | None] = []

    def record(self, renewable: Any, error: BaseException | None) -> None:
        if renewable.message_id not in self.settling:
            self.errors.append(error)


def _past_the_first_locks(messages: list[Any]) -> Callable[[], bool]:
    """True once every original lock would have expired by a whole lock duration without renewal."""
    deadline = max(msg.locked_until_utc for msg in messages) + LOCK
    return lambda: datetime.now(UTC) > deadline


async def test_ten_messages_registered_at_once_keep_their_locks_async_sample(
    emulator: ServiceBusEmulator, await_until: AwaitUntil, closed_connections: list[dict[str, Any]]
) -> None:
    failures = _LockFailures()

    async def on_failure(renewable: object, error: BaseException | None) -> None:
        failures.record(renewable, error)

    async with AsyncServiceBusClient.from_connection_string(emulator.connection_string) as client:
        async with client.get_queue_sender("renew", keep_alive=0) as sender:
            await sender.send_messages(_ten_messages())
        renewer = AsyncAutoLockRenewer()
        async with client.get_queue_receiver("renew", prefetch_count=10) as receiver:
            received = await receiver.receive_messages(max_message_count=10, max_wait_time=5)
            while len(received) < 10:
                received += await receiver.receive_messages(max_message_count=10, max_wait_time=5)
            for msg in received:
                renewer.register(
                    receiver, msg, max_lock_renewal_duration=30, on_lock_renew_failure=on_failure
                )
            await await_until(_past_the_first_locks(received), within=15, what="the first locks to lapse")
            for msg in received:
                failures.settling.add(msg.message_id)
                await receiver.complete_message(msg)
        await renewer.close()
    assert failures.errors == []
    assert emulator.counts("renew").total == 0
    assert closed_connections == []


def test_ten_messages_registered_at_once_keep_their_locks_sync_sample(
    emulator: ServiceBusEmulator, wait_until: WaitUntil, closed_connections: list[dict[str, Any]]
) -> None:
    failures = _LockFailures()
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("renew", keep_alive=0) as sender:
            sender.send_messages(_ten_messages())
        renewer = AutoLockRenewer()  # renews from its own thread pool: ten renewals at once
        with client.get_queue_receiver("renew", prefetch_count=10) as receiver:
            received = receiver.receive_messages(max_message_count=10, max_wait_time=5)
            while len(received) < 10:
                received += receiver.receive_messages(max_message_count=10, max_wait_time=5)
            for msg in received:
                renewer.register(
                    receiver,
                    msg,
                    max_lock_renewal_duration=30,
                    on_lock_renew_failure=failures.record,
                )
            wait_until(_past_the_first_locks(received), timeout=15, what="the first locks to lapse")
            for msg in received:
                failures.settling.add(msg.message_id)
                receiver.complete_message(msg)  # settling deregisters it from the renewer
        renewer.close()
    assert failures.errors == []
    assert emulator.counts("renew").total == 0
    assert closed_connections == []


async def test_a_renewer_that_sleeps_past_the_lock_reports_the_failure_async_sample(
    emulator: ServiceBusEmulator, await_until: AwaitUntil
) -> None:
    failed = asyncio.Event()

    async def on_failure(_renewable: object, _error: BaseException | None) -> None:
        failed.set()

    async with AsyncServiceBusClient.from_connection_string(emulator.connection_string) as client:
        async with client.get_queue_sender("renew", keep_alive=0) as sender:
            await sender.send_messages(ServiceBusMessage("message"))
        async with AsyncAutoLockRenewer() as renewer:
            # As in the sample: a renewal period longer than the lock, to show the failure path.
            renewer._sleep_time = LOCK.total_seconds() + 1
            async with client.get_queue_receiver("renew", prefetch_count=10) as receiver:
                (msg,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
                renewer.register(receiver, msg, max_lock_renewal_duration=9, on_lock_renew_failure=on_failure)
                await asyncio.wait_for(failed.wait(), timeout=20)
                with pytest.raises(ServiceBusError):  # the sample's "cannot be settled if timed out"
                    await receiver.complete_message(msg)
    assert emulator.counts("renew").active == 1  # the lock lapsed, so the message is back


def test_a_renewer_that_sleeps_past_the_lock_reports_the_failure_sync_sample(
    emulator: ServiceBusEmulator,
) -> None:
    failed = threading.Event()
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("renew", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("message"))
        with AutoLockRenewer() as renewer:
            renewer._sleep_time = LOCK.total_seconds() + 1
            with client.get_queue_receiver("renew", prefetch_count=10) as receiver:
                (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                renewer.register(
                    receiver,
                    msg,
                    max_lock_renewal_duration=9,
                    on_lock_renew_failure=lambda _renewable, _error: failed.set(),
                )
                assert failed.wait(timeout=20)
                with pytest.raises(ServiceBusError):
                    receiver.complete_message(msg)
    assert emulator.counts("renew").active == 1


async def test_schedule_renew_and_peek_all_in_flight_at_once(
    emulator: ServiceBusEmulator, closed_connections: list[dict[str, Any]]
) -> None:
    at = datetime.now(UTC) + timedelta(minutes=10)
    async with (
        AsyncServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_sender("long", keep_alive=0) as sender,
        client.get_queue_receiver("long") as receiver,
    ):
        await sender.send_messages([ServiceBusMessage(f"held {i}") for i in range(5)])
        held = await receiver.receive_messages(max_message_count=5, max_wait_time=5)
        while len(held) < 5:
            held += await receiver.receive_messages(max_message_count=5, max_wait_time=5)
        before = [msg.locked_until_utc for msg in held]
        # Each client's $management link gets several requests before any answer is read.
        results = await asyncio.gather(
            *(sender.schedule_messages(ServiceBusMessage(f"later {i}"), at) for i in range(5)),
            *(receiver.renew_message_lock(msg) for msg in held),
            *(receiver.peek_messages(max_message_count=10, sequence_number=1) for _ in range(5)),
        )
        scheduled, renewed, peeked = results[:5], results[5:10], results[10:]
        assert len({seq for batch in scheduled for seq in batch}) == 5
        assert all(new > old for new, old in zip(renewed, before, strict=True))
        held_seqs = sorted(msg.sequence_number for msg in held)
        for batch in peeked:  # the held five, then whichever schedules had landed
            assert [msg.sequence_number for msg in batch[:5]] == held_seqs
            assert len(batch) <= 10
        for msg in held:
            await receiver.complete_message(msg)
    counts = emulator.counts("long")
    assert (counts.scheduled, counts.active, counts.locked) == (5, 0, 0)
    assert closed_connections == []


async def test_a_hundred_concurrent_sends_through_one_sender(
    emulator: ServiceBusEmulator, closed_connections: list[dict[str, Any]]
) -> None:
    # 100 KB bodies: a write outlasts the socket buffer, so the SDK's sends interleave on the wire.
    # No retries, so a connection the broker closes fails the sends instead of being papered over.
    # The SDK itself may transmit one of these deliveries twice (a coroutine flushing the pending
    # list re-sends a transfer another is still writing); duplicate detection absorbs that here,
    # as it would in Azure.
    ids = [str(uuid.uuid4()) for _ in range(100)]
    body = "x" * 100_000
    async with AsyncServiceBusClient.from_connection_string(
        emulator.connection_string, retry_total=0
    ) as client:
        async with client.get_queue_sender("orders", keep_alive=0) as sender:
            await asyncio.gather(*(sender.send_messages(ServiceBusMessage(body, message_id=i)) for i in ids))
        assert emulator.counts("orders").active == 100
        async with client.get_queue_receiver("orders") as receiver:
            peeked = await receiver.peek_messages(max_message_count=100, sequence_number=1)
    assert sorted(msg.message_id for msg in peeked) == sorted(ids)
    assert closed_connections == []
