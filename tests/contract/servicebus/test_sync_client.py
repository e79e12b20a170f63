"""The synchronous azure-servicebus client against the emulator: every bullet of issue 3."""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.emulators.servicebus.broker import Broker

from .conftest import FAST_RETRY

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., None]


def _client(sb: ServiceBusEmulator, **kwargs: object) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(sb.connection_string, **kwargs)


def _send(sb: ServiceBusEmulator, queue: str, *messages: ServiceBusMessage) -> None:
    with _client(sb) as client, client.get_queue_sender(queue, keep_alive=0) as sender:
        sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


# ---------------------------------------------------------------------------- sending


def test_send_single_and_receive_keeps_body_and_properties(emulator: ServiceBusEmulator) -> None:
    # Given a message with properties, When it is sent and received
    sent = ServiceBusMessage(
        "hello",
        application_properties={"kind": "welcome", "n": 7},
        subject="greeting",
        correlation_id="c-1",
        content_type="text/plain",
    )
    _send(emulator, "orders", sent)
    with _client(emulator) as client, client.get_queue_receiver("orders") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        # Then everything the sender wrote comes back, plus the broker's annotations
        assert str(msg) == "hello"
        assert msg.application_properties == {b"kind": b"welcome", b"n": 7}
        assert msg.subject == "greeting"
        assert msg.correlation_id == "c-1"
        assert msg.content_type == "text/plain"
        assert msg.message_id == sent.message_id
        assert msg.sequence_number == 1
        assert msg.delivery_count == 0
        assert abs((msg.enqueued_time_utc - datetime.now(UTC)).total_seconds()) < 10
        assert msg.locked_until_utc is not None
        assert 0 < (msg.locked_until_utc - datetime.now(UTC)).total_seconds() <= 3
        receiver.complete_message(msg)
    assert emulator.counts("orders").total == 0


def test_batch_send_is_unpacked_and_respects_the_size_limit(emulator: ServiceBusEmulator) -> None:
    with _client(emulator) as client, client.get_queue_sender("long", keep_alive=0) as sender:
        batch = sender.create_message_batch()
        # The link's max-message-size (256 KiB) is what create_message_batch honours
        assert batch.max_size_in_bytes == 256 * 1024
        for i in range(5):
            batch.add_message(ServiceBusMessage(f"m{i}"))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage("list-1"), ServiceBusMessage("list-2")])
        full = sender.create_message_batch()
        for _ in range(13):  # 13 x 20 KB fit in 256 KiB ...
            full.add_message(ServiceBusMessage(b"x" * 20_000))
        with pytest.raises(MessageSizeExceededError):  # ... one more does not
            full.add_message(ServiceBusMessage(b"x" * 20_000))
    assert emulator.counts("long").active == 7
    with _client(emulator) as client, client.get_queue_receiver("long") as receiver:
        got = receiver.receive_messages(max_message_count=7, max_wait_time=5)
        while len(got) < 7:
            got += receiver.receive_messages(max_message_count=7 - len(got), max_wait_time=5)
        assert [str(m) for m in got] == ["m0", "m1", "m2", "m3", "m4", "list-1", "list-2"]
        assert [m.sequence_number for m in got] == list(range(1, 8))


def test_oversized_message_raises_message_size_exceeded(emulator: ServiceBusEmulator) -> None:
    with _client(emulator) as client, client.get_queue_sender("long", keep_alive=0) as sender:
        with pytest.raises(MessageSizeExceededError):
            sender.send_messages(ServiceBusMessage(b"x" * 300_000))
        sender.send_messages(ServiceBusMessage("small"))  # the link is still usable
    assert emulator.counts("long").active == 1


def test_schedule_and_cancel(emulator: ServiceBusEmulator, wait_until: Wait) -> None:
    with _client(emulator) as client, client.get_queue_sender("long", keep_alive=0) as sender:
        soon = datetime.now(UTC) + timedelta(seconds=1)
        later = datetime.now(UTC) + timedelta(hours=1)
        (soon_seq,) = sender.schedule_messages(ServiceBusMessage("soon"), soon)
        later_seqs = sender.schedule_messages([ServiceBusMessage("a"), ServiceBusMessage("b")], later)
        # Scheduling through the send path (x-opt-scheduled-enqueue-time) works as well
        sender.send_messages(ServiceBusMessage("via-send", scheduled_enqueue_time_utc=later))
        assert emulator.counts("long").scheduled == 4
        sender.cancel_scheduled_messages(later_seqs)
        assert emulator.counts("long").scheduled == 2
    assert soon_seq == 1
    wait_until(lambda: emulator.counts("long").active == 1, what="the scheduled message to activate")
    with _client(emulator) as client, client.get_queue_receiver("long") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert str(msg) == "soon"
        assert msg.sequence_number == soon_seq
        receiver.complete_message(msg)


