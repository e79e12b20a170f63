"""Awaiting the emulators' state: woken by their own changes, with a deadline, never by polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import EmulatorConfig, ServiceBusEmulator

CONFIG = EmulatorConfig.from_queues({"work": {"LockDuration": "PT1M"}})


@pytest.fixture
async def servicebus() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator(CONFIG) as emulator:
        yield emulator


async def test_a_queue_condition_is_met_by_the_emulators_own_changes(servicebus: ServiceBusEmulator) -> None:
    waiting = asyncio.create_task(servicebus.wait_for("work", lambda counts: counts.active == 2, timeout=10))
    await asyncio.sleep(0)  # the waiter is registered before anything arrives
    assert not waiting.done()
    async with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        async with client.get_queue_sender("work") as sender:
            await sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
        counts = await waiting
        assert counts.active == 2
        async with client.get_queue_receiver("work") as receiver:
            for message in await receiver.receive_messages(max_message_count=2, max_wait_time=5):
                await receiver.complete_message(message)
    await servicebus.wait_until_empty("work", timeout=10)
    assert servicebus.counts("work").total == 0


async def test_a_condition_already_met_returns_at_once_and_one_never_met_times_out(
    servicebus: ServiceBusEmulator,
) -> None:
    await servicebus.wait_until_empty("work", timeout=1)
    with pytest.raises(TimeoutError):
        await servicebus.wait_for("work", lambda counts: counts.active > 0, timeout=0.2)


async def test_an_unknown_queue_fails_at_once(servicebus: ServiceBusEmulator) -> None:
    with pytest.raises(KeyError):
        await servicebus.wait_for("no-such-queue", lambda counts: True, timeout=1)


async def test_the_mailbox_is_awaited_by_count_and_recipient() -> None:
    from azure.communication.email.aio import EmailClient
    from azure.core.credentials import AzureKeyCredential

    async with EmailEmulator() as acs:
        waiting = asyncio.create_task(acs.mailbox.wait_for(count=2, timeout=10))
        for_bob = asyncio.create_task(acs.mailbox.wait_for(count=1, recipient="bob@example.com", timeout=10))
        async with EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client:
            for to in ("ann@example.com", "bob@example.com"):
                message = {
                    "senderAddress": "orders@shop.example.com",
                    "content": {"subject": "hi", "plainText": "hi"},
                    "recipients": {"to": [{"address": to}]},
                }
                await client.begin_send(message, polling=False)
        assert len(await waiting) == 2
        (mail,) = await for_bob
        assert mail.to == ("bob@example.com",)
        with pytest.raises(TimeoutError):
            await acs.mailbox.wait_for(count=3, timeout=0.2)
