"""Backoff for delayed retries and the budget that ends them.

Transient failures are retried by publishing a scheduled copy of the message. How long to wait is
:func:`backoff`: exponential with *full jitter* (AWS Architecture Blog, "Exponential Backoff And
Jitter"), because after an outage every replica retries the same batch at once, and full jitter
spreads those retries over the whole interval instead of clumping them at its end. When to stop is
:class:`RetryBudget`: a maximum number of attempts and a maximum age since the event was first
enqueued, so a message can neither retry forever nor arrive days late.

Throttling (429) does not go through either: waiting for quota is not the event's fault, so it
spends no attempt (see :mod:`worker.throttle`).

Example::

    delay = backoff(attempt, base=2.0, cap=300.0)
    budget = RetryBudget(max_attempts=8, max_age=24 * 3600)
    if (reason := budget.exhausted(attempt=attempt, first_enqueued=first, now=now)) is not None:
        ...  # dead-letter RetriesExhausted with ``reason``
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

__all__ = ["RetryBudget", "backoff"]

# 2.0 ** 1024 raises OverflowError; beyond this exponent the ceiling is the cap for any base > 0.
_MAX_EXPONENT = 1023


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): uniform in ``[0, min(cap, base * 2**attempt)]``.

    Huge attempt numbers are fine (the ceiling saturates at ``cap`` without overflow). Pass a seeded
    ``rng`` for reproducible delays; the default is the module-level generator.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, got base={base}, cap={cap}")
    if base == 0 or cap == 0:
        return 0.0
    ceiling = cap if attempt > _MAX_EXPONENT else min(cap, base * 2.0**attempt)
    return (rng or random).uniform(0.0, ceiling)


def _human(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How many delayed retries an event gets: at most ``max_attempts`` attempts and ``max_age`` seconds.

    The age is measured from the first enqueue (the ``postbus-first-enqueued`` property), not from the
    current copy, so re-publishing does not reset the clock.

    >>> budget = RetryBudget(max_attempts=3, max_age=3600)
    >>> budget.exhausted(attempt=2, first_enqueued=None, now=datetime(2026, 1, 1))
    '3 attempts made, budget is 3'
    """

    max_attempts: int
    max_age: float

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_age <= 0:
            raise ValueError(f"max_age must be > 0, got {self.max_age}")

    def exhausted(self, *, attempt: int, first_enqueued: datetime | None, now: datetime) -> str | None:
        """``None`` if another delayed retry is allowed after 0-based ``attempt``, else the reason why not.

        ``first_enqueued`` and ``now`` must both be timezone-aware (or both naive); ``None`` means
        the first enqueue time is unknown, and only the attempt count applies.
        """
        made = attempt + 1
        if made >= self.max_attempts:
            return f"{made} attempts made, budget is {self.max_attempts}"
        if first_enqueued is not None:
            age = (now - first_enqueued).total_seconds()
            if age >= self.max_age:
                return f"first enqueued {_human(age)} ago, max age {_human(self.max_age)}"
        return None
