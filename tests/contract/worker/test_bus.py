"""The worker's Service Bus adapter against the emulator through the real SDK: lock renewal scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

from postbus.emulators.servicebus import EmulatorConfig, ServiceBusEmulator
from postbus.worker.bus import ServiceBusPort

LOCK_SECONDS = 3.0
CONFIG = EmulatorConfig.from_queues({"work": {"LockDuration": "PT3S", "MaxDeliveryCount": 10}})


@pytest.fixture
async def links() -> AsyncIterator[tuple[ServiceBusEmulator, ServiceBusReceiver, ServiceBusSender]]:
    async with (
        ServiceBusEmulator(CONFIG) as emulator,
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_receiver("work") as receiver,
        client.get_queue_sender("work") as sender,
    ):
        await sender.send_messages(ServiceBusMessage("slow work"))
        yield emulator, receiver, sender


async def test_a_lock_is_kept_for_as_long_as_the_handler_works(
    links: tuple[ServiceBusEmulator, ServiceBusReceiver, ServiceBusSender],
) -> None:
    emulator, receiver, sender = links
    (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
    first_expiry = message.locked_until_utc
    assert first_expiry is not None
    port = ServiceBusPort(receiver, sender)
    async with port.keep_locked(message):
        await asyncio.sleep(LOCK_SECONDS * 1.5)  # the handler's work, longer than one lock
        assert datetime.now(UTC) > first_expiry
        await port.complete(message)  # raises SettlementFailed if the lock had lapsed
    assert emulator.counts("work").total == 0


async def test_renewal_ends_with_the_handler_so_an_unsettled_message_comes_back(
    links: tuple[ServiceBusEmulator, ServiceBusReceiver, ServiceBusSender],
) -> None:
    emulator, receiver, sender = links
    (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
    port = ServiceBusPort(receiver, sender)
    async with port.keep_locked(message):
        await asyncio.sleep(LOCK_SECONDS * 1.5)  # renewed at least once
    # The handler gave up without settling (say its complete failed): the lock lapses and the
    # message comes back, instead of staying locked until a renewal limit minutes away.
    (again,) = await receiver.receive_messages(max_message_count=1, max_wait_time=LOCK_SECONDS * 3)
    assert again.message_id == message.message_id
    assert again.delivery_count == 1
    await receiver.complete_message(again)
    assert emulator.counts("work").total == 0
