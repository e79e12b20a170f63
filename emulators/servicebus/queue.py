"""Service Bus queue semantics as a pure, synchronous state machine.

No I/O and no threads: the AMQP adapter calls it under one lock, and tests drive it with a fake
clock. Every message lives in exactly one place: available, locked, scheduled or deferred (a locked
deferred message remembers it was deferred), or in the dead-letter queue, which is another
:class:`MessageQueue` with its own sequence numbers.

Timers (lock expiry, TTL, scheduled activation, duplicate-detection window) are heaps with lazy
invalidation, so nothing scans the queue: receiving from 100,000 queued messages is O(log n).

Example::

    q = MessageQueue("q1", QueueSettings(lock_duration=30.0), clock=time.time)
    q.enqueue(b"payload", message_id="m1")
    msg = q.lock_next()
    q.complete(msg.lock_token)
"""

from __future__ import annotations

import bisect
import heapq
import uuid
from collections import deque
from collections.abc import Iterator

from postbus.emulators.servicebus.records import (
    DEAD_LETTER_REASON_MAX_DELIVERY,
    DEAD_LETTER_REASON_TTL,
    Clock,
    LockLostError,
    MessageNotFoundError,
    MessageState,
    QueueCounts,
    QueueFullError,
    QueueSettings,
    StoredMessage,
)

# The records are re-exported: callers import the whole queue vocabulary from here.
__all__ = [
    "DEAD_LETTER_REASON_MAX_DELIVERY",
    "DEAD_LETTER_REASON_TTL",
    "Clock",
    "LockLostError",
    "MessageNotFoundError",
    "MessageQueue",
    "MessageState",
    "QueueCounts",
    "QueueFullError",
    "QueueSettings",
    "StoredMessage",
]


