"""The asyncio azure-servicebus client against the emulator (the worker and producers use it)."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusServerBusyError,
)

from postbus.emulators.servicebus import EmulatorConfig, ServiceBusEmulator
from tests.support import open_side_by_side

from .conftest import CONFIG, FAST_RETRY

pytestmark = pytest.mark.timeout(60)

AwaitUntil = Callable[..., Awaitable[None]]


def _client(sb: ServiceBusEmulator, **kwargs: object) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(sb.connection_string, **kwargs)


async def test_async_context_manager_starts_on_a_free_port_and_counts() -> None:
    async with ServiceBusEmulator(CONFIG) as sb:
        assert sb.port > 0
        assert sb.connection_string == (
            f"Endpoint=sb://127.0.0.1:{sb.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        )
        assert sb.admin_url is None
        assert set(sb.all_counts()) == {"orders", "drop-expired", "long", "renew"}
        assert sb.counts("orders").total == 0


async def test_default_config_serves_notifications() -> None:
    async with ServiceBusEmulator() as sb, _client(sb) as client:
        async with client.get_queue_sender("notifications", keep_alive=0) as sender:
            await sender.send_messages(ServiceBusMessage("hi", message_id="same"))
            await sender.send_messages(
                ServiceBusMessage("hi", message_id="same")
            )  # duplicate detection is on
        assert sb.counts("notifications").active == 1


async def test_send_batch_schedule_cancel_and_peek(emulator: ServiceBusEmulator) -> None:
    async with _client(emulator) as client:
        async with client.get_queue_sender("long", keep_alive=0) as sender:
            batch = await sender.create_message_batch()
            for i in range(3):
                batch.add_message(ServiceBusMessage(f"m{i}"))
            await sender.send_messages(batch)
            later = datetime.now(UTC) + timedelta(hours=1)
            seqs = await sender.schedule_messages([ServiceBusMessage("x"), ServiceBusMessage("y")], later)
            assert emulator.counts("long").scheduled == 2
            await sender.cancel_scheduled_messages(seqs[0])
            with pytest.raises(MessageSizeExceededError):
                await sender.send_messages(ServiceBusMessage(b"x" * 300_000))
        assert emulator.counts("long").scheduled == 1
        async with client.get_queue_receiver("long") as receiver:
            peeked = await receiver.peek_messages(max_message_count=10)
            assert [str(m) for m in peeked] == ["m0", "m1", "m2", "y"]
            assert peeked[-1].state.name == "SCHEDULED"


@pytest.mark.parametrize("prefetch", [0, 20])
async def test_peek_lock_settlements(emulator: ServiceBusEmulator, prefetch: int) -> None:
    async with _client(emulator) as client:
        async with client.get_queue_sender("orders", keep_alive=0) as sender:
            await sender.send_messages(
                [ServiceBusMessage(name) for name in ("done", "again", "dead", "later")]
            )
        async with open_side_by_side(
            client.get_queue_receiver("orders", prefetch_count=prefetch),
            client.get_queue_receiver("orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER),
        ) as (receiver, dlq):
            got = []
            while len(got) < 4:
                got += await receiver.receive_messages(max_message_count=4, max_wait_time=5)
            by_body = {str(m): m for m in got}
            await receiver.complete_message(by_body["done"])
            await receiver.abandon_message(by_body["again"])
            await receiver.dead_letter_message(by_body["dead"], reason="r", error_description="d")
            await receiver.defer_message(by_body["later"])
            (again,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert str(again) == "again"
            assert again.delivery_count == 1
            await receiver.complete_message(again)
            (deferred,) = await receiver.receive_deferred_messages([by_body["later"].sequence_number])
            await receiver.renew_message_lock(deferred)
            await receiver.complete_message(deferred)
            (dead,) = await dlq.receive_messages(max_message_count=1, max_wait_time=5)
            assert (dead.dead_letter_reason, dead.dead_letter_error_description) == ("r", "d")
            await dlq.complete_message(dead)
    assert emulator.counts("orders").total == 0


async def test_receive_and_delete_iterator(emulator: ServiceBusEmulator) -> None:
    async with _client(emulator) as client:
        async with client.get_queue_sender("long", keep_alive=0) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
        async with client.get_queue_receiver(
            "long", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=1, prefetch_count=5
        ) as receiver:
            assert [str(m) async for m in receiver] == ["m0", "m1", "m2"]
    assert emulator.counts("long").total == 0


async def test_lock_expiry_max_delivery_and_lock_lost(emulator: ServiceBusEmulator) -> None:
    async with _client(emulator) as client:
        async with client.get_queue_sender("orders", keep_alive=0) as sender:
            await sender.send_messages(ServiceBusMessage("forgotten"))
        async with client.get_queue_receiver("orders") as receiver:
            (msg,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await emulator.wait_for(
                "orders", lambda counts: counts.active == 1, timeout=10
            )  # the lock expired
            with pytest.raises(MessageLockLostError):
                await receiver.complete_message(msg)
            for attempt in (1, 2):
                (msg,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
                assert msg.delivery_count == attempt
                await receiver.abandon_message(msg)
        assert emulator.counts("orders").dead_lettered == 1
        async with client.get_queue_receiver("orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = await dlq.receive_messages(max_message_count=1, max_wait_time=5)
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


async def test_auto_lock_renewer(emulator: ServiceBusEmulator, await_until: AwaitUntil) -> None:
    async with _client(emulator) as client:
        async with client.get_queue_sender("renew", keep_alive=0) as sender:
            await sender.send_messages(ServiceBusMessage("long work"))
        async with (
            client.get_queue_receiver("renew") as receiver,
            AutoLockRenewer(max_lock_renewal_duration=30) as renewer,
        ):
            (msg,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            first = msg.locked_until_utc
            assert first is not None
            renewer.register(receiver, msg)
            await await_until(
                lambda: datetime.now(UTC) > first + timedelta(milliseconds=500), what="the first lock to pass"
            )
            await receiver.complete_message(msg)
    assert emulator.counts("renew").total == 0


async def test_ttl_expiry_and_duplicate_detection(emulator: ServiceBusEmulator) -> None:
    message_id = str(uuid.uuid4())
    async with _client(emulator) as client, client.get_queue_sender("orders", keep_alive=0) as sender:
        await sender.send_messages(ServiceBusMessage("stale", time_to_live=timedelta(seconds=1)))
        await sender.send_messages([ServiceBusMessage("a", message_id=message_id)])
        await sender.send_messages([ServiceBusMessage("a", message_id=message_id)])
    await emulator.wait_for(
        "orders", lambda counts: counts.dead_lettered == 1, timeout=10
    )  # TTL dead-lettering
    assert emulator.counts("orders").active == 1


async def test_competing_async_receivers(emulator: ServiceBusEmulator) -> None:
    async with _client(emulator) as client:
        async with client.get_queue_sender("long", keep_alive=0) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(30)])

        everything: list[int] = []

        async def drain() -> list[int]:
            seen: list[int] = []
            async with client.get_queue_receiver("long", prefetch_count=5) as receiver:
                while len(everything) < 30:  # locked messages stay with their receiver until it settles
                    batch = [m.sequence_number for m in await receiver.receive_messages(5, max_wait_time=0.5)]
                    seen += batch
                    everything.extend(batch)
            return seen

        first, second = await asyncio.gather(drain(), drain())
    assert sorted(first + second) == list(range(1, 31))
    assert not set(first) & set(second)


@pytest.mark.timeout(20)
async def test_unknown_queue_fails_promptly(emulator: ServiceBusEmulator) -> None:
    started = time.monotonic()
    async with _client(emulator) as client:
        with pytest.raises(MessagingEntityNotFoundError, match="missing-queue"):
            async with client.get_queue_sender("missing-queue", keep_alive=0) as sender:
                await sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(MessagingEntityNotFoundError, match="missing-queue"):
            async with client.get_queue_receiver("missing-queue") as receiver:
                await receiver.receive_messages(max_message_count=1, max_wait_time=1)
    assert time.monotonic() - started < 15


async def test_server_busy_retried_or_raised(emulator: ServiceBusEmulator) -> None:
    emulator.faults.fail_next_sends(1)
    async with (
        _client(emulator, **FAST_RETRY) as client,
        client.get_queue_sender("long", keep_alive=0) as sender,
    ):
        await sender.send_messages(ServiceBusMessage("retried"))
    emulator.faults.fail_next_sends(1)
    async with (
        _client(emulator, retry_total=0) as client,
        client.get_queue_sender("long", keep_alive=0) as sender,
    ):
        with pytest.raises(ServiceBusServerBusyError):
            await sender.send_messages(ServiceBusMessage("refused"))
    assert emulator.counts("long").active == 1


# The SDK does not close the socket of a dropped connection; collect it here (see the sync test).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_drop_connections_async_client_recovers(emulator: ServiceBusEmulator) -> None:
    async with (
        _client(emulator, **FAST_RETRY) as client,
        client.get_queue_sender("long", keep_alive=0) as sender,
    ):
        await sender.send_messages(ServiceBusMessage("before"))
        await asyncio.to_thread(emulator.faults.drop_connections)
        await sender.send_messages(ServiceBusMessage("after"))
    assert emulator.counts("long").active == 2
    gc.collect()


async def test_settle_delay(emulator: ServiceBusEmulator) -> None:
    config = EmulatorConfig.from_queues({"q": {}})
    async with ServiceBusEmulator(config) as sb, _client(sb) as client:
        async with client.get_queue_sender("q", keep_alive=0) as sender:
            await sender.send_messages(ServiceBusMessage("x"))
        sb.faults.settle_delay = 0.2
        async with client.get_queue_receiver("q") as receiver:
            (msg,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.complete_message(msg)
        assert sb.counts("q").total == 0
    del emulator