def test_duplicate_detection_drops_a_resend_silently(emulator: ServiceBusEmulator) -> None:
    message_id = f"order-{uuid.uuid4()}"
    with _client(emulator) as client, client.get_queue_sender("orders", keep_alive=0) as sender:
        sender.send_messages(ServiceBusMessage("first", message_id=message_id))
        sender.send_messages(ServiceBusMessage("second", message_id=message_id))
        sender.send_messages(ServiceBusMessage("other"))
    assert emulator.counts("orders").active == 2


# ---------------------------------------------------------------------------- receiving


@pytest.mark.parametrize("prefetch", [0, 10])
def test_peek_lock_receive_with_and_without_prefetch(emulator: ServiceBusEmulator, prefetch: int) -> None:
    _send(emulator, "long", *[ServiceBusMessage(f"m{i}") for i in range(5)])
    with _client(emulator) as client, client.get_queue_receiver("long", prefetch_count=prefetch) as receiver:
        got: list[str] = []
        while len(got) < 5:
            batch = receiver.receive_messages(max_message_count=5, max_wait_time=5)
            assert batch
            for msg in batch:
                got.append(str(msg))
                receiver.complete_message(msg)
        assert got == [f"m{i}" for i in range(5)]
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
    assert emulator.counts("long").total == 0


@pytest.mark.parametrize("prefetch", [0, 10])
def test_receive_and_delete(emulator: ServiceBusEmulator, prefetch: int) -> None:
    _send(emulator, "long", *[ServiceBusMessage(f"m{i}") for i in range(3)])
    with (
        _client(emulator) as client,
        client.get_queue_receiver(
            "long", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=prefetch
        ) as receiver,
    ):
        got: list[str] = []
        while len(got) < 3:
            got += [str(m) for m in receiver.receive_messages(max_message_count=3, max_wait_time=5)]
        assert got == ["m0", "m1", "m2"]
    assert emulator.counts("long").total == 0


def test_iterator_receive_stops_after_max_wait_time(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "long", *[ServiceBusMessage(f"m{i}") for i in range(3)])
    with _client(emulator) as client, client.get_queue_receiver("long", max_wait_time=1) as receiver:
        got = []
        for msg in receiver:
            got.append(str(msg))
            receiver.complete_message(msg)
        assert got == ["m0", "m1", "m2"]


def test_competing_receivers_never_share_a_locked_message(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "long", *[ServiceBusMessage(f"m{i}") for i in range(20)])
    with (
        _client(emulator) as client,
        client.get_queue_receiver("long", prefetch_count=5) as first,
        client.get_queue_receiver("long", prefetch_count=5) as second,
    ):
        seen: list[int] = []
        while len(seen) < 20:
            for receiver in (first, second):
                for msg in receiver.receive_messages(max_message_count=3, max_wait_time=1):
                    seen.append(msg.sequence_number)  # locked, not completed: no redelivery allowed
        assert sorted(seen) == list(range(1, 21))
        assert emulator.counts("long").locked == 20


def test_peek_messages_pages_through_without_locking(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "long", *[ServiceBusMessage(f"m{i}") for i in range(3)])
    with _client(emulator) as client, client.get_queue_receiver("long") as receiver:
        first = receiver.peek_messages(max_message_count=2)
        second = receiver.peek_messages(max_message_count=2)
        assert [m.sequence_number for m in first] == [1, 2]
        assert [m.sequence_number for m in second] == [3]
        assert receiver.peek_messages(max_message_count=2) == []
        assert [str(m) for m in receiver.peek_messages(max_message_count=5, sequence_number=2)] == [
            "m1",
            "m2",
        ]
    assert emulator.counts("long").active == 3


# ---------------------------------------------------------------------------- settlement


