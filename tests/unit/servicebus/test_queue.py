"""The queue state machine, driven by a fake clock (no sleeping, no I/O)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbus.emulators.servicebus.queue import (
    DEAD_LETTER_REASON_MAX_DELIVERY,
    DEAD_LETTER_REASON_TTL,
    LockLostError,
    MessageNotFoundError,
    MessageQueue,
    MessageState,
    QueueCounts,
    QueueFullError,
    QueueSettings,
)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_queue(clock: FakeClock, **settings: object) -> MessageQueue:
    defaults: dict[str, object] = {"lock_duration": 30.0, "max_delivery_count": 3}
    defaults.update(settings)
    return MessageQueue("q1", QueueSettings(**defaults), clock=clock)  # type: ignore[arg-type]


def test_sequence_numbers_start_at_one_and_the_dead_letter_queue_has_its_own(clock: FakeClock) -> None:
    q = make_queue(clock)
    assert (q.enqueue(b"a"), q.enqueue(b"b")) == (1, 2)
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    q.dead_letter(msg.lock_token, "why", "because")
    assert q.dead_letter_queue is not None
    dead = q.dead_letter_queue.lock_next()
    assert dead is not None
    assert dead.seq == 1
    assert (dead.dead_letter_reason, dead.dead_letter_description, dead.dead_letter_source) == (
        "why",
        "because",
        "q1",
    )


def test_lock_complete_and_counts(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a")
    q.enqueue(b"b")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    assert msg.locked_until == clock.now + 30
    assert q.counts() == QueueCounts(active=1, locked=1)
    q.complete(msg.lock_token)
    assert q.counts() == QueueCounts(active=1)
    with pytest.raises(LockLostError):
        q.complete(msg.lock_token)


def test_receive_and_delete_removes_at_once(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a")
    msg = q.lock_next(receive_and_delete=True)
    assert msg is not None
    assert msg.lock_token is None
    assert q.counts().total == 0


def test_abandon_counts_a_delivery_and_keeps_order(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a")
    q.enqueue(b"b")
    first = q.lock_next()
    assert first is not None
    assert first.lock_token is not None
    q.abandon(first.lock_token)
    again = q.lock_next()
    assert again is first
    assert again.delivery_count == 1


def test_release_does_not_count_a_delivery(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    q.release(msg.lock_token)
    assert msg.delivery_count == 0
    assert q.counts() == QueueCounts(active=1)


def test_max_delivery_count_moves_to_dead_letter(clock: FakeClock) -> None:
    q = make_queue(clock, max_delivery_count=2)
    q.enqueue(b"a")
    for _ in range(2):
        msg = q.lock_next()
        assert msg is not None
        assert msg.lock_token is not None
        q.abandon(msg.lock_token)
    assert q.counts() == QueueCounts(dead_lettered=1)
    assert q.dead_letter_queue is not None
    dead = q.dead_letter_queue.lock_next()
    assert dead is not None
    assert dead.dead_letter_reason == DEAD_LETTER_REASON_MAX_DELIVERY
    assert dead.delivery_count == 2


def test_lock_expiry_redelivers_then_dead_letters(clock: FakeClock) -> None:
    q = make_queue(clock, max_delivery_count=2, lock_duration=10.0)
    q.enqueue(b"a")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    token = msg.lock_token
    clock.advance(10.0)
    assert q.tick() is True
    assert msg.delivery_count == 1
    with pytest.raises(LockLostError):
        q.complete(token)
    assert q.lock_next() is msg
    clock.advance(10.0)
    q.tick()
    assert q.counts() == QueueCounts(dead_lettered=1)


def test_settling_an_expired_lock_fails_even_before_the_timer_fires(clock: FakeClock) -> None:
    q = make_queue(clock, lock_duration=5.0)
    q.enqueue(b"a")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    clock.advance(6.0)  # no tick()
    with pytest.raises(LockLostError):
        q.complete(msg.lock_token)
    assert msg.delivery_count == 1
    assert q.counts() == QueueCounts(active=1)


def test_renew_lock_extends_and_the_old_timer_is_ignored(clock: FakeClock) -> None:
    q = make_queue(clock, lock_duration=10.0)
    q.enqueue(b"a")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    clock.advance(8.0)
    assert q.renew_lock(msg.lock_token) == clock.now + 10.0
    clock.advance(5.0)
    q.tick()
    assert q.counts() == QueueCounts(locked=1)
    q.complete(msg.lock_token)


@pytest.mark.parametrize(
    ("dead_letter", "expected"), [(True, QueueCounts(dead_lettered=1)), (False, QueueCounts())]
)
def test_ttl_expiry(clock: FakeClock, dead_letter: bool, expected: QueueCounts) -> None:
    q = make_queue(clock, dead_letter_on_expiration=dead_letter, default_ttl=100.0)
    q.enqueue(b"a", ttl=5.0)
    q.enqueue(b"b")  # default TTL
    clock.advance(5.0)
    q.tick()
    assert q.counts().active == 1
    clock.advance(95.0)
    q.tick()
    assert q.counts() == QueueCounts(dead_lettered=2 if dead_letter else 0)
    if dead_letter:
        assert q.dead_letter_queue is not None
        dead = q.dead_letter_queue.lock_next()
        assert dead is not None
        assert dead.dead_letter_reason == DEAD_LETTER_REASON_TTL


def test_message_ttl_cannot_exceed_the_queue_default(clock: FakeClock) -> None:
    q = make_queue(clock, default_ttl=10.0)
    seq = q.enqueue(b"a", ttl=1000.0)
    assert seq is not None
    msg = q.get(seq)
    assert msg is not None
    assert q.expires_at(msg) == clock.now + 10.0


def test_expired_message_is_not_delivered_even_before_the_timer(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a", ttl=1.0)
    clock.advance(2.0)
    assert q.lock_next() is None
    assert q.counts().total == 0


def test_a_locked_message_expires_when_its_lock_ends(clock: FakeClock) -> None:
    q = make_queue(clock, dead_letter_on_expiration=True)
    q.enqueue(b"a", ttl=5.0)
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    clock.advance(6.0)
    q.tick()
    assert q.counts() == QueueCounts(locked=1)  # the lock protects it
    q.release(msg.lock_token)
    assert q.counts() == QueueCounts(dead_lettered=1)


def test_scheduled_messages_activate_on_time_and_can_be_cancelled(clock: FakeClock) -> None:
    q = make_queue(clock)
    keep_seq = q.enqueue(b"a", scheduled_at=clock.now + 60)
    cancel = q.enqueue(b"b", scheduled_at=clock.now + 60)
    assert keep_seq is not None
    assert cancel is not None
    keep = q.get(keep_seq)
    assert keep is not None
    assert keep.visible_state is MessageState.SCHEDULED
    assert q.counts() == QueueCounts(scheduled=2)
    assert q.lock_next() is None
    q.cancel_scheduled([cancel, 999])
    clock.advance(60)
    assert q.tick() is True
    assert q.counts() == QueueCounts(active=1)
    assert keep.enqueued_at == clock.now


def test_scheduled_in_the_past_is_active_at_once(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a", scheduled_at=clock.now - 1)
    assert q.counts() == QueueCounts(active=1)


def test_defer_and_receive_by_sequence_number(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    q.defer(msg.lock_token)
    assert q.counts() == QueueCounts(deferred=1)
    assert q.lock_next() is None
    (again,) = q.receive_deferred([msg.seq])
    assert again.lock_token is not None
    assert again.visible_state is MessageState.DEFERRED
    q.abandon(again.lock_token)  # abandoning a deferred message keeps it deferred
    assert q.counts() == QueueCounts(deferred=1)
    (again,) = q.receive_deferred([msg.seq])
    assert again.lock_token is not None
    q.complete(again.lock_token)
    assert q.counts().total == 0
    with pytest.raises(MessageNotFoundError):
        q.receive_deferred([msg.seq])


def test_receive_deferred_in_receive_and_delete_mode(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    q.defer(msg.lock_token)
    q.receive_deferred([msg.seq], receive_and_delete=True)
    assert q.counts().total == 0


def test_duplicate_detection_inside_the_window_only(clock: FakeClock) -> None:
    q = make_queue(clock, requires_duplicate_detection=True, duplicate_window=60.0)
    assert q.enqueue(b"a", message_id="m1") is not None
    assert q.enqueue(b"a", message_id="m1") is None
    assert q.enqueue(b"b", message_id="m2") is not None
    clock.advance(61)
    q.tick()
    assert q.enqueue(b"a", message_id="m1") is not None
    assert q.counts().active == 3


def test_without_duplicate_detection_everything_is_kept(clock: FakeClock) -> None:
    q = make_queue(clock)
    q.enqueue(b"a", message_id="m1")
    q.enqueue(b"a", message_id="m1")
    assert q.counts().active == 2


def test_peek_sees_every_state_without_locking(clock: FakeClock) -> None:
    q = make_queue(clock)
    for body in (b"a", b"b", b"c"):
        q.enqueue(body)
    q.enqueue(b"d", scheduled_at=clock.now + 100)
    locked = q.lock_next()
    assert locked is not None
    assert [m.seq for m in q.peek(1, 10)] == [1, 2, 3, 4]
    assert [m.seq for m in q.peek(2, 2)] == [2, 3]
    assert q.peek(5, 10) == []
    assert q.counts() == QueueCounts(active=2, locked=1, scheduled=1)


def test_queue_size_limit(clock: FakeClock) -> None:
    q = make_queue(clock, max_size_bytes=10)
    q.enqueue(b"x" * 6)
    with pytest.raises(QueueFullError):
        q.enqueue(b"x" * 6)


def test_unknown_lock_token(clock: FakeClock) -> None:
    q = make_queue(clock)
    with pytest.raises(LockLostError):
        q.renew_lock(uuid.uuid4())
    assert not q.is_locked(uuid.uuid4())


def test_next_deadline_is_the_earliest_timer(clock: FakeClock) -> None:
    q = make_queue(clock, lock_duration=10.0, default_ttl=100.0)
    assert q.next_deadline() is None
    q.enqueue(b"a")
    q.lock_next()
    assert q.next_deadline() == clock.now + 10.0


def test_dead_letter_queue_messages_never_expire_and_cannot_be_dead_lettered_again(clock: FakeClock) -> None:
    q = make_queue(clock, default_ttl=1.0, dead_letter_on_expiration=True)
    q.enqueue(b"a")
    clock.advance(2)
    q.tick()
    dlq = q.dead_letter_queue
    assert dlq is not None
    clock.advance(1000)
    q.tick()
    dead = dlq.lock_next()
    assert dead is not None
    assert dead.lock_token is not None
    dlq.dead_letter(dead.lock_token, "again")
    assert len(dlq) == 1
    assert dlq.counts().active == 1


def test_large_queues_receive_in_order_without_scanning(clock: FakeClock) -> None:
    q = make_queue(clock)
    for i in range(20_000):
        q.enqueue(b"x", message_id=str(i))
    seqs = []
    while (msg := q.lock_next(receive_and_delete=True)) is not None:
        seqs.append(msg.seq)
    assert seqs == list(range(1, 20_001))


# ---------------------------------------------------------------------------- properties

_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "send",
                "send_dup",
                "schedule",
                "lock",
                "lock_rad",
                "complete",
                "abandon",
                "release",
                "defer",
                "dead_letter",
                "renew",
                "receive_deferred",
                "cancel",
                "advance",
            ]
        ),
        st.integers(min_value=0, max_value=50),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_conservation_every_message_is_in_exactly_one_place(  # noqa: C901 - one branch per operation
    ops: list[tuple[str, int]],
) -> None:
    clock = FakeClock()
    q = MessageQueue(
        "q",
        QueueSettings(
            lock_duration=5.0,
            max_delivery_count=3,
            default_ttl=40.0,
            dead_letter_on_expiration=True,
            requires_duplicate_detection=True,
            duplicate_window=20.0,
        ),
        clock=clock,
    )
    stored = removed = 0
    tokens: list[uuid.UUID] = []
    deferred: list[int] = []
    scheduled: list[int] = []
    for op, arg in ops:
        if op in ("send", "send_dup"):
            seq = q.enqueue(b"m", message_id="dup" if op == "send_dup" else None, ttl=float(arg) + 1)
            stored += seq is not None
        elif op == "schedule":
            seq = q.enqueue(b"m", scheduled_at=clock.now + arg)
            assert seq is not None
            stored += 1
            scheduled.append(seq)
        elif op in ("lock", "lock_rad"):
            msg = q.lock_next(receive_and_delete=op == "lock_rad")
            if msg is not None and op == "lock_rad":
                removed += 1
            elif msg is not None and msg.lock_token is not None:
                tokens.append(msg.lock_token)
        elif op == "advance":
            clock.advance(arg / 5)
            q.tick()
        elif op == "cancel" and scheduled:
            seq = scheduled.pop(arg % len(scheduled))
            msg = q.get(seq)
            if msg is not None and msg.state is MessageState.SCHEDULED:
                removed += 1
            q.cancel_scheduled([seq])
        elif op == "receive_deferred" and deferred:
            seq = deferred.pop(arg % len(deferred))
            try:
                (msg,) = q.receive_deferred([seq])
            except MessageNotFoundError:
                continue
            assert msg.lock_token is not None
            tokens.append(msg.lock_token)
        elif tokens and op in ("complete", "abandon", "release", "defer", "dead_letter", "renew"):
            token = tokens[arg % len(tokens)]
            locked = q._locks.get(token)
            seq = locked.seq if locked is not None else None
            try:
                if op == "renew":
                    q.renew_lock(token)
                    continue
                getattr(q, op)(token)
            except LockLostError:
                tokens.remove(token)
                continue
            tokens.remove(token)
            if op == "complete":
                removed += 1
            elif op == "defer" and seq is not None:
                deferred.append(seq)
        counts = q.counts()
        assert min(counts.active, counts.locked, counts.scheduled, counts.deferred) >= 0
        dlq = q.dead_letter_queue
        assert dlq is not None
        expired_and_dropped = 0  # dead_letter_on_expiration=True: nothing is dropped silently
        assert counts.total == stored - removed - expired_and_dropped
        assert counts.total - counts.dead_lettered == len(q)
        states = [m.state for m in q]
        assert states.count(MessageState.LOCKED) == counts.locked
        assert states.count(MessageState.ACTIVE) == counts.active
        assert len(q._locks) == counts.locked
