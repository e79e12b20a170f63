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

import heapq
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

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

Clock = Callable[[], float]

DEAD_LETTER_REASON_MAX_DELIVERY = "MaxDeliveryCountExceeded"
DEAD_LETTER_REASON_TTL = "TTLExpiredException"


class LockLostError(Exception):
    """The lock token is unknown, was settled already, or its lock expired."""


class MessageNotFoundError(Exception):
    """No deferred message with that sequence number."""


class QueueFullError(Exception):
    """Enqueueing would exceed MaxSizeInMegabytes."""


class MessageState(IntEnum):
    """Where a message is; ACTIVE/DEFERRED/SCHEDULED are Service Bus's ``x-opt-message-state`` values."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2
    LOCKED = 3


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Queue properties in seconds (see ``config.QueueProperties`` for the Config.json form)."""

    max_delivery_count: int = 10
    lock_duration: float = 60.0
    default_ttl: float = 14 * 86400.0
    dead_letter_on_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_window: float = 600.0
    max_size_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Runtime counts of one queue (dead_lettered = messages in its dead-letter subqueue)."""

    active: int = 0
    scheduled: int = 0
    locked: int = 0
    dead_lettered: int = 0
    deferred: int = 0

    @property
    def total(self) -> int:
        return self.active + self.scheduled + self.locked + self.dead_lettered + self.deferred


class StoredMessage:
    """One message as the queue holds it; ``body`` and ``annotations`` are opaque encoded bytes."""

    __slots__ = (
        "annotations",
        "body",
        "dead_letter_description",
        "dead_letter_reason",
        "dead_letter_source",
        "deferred",
        "delivery_count",
        "enqueued_at",
        "expires_at",
        "lock_token",
        "locked_until",
        "message_id",
        "scheduled_at",
        "seq",
        "state",
        "ttl",
    )

    def __init__(
        self,
        seq: int,
        body: bytes,
        *,
        annotations: bytes,
        message_id: str | None,
        ttl: float | None,
        enqueued_at: float,
    ) -> None:
        self.seq = seq
        self.body = body
        self.annotations = annotations
        self.message_id = message_id
        self.ttl = ttl
        self.enqueued_at = enqueued_at
        self.expires_at: float | None = None
        self.scheduled_at: float | None = None
        self.delivery_count = 0
        self.state = MessageState.ACTIVE
        self.deferred = False
        self.lock_token: uuid.UUID | None = None
        self.locked_until = 0.0
        self.dead_letter_reason: str | None = None
        self.dead_letter_description: str | None = None
        self.dead_letter_source: str | None = None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.annotations)

    @property
    def visible_state(self) -> MessageState:
        """State as Service Bus reports it (a locked message is active or deferred)."""
        if self.state is MessageState.LOCKED:
            return MessageState.DEFERRED if self.deferred else MessageState.ACTIVE
        return self.state


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
        self._next_seq = 1
        self._messages: dict[int, StoredMessage] = {}
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self._available: list[int] = []
        self._lock_timers: list[tuple[float, int]] = []
        self._expiry_timers: list[tuple[float, int]] = []
        self._schedule_timers: list[tuple[float, int]] = []
        self._dedup: dict[str, float] = {}
        self._dedup_order: deque[tuple[float, str]] = deque()
        self._counts = dict.fromkeys(MessageState, 0)
        self.size_bytes = 0
        self.dead_letter_queue: MessageQueue | None = None
        if not is_dead_letter:
            self.dead_letter_queue = MessageQueue(
                f"{name}/$DeadLetterQueue", settings, clock=clock, is_dead_letter=True
            )

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        body: bytes,
        *,
        message_id: str | None = None,
        ttl: float | None = None,
        scheduled_at: float | None = None,
        annotations: bytes = b"",
    ) -> StoredMessage | None:
        """Add a message; returns ``None`` when duplicate detection drops it (the send still succeeds)."""
        now = self._clock()
        if self._is_duplicate(message_id, now):
            return None
        size = len(body) + len(annotations)
        if self.size_bytes + size > self.settings.max_size_bytes:
            raise QueueFullError(f"queue {self.name} is full ({self.settings.max_size_bytes} bytes)")
        msg = StoredMessage(
            self._take_seq(), body, annotations=annotations, message_id=message_id, ttl=ttl, enqueued_at=now
        )
        self._messages[msg.seq] = msg
        self.size_bytes += size
        if scheduled_at is not None and scheduled_at > now:
            msg.state = MessageState.SCHEDULED
            msg.scheduled_at = scheduled_at
            self._counts[MessageState.SCHEDULED] += 1
            heapq.heappush(self._schedule_timers, (scheduled_at, msg.seq))
        else:
            msg.scheduled_at = scheduled_at
            self._activate(msg, now, fresh=True)
        return msg

    def cancel_scheduled(self, seqs: list[int]) -> None:
        """Remove scheduled messages; unknown or already-active sequence numbers are ignored."""
        for seq in seqs:
            msg = self._messages.get(seq)
            if msg is not None and msg.state is MessageState.SCHEDULED:
                self._remove(msg)

    def _is_duplicate(self, message_id: str | None, now: float) -> bool:
        if not self.settings.requires_duplicate_detection or message_id is None:
            return False
        self._purge_dedup(now)
        if message_id in self._dedup:
            return True
        until = now + self.settings.duplicate_window
        self._dedup[message_id] = until
        self._dedup_order.append((until, message_id))
        return False

    def _purge_dedup(self, now: float) -> None:
        order = self._dedup_order
        while order and order[0][0] <= now:
            _, message_id = order.popleft()
            if self._dedup.get(message_id, now + 1) <= now:
                del self._dedup[message_id]

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # ------------------------------------------------------------------ receive

    @property
    def has_available(self) -> bool:
        return self._counts[MessageState.ACTIVE] > 0

    def lock_next(self, *, receive_and_delete: bool = False) -> StoredMessage | None:
        """Take the lowest-sequence available message: lock it, or remove it in RECEIVE_AND_DELETE."""
        now = self._clock()
        heap = self._available
        while heap:
            msg = self._messages.get(heapq.heappop(heap))
            if msg is None or msg.state is not MessageState.ACTIVE:
                continue
            if msg.expires_at is not None and msg.expires_at <= now:
                self._expire(msg)
                continue
            if receive_and_delete:
                self._remove(msg)
            else:
                self._lock(msg, now)
            return msg
        return None

    def receive_deferred(self, seqs: list[int], *, receive_and_delete: bool = False) -> list[StoredMessage]:
        """Receive deferred messages by sequence number (locked, or removed in RECEIVE_AND_DELETE)."""
        now = self._clock()
        found: list[StoredMessage] = []
        for seq in seqs:
            msg = self._messages.get(seq)
            if msg is None or msg.state is not MessageState.DEFERRED:
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
        for seq, msg in self._messages.items():
            if seq < from_seq:
                continue
            out.append(msg)
            if len(out) >= count:
                break
        return out

    def get(self, seq: int) -> StoredMessage | None:
        return self._messages.get(seq)

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter(list(self._messages.values()))

    def __len__(self) -> int:
        return len(self._messages)

    # ------------------------------------------------------------------ settle

    def complete(self, token: uuid.UUID) -> None:
        self._remove(self._locked(token))

    def abandon(self, token: uuid.UUID) -> None:
        """Unlock and count a failed delivery (dead-letters at MaxDeliveryCount)."""
        msg = self._locked(token)
        self._unlock(msg, failed=True)

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
        msg.locked_until = self._clock() + self.settings.lock_duration
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
            if msg is not None and msg.state is MessageState.LOCKED and msg.locked_until == until:
                self._unlock(msg, failed=True)
        timers = self._schedule_timers
        while timers and timers[0][0] <= now:
            _, seq = heapq.heappop(timers)
            msg = self._messages.get(seq)
            if msg is not None and msg.state is MessageState.SCHEDULED:
                self._counts[MessageState.SCHEDULED] -= 1
                self._activate(msg, now, fresh=True)
        timers = self._expiry_timers
        while timers and timers[0][0] <= now:
            until, seq = heapq.heappop(timers)
            msg = self._messages.get(seq)
            if (
                msg is not None
                and msg.expires_at == until
                and msg.state in (MessageState.ACTIVE, MessageState.DEFERRED)
            ):
                self._expire(msg)
        self._purge_dedup(now)
        became_available = self._counts[MessageState.ACTIVE] > before
        if self.dead_letter_queue is not None:
            became_available = self.dead_letter_queue.tick() or became_available
        return became_available

    def next_deadline(self) -> float | None:
        """Earliest pending timer (may be stale; firing early is harmless)."""
        heads = [h[0][0] for h in (self._lock_timers, self._schedule_timers, self._expiry_timers) if h]
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
                ttl = self.settings.default_ttl
                if msg.ttl is not None:
                    ttl = min(msg.ttl, ttl)
                msg.expires_at = now + ttl
                heapq.heappush(self._expiry_timers, (msg.expires_at, msg.seq))
        msg.state = MessageState.ACTIVE
        self._counts[MessageState.ACTIVE] += 1
        heapq.heappush(self._available, msg.seq)

    def _lock(self, msg: StoredMessage, now: float) -> None:
        token = uuid.uuid4()
        msg.lock_token = token
        msg.locked_until = now + self.settings.lock_duration
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
        if msg.expires_at is not None and msg.expires_at <= self._clock():
            self._set_state(msg, MessageState.ACTIVE)
            self._expire(msg)
            return
        self._set_state(msg, MessageState.ACTIVE)
        heapq.heappush(self._available, msg.seq)

    def _remove(self, msg: StoredMessage) -> None:
        self._drop_lock(msg)
        del self._messages[msg.seq]
        self._counts[msg.state] -= 1
        self.size_bytes -= msg.size

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
        msg.dead_letter_reason = reason
        msg.dead_letter_description = description
        msg.dead_letter_source = self.name
        msg.expires_at = None
        msg.deferred = False
        dlq._messages[msg.seq] = msg
        dlq.size_bytes += msg.size
        dlq._activate(msg, self._clock(), fresh=False)