def test_abandon_redelivers_with_delivery_count_plus_one(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "long", ServiceBusMessage("retry me"))
    with _client(emulator) as client, client.get_queue_receiver("long") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.abandon_message(msg)
        (again,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert again.sequence_number == msg.sequence_number
        assert again.delivery_count == 1
        receiver.complete_message(again)


def test_dead_letter_with_reason_and_description(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "orders", ServiceBusMessage("poison", application_properties={"k": "v"}))
    with _client(emulator) as client:
        with client.get_queue_receiver("orders") as receiver:
            (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            receiver.dead_letter_message(msg, reason="bad-input", error_description="could not parse")
        assert emulator.counts("orders").dead_lettered == 1
        with client.get_queue_receiver("orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=5)
            assert str(dead) == "poison"
            assert dead.dead_letter_reason == "bad-input"
            assert dead.dead_letter_error_description == "could not parse"
            assert dead.dead_letter_source == "orders"
            assert dead.application_properties is not None
            assert dead.application_properties[b"k"] == b"v"
            assert dead.sequence_number == 1  # the dead-letter queue numbers its own messages
            dlq.complete_message(dead)
    assert emulator.counts("orders").total == 0


def test_defer_and_receive_deferred_messages(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "long", ServiceBusMessage("later"))
    with _client(emulator) as client, client.get_queue_receiver("long") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.defer_message(msg)
        assert emulator.counts("long").deferred == 1
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        (deferred,) = receiver.receive_deferred_messages([msg.sequence_number])
        assert str(deferred) == "later"
        before = deferred.locked_until_utc
        assert before is not None
        renewed = receiver.renew_message_lock(deferred)
        assert renewed >= before
        receiver.complete_message(deferred)
    assert emulator.counts("long").total == 0


def test_renew_message_lock_extends_locked_until(emulator: ServiceBusEmulator, wait_until: Wait) -> None:
    _send(emulator, "orders", ServiceBusMessage("slow"))
    with _client(emulator) as client, client.get_queue_receiver("orders") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        first = msg.locked_until_utc
        assert first is not None
        wait_until(lambda: datetime.now(UTC) > first - timedelta(seconds=1), what="most of the lock to pass")
        renewed = receiver.renew_message_lock(msg)
        assert renewed > first
        wait_until(
            lambda: datetime.now(UTC) > first + timedelta(milliseconds=200), what="the first lock to pass"
        )
        receiver.complete_message(msg)  # still ours thanks to the renewal
    assert emulator.counts("orders").total == 0


def test_auto_lock_renewer_keeps_the_lock(emulator: ServiceBusEmulator, wait_until: Wait) -> None:
    _send(emulator, "orders", ServiceBusMessage("long work"))
    renewer = AutoLockRenewer(max_lock_renewal_duration=30)
    with _client(emulator) as client, client.get_queue_receiver("orders") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        first = msg.locked_until_utc
        assert first is not None
        renewer.register(receiver, msg)
        wait_until(
            lambda: datetime.now(UTC) > first + timedelta(milliseconds=500), what="the first lock to pass"
        )
        assert emulator.counts("orders").locked == 1
        receiver.complete_message(msg)
    renewer.close()
    assert emulator.counts("orders").total == 0


def test_lock_expiry_redelivers_and_settling_the_old_lock_fails(
    emulator: ServiceBusEmulator, wait_until: Wait
) -> None:
    _send(emulator, "orders", ServiceBusMessage("forgotten"))
    with _client(emulator) as client, client.get_queue_receiver("orders") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        wait_until(lambda: emulator.counts("orders").active == 1, what="the lock to expire")
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(msg)
        (again,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert again.delivery_count == 1
        receiver.complete_message(again)


def test_lock_lost_is_reported_by_the_broker_too(emulator: ServiceBusEmulator, wait_until: Wait) -> None:
    # Given a lock the broker expired while the client still believes it valid (clock skew)
    _send(emulator, "orders", ServiceBusMessage("skewed"))
    with _client(emulator) as client, client.get_queue_receiver("orders") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        token = msg.lock_token
        with emulator._lock:  # expire it early, broker-side only
            emulator.namespace.queues["orders"].release(uuid.UUID(str(token)))
        msg._locked_until_utc = datetime.now(UTC) + timedelta(minutes=5)
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(msg)
        with pytest.raises(MessageLockLostError):
            receiver.renew_message_lock(msg)


def test_max_delivery_count_dead_letters(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "orders", ServiceBusMessage("unlucky"))
    with _client(emulator) as client:
        with client.get_queue_receiver("orders") as receiver:
            for attempt in range(3):
                (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                assert msg.delivery_count == attempt
                receiver.abandon_message(msg)
        assert emulator.counts("orders").dead_lettered == 1
        with client.get_queue_receiver("orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=5)
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert str(dead) == "unlucky"
            dlq.complete_message(dead)


def test_ttl_expiry_dead_letters_or_drops(emulator: ServiceBusEmulator, wait_until: Wait) -> None:
    short = timedelta(seconds=1)  # the SDK truncates TTLs to whole seconds
    _send(emulator, "orders", ServiceBusMessage("stale", time_to_live=short))
    _send(emulator, "drop-expired", ServiceBusMessage("stale", time_to_live=short))
    wait_until(lambda: emulator.counts("orders").dead_lettered == 1, what="TTL dead-lettering")
    wait_until(lambda: emulator.counts("drop-expired").total == 0, what="TTL drop")
    with (
        _client(emulator) as client,
        client.get_queue_receiver("orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq,
    ):
        (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=5)
        assert dead.dead_letter_reason == "TTLExpiredException"
        assert dead.time_to_live == short
        dlq.complete_message(dead)


# ---------------------------------------------------------------------------- errors and faults


@pytest.mark.timeout(20)
def test_unknown_queue_fails_promptly_naming_the_queue(emulator: ServiceBusEmulator) -> None:
    started = time.monotonic()
    with _client(emulator) as client:
        with (
            pytest.raises(MessagingEntityNotFoundError, match="no-such-queue"),
            client.get_queue_sender("no-such-queue", keep_alive=0) as sender,
        ):
            sender.send_messages(ServiceBusMessage("x"))
        with (
            pytest.raises(MessagingEntityNotFoundError, match="no-such-queue"),
            client.get_queue_receiver("no-such-queue") as receiver,
        ):
            receiver.receive_messages(max_message_count=1, max_wait_time=1)
    assert time.monotonic() - started < 15  # prompt: no retry loop, no hang


def test_a_session_receiver_is_refused_with_a_reason_and_the_message_stays(
    emulator: ServiceBusEmulator,
) -> None:
    # Microsoft's session samples against a queue without sessions: a plain error, not messages
    # handed to a session receiver with no session.
    _send(emulator, "long", ServiceBusMessage("in a session", session_id="basket-7"))
    with _client(emulator, retry_total=0) as client:
        with (
            pytest.raises(ServiceBusError, match="does not require sessions"),
            client.get_queue_receiver("long", session_id="basket-7") as receiver,
        ):
            receiver.receive_messages(max_message_count=1, max_wait_time=1)
        with client.get_queue_receiver("long") as receiver:
            (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert msg.session_id == "basket-7"
            receiver.complete_message(msg)


def test_fail_next_sends_is_retried_by_the_sdk(emulator: ServiceBusEmulator) -> None:
    emulator.faults.fail_next_sends(2)
    with _client(emulator, **FAST_RETRY) as client, client.get_queue_sender("long", keep_alive=0) as sender:
        sender.send_messages(ServiceBusMessage("eventually"))
    assert emulator.counts("long").active == 1


def test_fail_next_sends_surfaces_server_busy_without_retries(emulator: ServiceBusEmulator) -> None:
    emulator.faults.fail_next_sends(1)
    with _client(emulator, retry_total=0) as client, client.get_queue_sender("long", keep_alive=0) as sender:
        with pytest.raises(ServiceBusServerBusyError):
            sender.send_messages(ServiceBusMessage("busy"))
        sender.send_messages(ServiceBusMessage("fine"))
    assert emulator.counts("long").active == 1


# After a dropped connection the SDK reconnects but never closes the dead socket; collect it here so the
# ResourceWarning is attributed (and ignored) in this test rather than a random later one.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_drop_connections_client_recovers(emulator: ServiceBusEmulator) -> None:
    with _client(emulator, **FAST_RETRY) as client:
        with client.get_queue_sender("long", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("before"))
            assert emulator.faults.drop_connections() >= 1
            sender.send_messages(ServiceBusMessage("after"))
        with client.get_queue_receiver("long") as receiver:
            (first,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            receiver.complete_message(first)
            emulator.faults.drop_connections()
            got = []
            while not got:
                got = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            receiver.complete_message(got[0])
    assert emulator.counts("long").total == 0
    gc.collect()


def test_settle_delay_slows_but_keeps_settlement(emulator: ServiceBusEmulator) -> None:
    _send(emulator, "long", ServiceBusMessage("slow ack"))
    emulator.faults.settle_delay = 0.3
    with _client(emulator) as client, client.get_queue_receiver("long") as receiver:
        (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(msg)
    assert emulator.counts("long").total == 0


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_handler_closes_one_connection_and_the_broker_keeps_serving(
    emulator: ServiceBusEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broker bug that fires once while a message is being enqueued
    original = Broker._on_send
    calls = {"n": 0}

    def flaky(self: Broker, *args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected bug")
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Broker, "_on_send", flaky)
    # When a client sends, Then its connection is closed, the SDK retries, and the send succeeds
    with _client(emulator, **FAST_RETRY) as client, client.get_queue_sender("long", keep_alive=0) as sender:
        sender.send_messages(ServiceBusMessage("survives"))
    assert calls["n"] == 2
    assert emulator.counts("long").active == 1
    gc.collect()