class MessageQueue:
    """One Service Bus entity (a queue, or the dead-letter subqueue of one)."""

    def __init__(
        self,
        name: str,
        settings: QueueSettings,
        *,
        clock: Clock,
        is_dead_letter: bool = False,
    ) -> None:
        self.name = name
        self.settings = settings
        self.is_dead_letter = is_dead_letter
        self._clock = clock
        self._last_now = 0.0
        self._next_seq = 1
        # seq -> message; a bare ``bytes`` value is a compact, freshly enqueued active message.
        # Insertion order is sequence order (sequence numbers are assigned on insert).
        self._messages: dict[int, StoredMessage | bytes] = {}
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self._available: list[int] = []
        self._lock_timers: list[tuple[float, int]] = []
        self._schedule_timers: list[tuple[float, int]] = []
        self._ttl_timers: list[tuple[float, int]] = []  # messages with their own TTL
        self._default_expiry: deque[int] = deque()  # default TTL: expiry order is activation order
        # Enqueue-time checkpoints (first seq enqueued at that time) for compact messages.
        self._time_seqs: list[int] = []
        self._times: list[float] = []
        self._dedup: dict[str, float] = {}  # message-id -> first seen
        self._dedup_order: deque[str] = deque()
        self._counts = dict.fromkeys(MessageState, 0)
        self.size_bytes = 0
        self.dead_letter_queue: MessageQueue | None = None
        if not is_dead_letter:
            self.dead_letter_queue = MessageQueue(
                f"{name}/$DeadLetterQueue", settings, clock=clock, is_dead_letter=True
            )

    def _now(self) -> float:
        # Millisecond precision (what the wire carries); equal times share one float object, which
        # matters for memory when a batch enqueues hundreds of messages in the same millisecond.
        now = round(self._clock(), 3)
        if now == self._last_now:
            return self._last_now
        self._last_now = now
        return now

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        body: bytes,
        *,
        message_id: str | None = None,
        ttl: float | None = None,
        scheduled_at: float | None = None,
        annotations: bytes = b"",
    ) -> int | None:
        """Add a message; returns its sequence number, or ``None`` when duplicate detection drops it.

        A message's TTL is silently capped at the queue's DefaultMessageTimeToLive (as Azure does).
        """
        now = self._now()
        if self._is_duplicate(message_id, now):
            return None
        size = len(body) + len(annotations)
        if self.size_bytes + size > self.settings.max_size_bytes:
            raise QueueFullError(f"queue {self.name} is full ({self.settings.max_size_bytes} bytes)")
        if ttl is not None and ttl >= self.settings.default_ttl:
            ttl = None
        seq = self._take_seq()
        self.size_bytes += size
        if scheduled_at is not None and scheduled_at > now:
            msg = StoredMessage(
                seq, body, annotations=annotations, ttl=ttl, enqueued_at=now, state=MessageState.SCHEDULED
            )
            self._messages[seq] = msg
            self._counts[MessageState.SCHEDULED] += 1
            heapq.heappush(self._schedule_timers, (scheduled_at, seq))
        elif annotations or ttl is not None:
            msg = StoredMessage(seq, body, annotations=annotations, ttl=ttl, enqueued_at=now)
            self._messages[seq] = msg
            self._activate(msg, now, fresh=True)
        else:
            self._messages[seq] = body
            if not self._times or self._times[-1] != now:
                self._time_seqs.append(seq)
                self._times.append(now)
            self._counts[MessageState.ACTIVE] += 1
            heapq.heappush(self._available, seq)
            if not self.is_dead_letter:
                self._default_expiry.append(seq)
        return seq

    def cancel_scheduled(self, seqs: list[int]) -> None:
        """Remove scheduled messages; unknown or already-active sequence numbers are ignored."""
        for seq in seqs:
            msg = self._messages.get(seq)
            if isinstance(msg, StoredMessage) and msg.state is MessageState.SCHEDULED:
                self._remove(msg)

    def _is_duplicate(self, message_id: str | None, now: float) -> bool:
        if not self.settings.requires_duplicate_detection or message_id is None:
            return False
        self._purge_dedup(now)
        if message_id in self._dedup:
            return True
        self._dedup[message_id] = now
        self._dedup_order.append(message_id)
        return False

    def _purge_dedup(self, now: float) -> None:
        order, seen, window = self._dedup_order, self._dedup, self.settings.duplicate_window
        while order:
            first = seen.get(order[0])
            if first is not None and first + window > now:
                return
            seen.pop(order.popleft(), None)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # ------------------------------------------------------------------ compact entries

    def _enqueued_time(self, seq: int) -> float:
        return self._times[bisect.bisect_right(self._time_seqs, seq) - 1]

    def _view(self, seq: int, entry: StoredMessage | bytes) -> StoredMessage:
        if isinstance(entry, StoredMessage):
            return entry
        return StoredMessage(seq, entry, enqueued_at=self._enqueued_time(seq))

    def _prune_times(self) -> None:
        if len(self._time_seqs) < 1024:
            return
        if not self._messages:
            self._time_seqs.clear()
            self._times.clear()
            return
        cut = bisect.bisect_right(self._time_seqs, next(iter(self._messages))) - 1
        if cut > 512:
            del self._time_seqs[:cut]
            del self._times[:cut]

    def expires_at(self, msg: StoredMessage) -> float | None:
        """When the message expires (``None`` in a dead-letter queue, where nothing expires)."""
        if self.is_dead_letter:
            return None
        return msg.enqueued_at + (self.settings.default_ttl if msg.ttl is None else msg.ttl)

    # ------------------------------------------------------------------ receive

    @property
    def has_available(self) -> bool:
        return self._counts[MessageState.ACTIVE] > 0

    def lock_next(self, *, receive_and_delete: bool = False) -> StoredMessage | None:
        """Take the lowest-sequence available message: lock it, or remove it in RECEIVE_AND_DELETE."""
        now = self._clock()
        heap = self._available
        while heap:
            seq = heapq.heappop(heap)
            entry = self._messages.get(seq)
            if entry is None:
                continue
            if isinstance(entry, StoredMessage) and entry.state is not MessageState.ACTIVE:
                continue
            msg = self._view(seq, entry)
            expires = self.expires_at(msg)
            if expires is not None and expires <= now:
                self._expire(msg)
                continue
            if receive_and_delete:
                self._remove_entry(seq, entry)
            else:
                self._messages[seq] = msg
                self._lock(msg, now)
            return msg
        return None

    def receive_deferred(self, seqs: list[int], *, receive_and_delete: bool = False) -> list[StoredMessage]:
        """Receive deferred messages by sequence number (locked, or removed in RECEIVE_AND_DELETE)."""
        now = self._clock()
        found: list[StoredMessage] = []
        for seq in seqs:
            msg = self._messages.get(seq)
            if not isinstance(msg, StoredMessage) or msg.state is not MessageState.DEFERRED:
                raise MessageNotFoundError(f"no deferred message with sequence number {seq} in {self.name}")
            found.append(msg)
        for msg in found:
            if receive_and_delete:
                self._remove(msg)
            else:
                self._lock(msg, now)
        return found

    def peek(self, from_seq: int, count: int) -> list[StoredMessage]:
        """Up to ``count`` messages with sequence number >= ``from_seq``, in any state, without locking."""
        out: list[StoredMessage] = []
        for seq, entry in self._messages.items():
            if seq < from_seq:
                continue
            out.append(self._view(seq, entry))
            if len(out) >= count:
                break
        return out

    def get(self, seq: int) -> StoredMessage | None:
        entry = self._messages.get(seq)
        return None if entry is None else self._view(seq, entry)

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter([self._view(seq, entry) for seq, entry in self._messages.items()])

    def __len__(self) -> int:
        return len(self._messages)

    # ------------------------------------------------------------------ settle

    def complete(self, token: uuid.UUID) -> None:
        self._remove(self._locked(token))

    def abandon(self, token: uuid.UUID) -> None:
        """Unlock and count a failed delivery (dead-letters at MaxDeliveryCount)."""
        self._unlock(self._locked(token), failed=True)

    def release(self, token: uuid.UUID) -> None:
        """Unlock without counting a delivery attempt (the client never processed it)."""
        self._unlock(self._locked(token), failed=False)

    def defer(self, token: uuid.UUID) -> None:
        msg = self._locked(token)
        self._drop_lock(msg)
        msg.deferred = True
        self._set_state(msg, MessageState.DEFERRED)

    def dead_letter(
        self, token: uuid.UUID, reason: str | None = None, description: str | None = None
    ) -> None:
        msg = self._locked(token)
        if self.dead_letter_queue is None:
            # A dead-letter queue has no dead-letter queue of its own: the message stays put.
            self._unlock(msg, failed=False)
            return
        self._move_to_dead_letter(msg, reason, description)

    def renew_lock(self, token: uuid.UUID) -> float:
        """Extend the lock by LockDuration from now; returns the new locked-until (epoch seconds)."""
        msg = self._locked(token)
        msg.locked_until = self._now() + self.settings.lock_duration
        heapq.heappush(self._lock_timers, (msg.locked_until, msg.seq))
        return msg.locked_until

    def is_locked(self, token: uuid.UUID) -> bool:
        try:
            self._locked(token)
        except LockLostError:
            return False
        return True

    def _locked(self, token: uuid.UUID) -> StoredMessage:
        msg = self._locks.get(token)
        if msg is None:
            raise LockLostError(
                "The lock supplied is invalid. Either the lock expired, or the message has already been "
                "removed from the queue."
            )
        if msg.locked_until <= self._clock():
            self._unlock(msg, failed=True)
            raise LockLostError("The lock supplied is invalid: the lock expired.")
        return msg

    # ------------------------------------------------------------------ timers

    def tick(self) -> bool:
        """Fire due timers; returns True when messages became available to receivers."""
        now = self._clock()
        before = self._counts[MessageState.ACTIVE]
        timers = self._lock_timers
        while timers and timers[0][0] <= now:
            until, seq = heapq.heappop(timers)
            msg = self._messages.get(seq)
            if (
                isinstance(msg, StoredMessage)
                and msg.state is MessageState.LOCKED
                and msg.locked_until == until
            ):
                self._unlock(msg, failed=True)
        timers = self._schedule_timers
        while timers and timers[0][0] <= now:
            _, seq = heapq.heappop(timers)
            msg = self._messages.get(seq)
            if isinstance(msg, StoredMessage) and msg.state is MessageState.SCHEDULED:
                self._counts[MessageState.SCHEDULED] -= 1
                self._activate(msg, self._now(), fresh=True)
        timers = self._ttl_timers
        while timers and timers[0][0] <= now:
            _, seq = heapq.heappop(timers)
            self._expire_if_due(seq, now)
        expiry = self._default_expiry
        while expiry:
            entry = self._messages.get(expiry[0])
            if entry is not None:
                msg = self._view(expiry[0], entry)
                if msg.enqueued_at + self.settings.default_ttl > now:
                    break
            self._expire_if_due(expiry.popleft(), now)
        self._purge_dedup(now)
        self._prune_times()
        became_available = self._counts[MessageState.ACTIVE] > before
        if self.dead_letter_queue is not None:
            became_available = self.dead_letter_queue.tick() or became_available
        return became_available

    def _expire_if_due(self, seq: int, now: float) -> None:
        entry = self._messages.get(seq)
        if entry is None:
            return
        msg = self._view(seq, entry)
        expires = self.expires_at(msg)
        # A locked message is protected by its lock; it is checked again when it is unlocked.
        if (
            expires is not None
            and expires <= now
            and msg.state in (MessageState.ACTIVE, MessageState.DEFERRED)
        ):
            self._expire(msg)  # a view of a compact entry is enough: it is removed or moved whole

    def next_deadline(self) -> float | None:
        """Earliest pending timer (may be stale; firing early is harmless)."""
        heads = [h[0][0] for h in (self._lock_timers, self._schedule_timers, self._ttl_timers) if h]
        if self._default_expiry:
            first = self._messages.get(self._default_expiry[0])
            if first is not None:
                heads.append(
                    self._view(self._default_expiry[0], first).enqueued_at + self.settings.default_ttl
                )
        if self.dead_letter_queue is not None:
            inner = self.dead_letter_queue.next_deadline()
            if inner is not None:
                heads.append(inner)
        return min(heads) if heads else None

    # ------------------------------------------------------------------ counts

    def counts(self) -> QueueCounts:
        c = self._counts
        dead = len(self.dead_letter_queue) if self.dead_letter_queue is not None else 0
        return QueueCounts(
            active=c[MessageState.ACTIVE],
            scheduled=c[MessageState.SCHEDULED],
            locked=c[MessageState.LOCKED],
            dead_lettered=dead,
            deferred=c[MessageState.DEFERRED],
        )

    # ------------------------------------------------------------------ internals

    def _set_state(self, msg: StoredMessage, state: MessageState) -> None:
        self._counts[msg.state] -= 1
        self._counts[state] += 1
        msg.state = state

    def _activate(self, msg: StoredMessage, now: float, *, fresh: bool) -> None:
        """Make a new or scheduled message available and start its time-to-live."""
        if fresh:
            msg.enqueued_at = now
            if not self.is_dead_letter:
                if msg.ttl is None:
                    self._default_expiry.append(msg.seq)
                else:
                    heapq.heappush(self._ttl_timers, (now + msg.ttl, msg.seq))
        msg.state = MessageState.ACTIVE
        self._counts[MessageState.ACTIVE] += 1
        heapq.heappush(self._available, msg.seq)

    def _lock(self, msg: StoredMessage, now: float) -> None:
        token = uuid.uuid4()
        msg.lock_token = token
        msg.locked_until = round(now, 3) + self.settings.lock_duration
        self._locks[token] = msg
        self._set_state(msg, MessageState.LOCKED)
        heapq.heappush(self._lock_timers, (msg.locked_until, msg.seq))

    def _drop_lock(self, msg: StoredMessage) -> None:
        if msg.lock_token is not None:
            self._locks.pop(msg.lock_token, None)
            msg.lock_token = None

    def _unlock(self, msg: StoredMessage, *, failed: bool) -> None:
        self._drop_lock(msg)
        if failed:
            msg.delivery_count += 1
            if msg.delivery_count >= self.settings.max_delivery_count and self.dead_letter_queue is not None:
                self._move_to_dead_letter(
                    msg,
                    DEAD_LETTER_REASON_MAX_DELIVERY,
                    f"Message could not be consumed after {msg.delivery_count} delivery attempts.",
                )
                return
        if msg.deferred:
            self._set_state(msg, MessageState.DEFERRED)
            return
        expires = self.expires_at(msg)
        if expires is not None and expires <= self._clock():
            self._set_state(msg, MessageState.ACTIVE)
            self._expire(msg)
            return
        self._set_state(msg, MessageState.ACTIVE)
        heapq.heappush(self._available, msg.seq)

    def _remove(self, msg: StoredMessage) -> None:
        self._remove_entry(msg.seq, msg)

    def _remove_entry(self, seq: int, entry: StoredMessage | bytes) -> None:
        del self._messages[seq]
        if isinstance(entry, StoredMessage):
            self._drop_lock(entry)
            self._counts[entry.state] -= 1
            self.size_bytes -= entry.size
        else:
            self._counts[MessageState.ACTIVE] -= 1
            self.size_bytes -= len(entry)

    def _expire(self, msg: StoredMessage) -> None:
        if self.settings.dead_letter_on_expiration and self.dead_letter_queue is not None:
            self._move_to_dead_letter(
                msg, DEAD_LETTER_REASON_TTL, "The message expired and was dead lettered."
            )
        else:
            self._remove(msg)

    def _move_to_dead_letter(self, msg: StoredMessage, reason: str | None, description: str | None) -> None:
        dlq = self.dead_letter_queue
        assert dlq is not None  # callers check; a dead-letter queue never dead-letters
        self._remove(msg)
        msg.seq = dlq._take_seq()
        msg.dead_letter = (reason, description, self.name)
        msg.deferred = False
        dlq._messages[msg.seq] = msg
        dlq.size_bytes += msg.size
        dlq._activate(msg, self._now(), fresh=False)
