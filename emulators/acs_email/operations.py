"""The operation store: send operations, their lifecycle and ``Operation-Id`` idempotency.

An accepted send is ``Running`` until ``succeed_after`` seconds have passed, then ``Succeeded``, or
``Failed`` with a realistic error when one of its recipients matches a :class:`FailureRule` (decided
at accept time, revealed at the same moment a success would be). The status is computed on read,
so nothing needs a timer.

Idempotency (undocumented for the real service; this is the Azure REST guideline's rule, revised
to 409 by microsoft/api-guidelines#517): a repeated ``Operation-Id`` with a byte-identical body
returns the original operation and stores nothing; with a different body it is a 409 ``Conflict``
(or, with ``conflict_status=400``, the older guideline's 400 ``BadRequest``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from postbus.emulators.acs_email.errors import ApiError

__all__ = [
    "DEFAULT_FAILURE_RULES",
    "FailureRule",
    "Operation",
    "OperationStore",
    "as_failure_rules",
]

RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
MAX_RETRY_AFTER_S = 60


@dataclass(frozen=True, slots=True)
class FailureRule:
    """Recipients matching ``pattern`` (a case-insensitive glob) make the operation fail with ``code``."""

    pattern: str
    code: str
    message: str

    def matches(self, address: str) -> bool:
        return fnmatch.fnmatchcase(address.lower(), self.pattern.lower())


DEFAULT_FAILURE_RULES: tuple[FailureRule, ...] = (
    FailureRule("*@bounce.test", "EmailDropped", "Email was dropped after several attempts to deliver."),
    FailureRule(
        "*@suppressed.test",
        "EmailDroppedAllRecipientsSuppressed",
        "Email was dropped because all recipients are on the suppression list.",
    ),
)


def as_failure_rules(rules: Iterable[FailureRule | Sequence[str]]) -> tuple[FailureRule, ...]:
    """Accept ``FailureRule`` objects or ``(pattern, code, message)`` tuples."""
    out: list[FailureRule] = []
    for rule in rules:
        if isinstance(rule, FailureRule):
            out.append(rule)
        elif len(rule) == 3:
            out.append(FailureRule(str(rule[0]), str(rule[1]), str(rule[2])))
        else:
            raise ValueError(f"failure rule must be (pattern, code, message), got {rule!r}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Operation:
    """One accepted send. ``outcome`` is the terminal status it will reach."""

    id: str
    body_hash: str
    created: float
    ready_at: float
    outcome: str
    error_code: str | None = None
    error_message: str | None = None

    def status(self, now: float) -> str:
        return RUNNING if now < self.ready_at else self.outcome

    def retry_after(self, now: float) -> int:
        """Seconds to the next useful poll: never 0 (the SDK would then wait 30 s), at most 60
        (so ``succeed_after=math.inf``, an operation stuck in Running, still polls every minute)."""
        remaining = self.ready_at - now
        return 1 if remaining <= 1 else math.ceil(min(remaining, MAX_RETRY_AFTER_S))

    def to_json(self, now: float) -> dict[str, object]:
        status = self.status(now)
        body: dict[str, object] = {"id": self.id, "status": status}
        if status == FAILED:
            body["error"] = {"code": self.error_code, "message": self.error_message}
        return body


class OperationStore:
    """Thread-safe map of operation id to :class:`Operation`; keeps ids for the emulator's lifetime."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}
        self._polled: set[str] = set()

    def now(self) -> float:
        return self._clock()

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(op_id)

    def first_read(self, op_id: str) -> bool:
        """True the first time an operation's status is read (for the 404-first fault)."""
        with self._lock:
            if op_id in self._polled:
                return False
            self._polled.add(op_id)
            return True

    def create(
        self,
        *,
        op_id: str | None,
        body: bytes,
        recipients: Sequence[str],
        succeed_after: float,
        rules: Sequence[FailureRule],
        conflict_status: int = 409,
    ) -> tuple[Operation, bool]:
        """Register a send; returns ``(operation, created)``; ``created`` is False for a replay.

        Raises :class:`ApiError` ``conflict_status`` when ``op_id`` exists with a different body.
        """
        body_hash = hashlib.sha256(body).hexdigest()
        op_id = op_id or str(uuid.uuid4())
        outcome, code, message = SUCCEEDED, None, None
        for rule in rules:
            if any(rule.matches(address) for address in recipients):
                outcome, code, message = FAILED, rule.code, rule.message
                break
        with self._lock:
            existing = self._ops.get(op_id)
            if existing is not None:
                if existing.body_hash == body_hash:
                    return existing, False
                raise ApiError(
                    conflict_status,
                    "Conflict" if conflict_status == 409 else "BadRequest",
                    f"An operation with Operation-Id '{op_id}' already exists with a different request body.",
                    target="Operation-Id",
                    reason="conflict",
                )
            now = self._clock()
            op = Operation(op_id, body_hash, now, now + max(0.0, succeed_after), outcome, code, message)
            self._ops[op_id] = op
            return op, True

    def clear(self) -> None:
        with self._lock:
            self._ops.clear()
            self._polled.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)
