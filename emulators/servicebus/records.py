"""The records a queue keeps: settings, counts, per-message state, and the errors it raises."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "DEAD_LETTER_REASON_MAX_DELIVERY",
    "DEAD_LETTER_REASON_TTL",
    "Clock",
    "LockLostError",
    "MessageNotFoundError",
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
    """One message as the queue holds it once it needs state; ``body``/``annotations`` are opaque bytes.

    A message that was only enqueued (no annotations, default TTL, never delivered) is kept even
    more compactly, as its body alone; :meth:`MessageQueue.get` turns it into a ``StoredMessage``.
    """

    __slots__ = (
        "annotations",
        "body",
        "dead_letter",
        "deferred",
        "delivery_count",
        "enqueued_at",
        "lock_token",
        "locked_until",
        "seq",
        "state",
        "ttl",
    )

    def __init__(
        self,
        seq: int,
        body: bytes,
        *,
        annotations: bytes = b"",
        ttl: float | None = None,
        enqueued_at: float,
        state: MessageState = MessageState.ACTIVE,
    ) -> None:
        self.seq = seq
        self.body = body
        self.annotations = annotations
        self.ttl = ttl
        self.enqueued_at = enqueued_at
        self.delivery_count = 0
        self.state = state
        self.deferred = False
        self.lock_token: uuid.UUID | None = None
        self.locked_until = 0.0
        # (reason, description, source) once dead-lettered; one slot keeps live messages small.
        self.dead_letter: tuple[str | None, str | None, str] | None = None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.annotations)

    @property
    def dead_letter_reason(self) -> str | None:
        return None if self.dead_letter is None else self.dead_letter[0]

    @property
    def dead_letter_description(self) -> str | None:
        return None if self.dead_letter is None else self.dead_letter[1]

    @property
    def dead_letter_source(self) -> str | None:
        return None if self.dead_letter is None else self.dead_letter[2]

    @property
    def visible_state(self) -> MessageState:
        """State as Service Bus reports it (a locked message is active or deferred)."""
        if self.state is MessageState.LOCKED:
            return MessageState.DEFERRED if self.deferred else MessageState.ACTIVE
        return self.state
