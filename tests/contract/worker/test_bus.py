"""The Service Bus adapter against the emulator through the real SDK: lock renewal scope, settlement, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from postbus.bus import (
    ConnectionLost,
    LockLost,
    QueueLinks,
    QueueNotFound,
    ServiceBusConnection,
    ServiceBusSource,
)
from postbus.emulators.servicebus import EmulatorConfig, ServiceBusEmulator
from postbus.events import WireMessage
from postbus.reasons import DeadLetterReason
from postbus.settings import load_settings
from postbus.worker.mailer import FakeMailer
from postbus.worker.runner import Worker

LOCK_SECONDS = 3.0
CONFIG = EmulatorConfig.from_queues({"work": {"LockDuration": "PT3S", "MaxDeliveryCount": 10}})
WORK = WireMessage(body=b"slow work", message_id="work-1", subject="work")


@pytest.fixture
async def emulator() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator(CONFIG) as started:
        yield started


@pytest.fixture
async def connection(emulator: ServiceBusEmulator) -> AsyncIterator[ServiceBusConnection]:
    settings = load_settings(servicebus_connection_string=emulator.connection_string, queue="work")
    async with ServiceBusConnection.from_settings(settings, purpose="the test") as opened:
        yield opened


@pytest.fixture
async def links(connection: ServiceBusConnection) -> AsyncIterator[QueueLinks]:
    opened = await ServiceBusSource(connection, "work").open()
    try:
        await opened.send(WORK)
        yield opened
    finally:
        await opened.close()


async def test_a_lock_is_kept_for_as_long_as_the_handler_works(
    emulator: ServiceBusEmulator, links: QueueLinks
) -> None:
    (delivery,) = await links.receive(1, max_wait=5)
    first_expiry = delivery.locked_until
    assert first_expiry is not None
    async with links.keep_locked(delivery):
        await asyncio.sleep(LOCK_SECONDS * 1.5)  # the handler's work, longer than one lock
        assert datetime.now(UTC) > first_expiry
        await links.complete(delivery)  # raises LockLost if the lock had lapsed
    assert emulator.counts("work").total == 0


async def test_renewal_ends_with_the_handler_so_an_unsettled_message_comes_back(
    emulator: ServiceBusEmulator, links: QueueLinks
) -> None:
    (delivery,) = await links.receive(1, max_wait=5)
    async with links.keep_locked(delivery):
        await asyncio.sleep(LOCK_SECONDS * 1.5)  # renewed at least once
    # The handler gave up without settling (say its complete failed): the lock lapses and the
    # message comes back, instead of staying locked until a renewal limit minutes away.
    (again,) = await links.receive(1, max_wait=LOCK_SECONDS * 3)
    assert again.message_id == delivery.message_id
    assert again.delivery_count == 1
    await links.complete(again)
    # The first delivery's lock is gone: settling it now is a lost lock, not an SDK exception.
    with pytest.raises(LockLost):
        await links.complete(delivery)
    assert emulator.counts("work").total == 0


async def test_a_dead_letter_carries_a_reason_from_the_closed_list_and_a_bounded_description(
    connection: ServiceBusConnection, links: QueueLinks
) -> None:
    (delivery,) = await links.receive(1, max_wait=5)
    await links.dead_letter(delivery, reason=DeadLetterReason.EXPIRED, description="x" * 5000)
    dead_letters = await QueueLinks(connection, "work", dead_letters=True, send=False).open()
    try:
        (dead,) = await dead_letters.peek(10)
    finally:
        await dead_letters.close()
    assert (dead.message_id, dead.dead_letter_reason) == ("work-1", "Expired")
    assert dead.dead_letter_description == "x" * 1024


async def test_a_queue_that_does_not_exist_is_a_refusal_not_an_outage(
    connection: ServiceBusConnection,
) -> None:
    with pytest.raises(QueueNotFound, match="no-such-queue"):
        await QueueLinks(connection, "no-such-queue").open()


async def test_closed_links_fail_as_a_lost_connection(links: QueueLinks) -> None:
    (delivery,) = await links.receive(1, max_wait=5)
    await links.close()
    with pytest.raises(ConnectionLost):
        await links.complete(delivery)
    with pytest.raises(ConnectionLost):
        await links.receive(1, max_wait=0.1)


async def test_a_worker_on_a_queue_that_does_not_exist_stops_with_one_line(
    emulator: ServiceBusEmulator,
) -> None:
    settings = load_settings(
        servicebus_connection_string=emulator.connection_string, queue="no-such-queue", health_port=0
    )
    worker = Worker(settings, mailer=FakeMailer())
    with pytest.raises(QueueNotFound) as caught:
        await asyncio.wait_for(worker.run(asyncio.Event()), timeout=30)
    # No reconnect can fix a wrong name: the CLI prints this one line and exits non-zero.
    assert "no-such-queue" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert worker.counts["reconnects"] == 0


async def test_the_socket_timeout_setting_reaches_the_sdk_connections_of_receiver_and_sender(
    emulator: ServiceBusEmulator,
) -> None:
    # The SDK reads socket_timeout from each receiver and sender, not from the client's options
    # (there it is silently ignored); it is the period of every read, so of settlement polling.
    settings = load_settings(
        servicebus_connection_string=emulator.connection_string, queue="work", servicebus_socket_timeout=0.03
    )
    async with ServiceBusConnection.from_settings(settings, purpose="the test") as connection:
        links = await ServiceBusSource(connection, "work").open()
        try:
            await links.send(WORK)
            (delivery,) = await links.receive(1, max_wait=5)
            await links.complete(delivery)
            for handler in (links.receiver, links.sender):
                assert handler._config.socket_timeout == 0.03
                assert handler._handler._connection._socket_timeout == 0.03
        finally:
            await links.close()
    assert emulator.counts("work").total == 0
