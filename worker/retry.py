"""The retry policy: every retry timing of the worker, and the budget that ends retrying.

Transient failures get a few quick retries inside the message's lock, then a *delayed retry*: a
scheduled copy of the message. How long to wait is :func:`backoff`: exponential with *full jitter*
(AWS Architecture Blog, "Exponential Backoff And Jitter"), because after an outage every replica
retries the same batch at once, and full jitter spreads those retries over the whole interval
instead of clumping them at its end. When to stop is :class:`RetryBudget`: a maximum number of
attempts and a maximum age since the event was first enqueued, so a message can neither retry
forever nor arrive days late. :class:`RetryPolicy` holds both with the settings' numbers and the
fixed timings: the quick-retry pause, how long a handler sits out a 429, and when a message
abandoned during an outage is parked as a copy instead.

Throttling (429) spends no attempt: waiting for quota is not the event's fault (see
:mod:`worker.throttle`).

Example::

    policy = RetryPolicy.from_settings(settings)
    delay = policy.delayed_retry(spent=attempt, rng=rng)
    if (reason := policy.budget.exhausted(attempt=attempt, first_enqueued=first, now=now)) is not None:
        ...  # dead-letter RetriesExhausted with ``reason``
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from postbus.settings import Settings

__all__ = [
    "MAX_INLINE_THROTTLE_WAIT",
    "QUICK_RETRY_CAP",
    "QUICK_RETRY_DELAY",
    "SYSTEMIC_ABANDONS",
    "SYSTEMIC_RETRY_DELAY",
    "RetryBudget",
    "RetryPolicy",
    "backoff",
]

#: Base of the pause between quick in-process retries of a transient failure (doubled each time, jittered).
QUICK_RETRY_DELAY: Final = 0.2
#: Longest pause between two quick retries.
QUICK_RETRY_CAP: Final = 5.0
#: Longest 429 pause a handler sits out while holding the message (its lock is being renewed).
MAX_INLINE_THROTTLE_WAIT: Final = 30.0
#: Deliveries a message may be abandoned for during an outage before it is parked as a copy.
SYSTEMIC_ABANDONS: Final = 3
#: When a parked message comes back (the breaker decides when sending resumes).
SYSTEMIC_RETRY_DELAY: Final = 60.0

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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Every retry timing of the worker (see the module docstring); one per worker process."""

    budget: RetryBudget
    quick_attempts: int
    backoff_base: float
    backoff_cap: float
    quick_delay: float = QUICK_RETRY_DELAY
    quick_cap: float = QUICK_RETRY_CAP
    max_inline_throttle_wait: float = MAX_INLINE_THROTTLE_WAIT
    systemic_abandons: int = SYSTEMIC_ABANDONS
    systemic_retry_delay: float = SYSTEMIC_RETRY_DELAY

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy with the ``POSTBUS_RETRY_*`` numbers."""
        return cls(
            budget=RetryBudget(
                max_attempts=settings.retry_max_attempts, max_age=settings.retry_max_age_seconds
            ),
            quick_attempts=settings.retry_quick_attempts,
            backoff_base=settings.retry_backoff_base_seconds,
            backoff_cap=settings.retry_backoff_cap_seconds,
        )

    def quick_retry(self, tries: int, *, rng: random.Random | None = None) -> float:
        """Pause before quick retry number ``tries`` (1-based) inside the lock."""
        return backoff(tries, base=self.quick_delay, cap=self.quick_cap, rng=rng)

    def delayed_retry(self, *, spent: int, rng: random.Random | None = None) -> float:
        """Delay of the scheduled copy after ``spent`` attempts."""
        return backoff(spent, base=self.backoff_base, cap=self.backoff_cap, rng=rng)

    def parks_systemic(self, delivery_count: int) -> bool:
        """Whether a message abandoned for a systemic failure should wait as a copy instead.

        Abandons count towards MaxDeliveryCount; a long outage must not dead-letter a good message.
        """
        return delivery_count + 1 >= self.systemic_abandons
