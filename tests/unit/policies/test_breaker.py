"""The circuit breaker's state machine: opening, cool-down doubling and cap, the single probe."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from postbus.worker.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_new_breaker_is_closed_ready_and_allows_everything(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.ready
    assert all(breaker.allow() for _ in range(100))
    assert breaker.cooldown_remaining == 0.0
    assert breaker.last_error == ""


def test_a_failure_opens_it_until_the_cooldown_has_passed(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("401 Unauthorized")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.ready
    assert not breaker.allow()
    assert breaker.last_error == "401 Unauthorized"
    clock.now += 3
    assert breaker.cooldown_remaining == pytest.approx(2)
    clock.now += 2
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.ready


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("403")
    clock.now += 5
    assert breaker.allow()
    assert not breaker.allow()
    assert not breaker.allow()


def test_a_successful_probe_closes_and_resets_the_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("403")
    clock.now += 5
    assert breaker.allow()
    breaker.record_failure("403 again")  # probe failed: 10 s
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.ready
    breaker.record_failure("403 later")
    assert breaker.cooldown_remaining == pytest.approx(5)


def test_failed_probes_double_the_cooldown_up_to_the_maximum(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=30, clock=clock)
    breaker.record_failure("domain not verified")
    seen = []
    for _ in range(6):
        seen.append(breaker.cooldown_remaining)
        clock.now += breaker.cooldown_remaining
        assert breaker.allow()
        breaker.record_failure("domain not verified")
    assert seen == [5, 10, 20, 30, 30, 30]


def test_a_released_probe_lets_another_message_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("403")
    clock.now += 5
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()


def test_verdicts_from_before_the_opening_do_not_move_an_open_breaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("first")
    clock.now += 2
    breaker.record_success()  # an in-flight message that started while closed
    breaker.record_failure("second")  # another one: no extension, no doubling
    assert breaker.state is BreakerState.OPEN
    assert breaker.cooldown_remaining == pytest.approx(3)
    assert breaker.last_error == "second"


@pytest.mark.parametrize(("cooldown", "maximum"), [(0, 10), (-1, 10), (10, 5)])
def test_nonsense_cooldowns_are_rejected(cooldown: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="cooldown"):
        CircuitBreaker(cooldown=cooldown, max_cooldown=maximum)


async def test_wait_until_allowed_sleeps_out_the_cooldown_and_takes_the_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    await breaker.wait_until_allowed(fake_sleep)  # closed: no wait
    breaker.record_failure("401")
    await breaker.wait_until_allowed(fake_sleep)
    assert slept == [5]
    assert not breaker.allow()  # the caller holds the probe


async def test_a_second_waiter_waits_for_the_probe_verdict_without_polling(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("401")
    clock.now += 5
    assert breaker.allow()  # the probe is out

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"must not sleep while a probe is out ({seconds})")

    second = asyncio.create_task(breaker.wait_until_allowed(no_sleep))
    await asyncio.sleep(0)
    assert not second.done()
    breaker.record_success()
    await asyncio.wait_for(second, timeout=5)
    assert breaker.state is BreakerState.CLOSED


async def test_a_waiter_cancelled_while_waiting_for_a_verdict_leaves_nothing_behind(clock: FakeClock) -> None:
    breaker = CircuitBreaker(cooldown=5, max_cooldown=60, clock=clock)
    breaker.record_failure("401")
    clock.now += 5
    assert breaker.allow()
    waiter = asyncio.create_task(breaker.wait_until_allowed())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    breaker.release_probe()
    assert breaker.allow()  # the cancelled waiter did not take the probe


class BreakerMachine(RuleBasedStateMachine):
    """Model-based check against a straightforward reference model of the documented rules."""

    BASE, MAX = 4.0, 50.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker = CircuitBreaker(cooldown=self.BASE, max_cooldown=self.MAX, clock=self.clock)
        self.is_open = False
        self.opened_at = 0.0
        self.cooldown = self.BASE
        self.probe_out = False

    def model_state(self) -> BreakerState:
        if not self.is_open:
            return BreakerState.CLOSED
        if self.clock.now >= self.opened_at + self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @rule(dt=st.floats(min_value=0, max_value=120, allow_nan=False))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def allow(self) -> None:
        state = self.model_state()
        expected = state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self.probe_out)
        if state is BreakerState.HALF_OPEN and expected:
            self.probe_out = True
        assert self.breaker.allow() == expected

    @rule()
    def success(self) -> None:
        if self.model_state() is BreakerState.HALF_OPEN:
            self.is_open, self.probe_out, self.cooldown = False, False, self.BASE
        self.breaker.record_success()

    @rule(reason=st.sampled_from(["401", "403", "DomainNotVerified"]))
    def failure(self, reason: str) -> None:
        state = self.model_state()
        if state is not BreakerState.OPEN:
            if state is BreakerState.HALF_OPEN:
                self.cooldown = min(self.MAX, self.cooldown * 2)
            self.is_open, self.opened_at, self.probe_out = True, self.clock.now, False
        self.breaker.record_failure(reason)
        assert self.breaker.last_error == reason

    @precondition(lambda self: self.probe_out)
    @rule()
    def release(self) -> None:
        self.probe_out = False
        self.breaker.release_probe()

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.breaker.state is self.model_state()
        assert self.breaker.ready == (not self.is_open)
        assert self.BASE <= self.breaker.cooldown <= self.MAX
        if self.model_state() is BreakerState.OPEN:
            assert self.breaker.cooldown_remaining == pytest.approx(
                self.opened_at + self.cooldown - self.clock.now
            )
        else:
            assert self.breaker.cooldown_remaining == 0.0


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase
