"""Sliding per-minute and per-hour windows with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbus.emulators.acs_email.quota import PRESETS, QuotaConfig, QuotaLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_presets_carry_the_documented_limits() -> None:
    assert QuotaConfig.parse("azure-default") == QuotaConfig(30, 100, 60, 200, name="azure-default")
    assert QuotaConfig.parse("azure-managed") == QuotaConfig(5, 10, 10, 20, name="azure-managed")
    assert QuotaConfig.parse("unlimited").limits("send") == (None, None)


def test_custom_values_set_status_limits_to_twice_the_send_limits() -> None:
    assert QuotaConfig.parse("3,7").limits("status") == (6, 14)
    assert QuotaConfig.parse("3,7,1,2").limits("status") == (1, 2)


@pytest.mark.parametrize("text", ["", "fast", "1", "1,2,3", "0,5", "-1,5", "a,b"])
def test_malformed_quotas_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="quota"):
        QuotaConfig.parse(text)


def test_the_minute_window_slides_and_retry_after_counts_to_the_oldest_entry() -> None:
    clock = FakeClock()
    limiter = QuotaLimiter(QuotaConfig.parse("2,100"), clock=clock)
    # Given two sends ten seconds apart
    assert limiter.try_acquire("send") is None
    clock.now += 10
    assert limiter.try_acquire("send") is None
    # When a third comes five seconds later, it waits until the first leaves the window
    clock.now += 5
    assert limiter.try_acquire("send") == 45
    # Then at 59.5 s it still waits (rounded up to a whole second), at 60 s it is admitted
    clock.now += 44.5
    assert limiter.try_acquire("send") == 1
    clock.now += 0.5
    assert limiter.try_acquire("send") is None


def test_the_hour_window_applies_after_the_minute_window_frees() -> None:
    clock = FakeClock()
    limiter = QuotaLimiter(QuotaConfig.parse("30,100"), clock=clock)
    for i in range(100):
        clock.now = 1000.0 + i * 2.5  # 24 per minute: never minute-bound
        assert limiter.try_acquire("send") is None
    # The 101st waits until the first send of the hour expires
    wait = limiter.try_acquire("send")
    assert wait == pytest.approx(3600 - 247.5, abs=1)


def test_send_and_status_buckets_are_separate() -> None:
    clock = FakeClock()
    limiter = QuotaLimiter(QuotaConfig.parse("1,1,2,2"), clock=clock)
    assert limiter.try_acquire("send") is None
    assert limiter.try_acquire("send") is not None
    assert limiter.try_acquire("status") is None
    assert limiter.try_acquire("status") is None
    assert limiter.try_acquire("status") is not None


def test_retry_after_is_never_below_one_second() -> None:
    clock = FakeClock()
    limiter = QuotaLimiter(QuotaConfig.parse("1,10"), clock=clock)
    limiter.try_acquire("send")
    clock.now += 59.999
    assert limiter.try_acquire("send") == 1


def test_changing_the_config_applies_to_admissions_already_made() -> None:
    clock = FakeClock()
    limiter = QuotaLimiter(PRESETS["unlimited"], clock=clock)
    limiter.set_config(QuotaConfig.parse("2,10"))
    assert limiter.try_acquire("send") is None
    assert limiter.try_acquire("send") is None
    limiter.set_config(QuotaConfig.parse("1,10"))
    assert limiter.try_acquire("send") == 60


@given(gaps=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=80))
def test_no_minute_ever_admits_more_than_the_limit(gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = QuotaLimiter(QuotaConfig.parse("5,1000"), clock=clock)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        wait = limiter.try_acquire("send")
        if wait is None:
            admitted.append(clock.now)
        else:
            assert wait >= 1
    for t in admitted:
        assert sum(1 for u in admitted if t - 60 < u <= t) <= 5
