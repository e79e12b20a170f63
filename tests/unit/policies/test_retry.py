"""Backoff bounds and distribution, and the attempt/age budget."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbus.worker.retry import RetryBudget, backoff

bases = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
caps = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(attempt=st.integers(min_value=0, max_value=20_000), base=bases, cap=caps, seed=st.integers())
def test_backoff_stays_within_zero_and_the_capped_exponential(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    ceiling = cap if attempt > 1000 else min(cap, base * 2.0**attempt)
    assert 0.0 <= delay <= ceiling


def test_huge_attempts_saturate_at_the_cap_without_overflow() -> None:
    rng = random.Random(7)
    delays = [backoff(10_000, base=1.0, cap=30.0, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    # Saturated, not collapsed: the spread reaches well into the upper half of the cap.
    assert max(delays) > 25.0


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff(a, base=0.5, cap=60.0, rng=random.Random(42)) for a in range(10)]
    again = [backoff(a, base=0.5, cap=60.0, rng=random.Random(42)) for a in range(10)]
    assert first == again


def test_full_jitter_is_roughly_uniform_over_the_interval() -> None:
    # Given 20,000 draws from a seeded generator for a ceiling of 8 s (base 1, attempt 3)
    rng = random.Random(1234)
    n, bins = 20_000, 10
    counts = [0] * bins
    for _ in range(n):
        counts[min(bins - 1, int(backoff(3, base=1.0, cap=100.0, rng=rng) / 8.0 * bins))] += 1
    # Then a chi-square test against the uniform distribution passes at p = 0.001 (df = 9: 27.88)
    expected = n / bins
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 27.88, counts


def test_zero_base_or_cap_means_no_wait() -> None:
    assert backoff(5, base=0.0, cap=10.0) == 0.0
    assert backoff(5, base=1.0, cap=0.0) == 0.0


@pytest.mark.parametrize(("attempt", "base", "cap"), [(-1, 1.0, 1.0), (0, -1.0, 1.0), (0, 1.0, -1.0)])
def test_invalid_backoff_arguments_are_rejected(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        backoff(attempt, base=base, cap=cap)


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_budget_allows_retries_until_the_attempts_are_spent() -> None:
    budget = RetryBudget(max_attempts=8, max_age=24 * 3600)
    assert budget.exhausted(attempt=0, first_enqueued=NOW, now=NOW) is None
    assert budget.exhausted(attempt=6, first_enqueued=NOW, now=NOW) is None
    assert budget.exhausted(attempt=7, first_enqueued=NOW, now=NOW) == "8 attempts made, budget is 8"


def test_budget_ends_with_the_age_of_the_first_enqueue() -> None:
    budget = RetryBudget(max_attempts=8, max_age=24 * 3600)
    first = NOW - timedelta(hours=26)
    assert budget.exhausted(attempt=1, first_enqueued=first, now=NOW) == (
        "first enqueued 26 h ago, max age 24 h"
    )
    assert budget.exhausted(attempt=1, first_enqueued=NOW - timedelta(hours=23), now=NOW) is None


def test_unknown_first_enqueue_only_counts_attempts() -> None:
    budget = RetryBudget(max_attempts=3, max_age=60)
    assert budget.exhausted(attempt=1, first_enqueued=None, now=NOW) is None
    assert budget.exhausted(attempt=2, first_enqueued=None, now=NOW) == "3 attempts made, budget is 3"


def test_short_ages_are_reported_in_readable_units() -> None:
    budget = RetryBudget(max_attempts=99, max_age=90)
    reason = budget.exhausted(attempt=0, first_enqueued=NOW - timedelta(seconds=150), now=NOW)
    assert reason == "first enqueued 2.5 min ago, max age 1.5 min"


@given(
    attempt=st.integers(min_value=0, max_value=100),
    max_attempts=st.integers(min_value=1, max_value=50),
    age_s=st.floats(min_value=0, max_value=1e7),
)
def test_budget_verdict_matches_its_definition(attempt: int, max_attempts: int, age_s: float) -> None:
    budget = RetryBudget(max_attempts=max_attempts, max_age=3600)
    reason = budget.exhausted(attempt=attempt, first_enqueued=NOW - timedelta(seconds=age_s), now=NOW)
    assert (reason is None) == (attempt + 1 < max_attempts and age_s < 3600)


@pytest.mark.parametrize(("attempts", "age"), [(0, 60.0), (1, 0.0), (1, -1.0)])
def test_budget_rejects_nonsense_limits(attempts: int, age: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryBudget(max_attempts=attempts, max_age=age)
