"""The gate simulation (postbus.worker.throttle_sim): its server model, its clock, and the tuned targets.

The targets are checked in virtual time, so they are deterministic figures, not timed assertions.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbus.emulators.acs_email.quota import QuotaConfig, QuotaLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=60, deadline=None)
@given(
    per_minute=st.integers(min_value=1, max_value=8),
    per_hour=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.sampled_from([0.0, 0.3, 1.0, 7.5, 30.0, 59.9, 60.0, 600.0]), min_size=1, max_size=80),
)
def test_the_simulated_quota_answers_exactly_like_the_emulator(
    gate_sim: ModuleType, per_minute: int, per_hour: int, gaps: list[float]
) -> None:
    clock = Clock()
    emulator = QuotaLimiter(QuotaConfig(sends_per_minute=per_minute, sends_per_hour=per_hour), clock=clock)
    model = gate_sim.SlidingQuota(per_minute, per_hour, clock)
    for gap in gaps:
        clock.now += gap
        assert model.try_acquire() == emulator.try_acquire("send")


def test_the_virtual_clock_loop_sleeps_without_real_time(gate_sim: ModuleType) -> None:
    async def main() -> float:
        await asyncio.gather(asyncio.sleep(3600), asyncio.sleep(1800))
        return asyncio.get_running_loop().time()

    with asyncio.Runner(loop_factory=gate_sim.VirtualClockLoop) as runner:
        assert runner.run(main()) == pytest.approx(3600.0)


def test_the_virtual_clock_loop_reports_a_deadlock(gate_sim: ModuleType) -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with (
        asyncio.Runner(loop_factory=gate_sim.VirtualClockLoop) as runner,
        pytest.raises(RuntimeError, match="deadlock"),
    ):
        runner.run(main())


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_three_minute_burst_drains_at_the_quota_with_few_429s(gate_sim: ModuleType, workers: int) -> None:
    result = gate_sim.simulate(gate_sim.Scenario(f"q600-w{workers}", 600, 36_000, workers, 1800))
    assert result["utilisation"] >= 0.95, result
    assert result["throttled_share"] <= 0.02, result
    if workers == 1:
        assert result["throttled"] == 0, result


def test_a_lone_replica_at_the_azure_default_quota_is_never_throttled(gate_sim: ModuleType) -> None:
    # 30/min and 100/h: 250 events need the hour window to slide twice.
    result = gate_sim.simulate(gate_sim.Scenario("default", 30, 100, 1, 250, latency=(0.05, 1.5)))
    assert result["throttled"] == 0, result
    assert result["utilisation"] >= 0.99, result


def test_replicas_leaving_mid_spike_leave_no_quota_unused(gate_sim: ModuleType) -> None:
    # Three of four leave at 90 s: the survivor learnt 25 % and must find the rest within a minute.
    scenario = gate_sim.Scenario("leave", 1200, 72_000, 4, 6000, changes=((90.0, -3),))
    result = gate_sim.simulate(scenario)
    bins = result["rate_per_bin"][:-1]  # 10 s each; the last one is partial
    back = next(i for i in range(9, len(bins)) if bins[i] >= 0.9)
    assert back * 10 + 10 <= 90 + 60, result
    assert min(bins[back:]) >= 0.9, result
    assert result["throttled_share"] <= 0.02, result


@pytest.mark.parametrize("per_minute", [600, 30])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_burst_from_another_sender_at_low_traffic_is_forgotten_within_a_minute(
    gate_sim: ModuleType, per_minute: int, workers: int
) -> None:
    # Another application fills the window while the replicas trickle; the spike arrives 10 s later.
    scenario = gate_sim.Scenario(
        "foreign-low",
        per_minute,
        60 * per_minute,
        workers,
        3 * per_minute,
        trickle_per_minute=per_minute / 20,
        spike_at=113.0,
        foreign=(gate_sim.Foreign(at=100.0, seconds=3.0, rate=per_minute / 3.0),),
        sample_every=1.0,
    )
    result = gate_sim.simulate(scenario)
    assert result["foreign_accepted"] >= 0.9 * per_minute, result  # it really filled the window
    assert result["recovered_s"] is not None, result
    assert result["recovered_s"] <= 60, result


@pytest.mark.parametrize("workers", [2, 4])
def test_a_replica_killed_and_replaced_mid_spike_costs_little_quota(
    gate_sim: ModuleType, workers: int
) -> None:
    scenario = gate_sim.Scenario(
        "kill", 1200, 72_000, workers, 7200, kills=(gate_sim.Kill(at=120.0, replaced_after=15.0),)
    )
    result = gate_sim.simulate(scenario)
    assert result["utilisation"] >= 0.97, result
    assert result["throttled_share"] <= 0.02, result


@pytest.mark.parametrize("workers", [2, 4])
def test_with_the_roster_a_killed_replica_leaves_no_echo_of_catch_up_bursts(
    gate_sim: ModuleType, workers: int
) -> None:
    # The worker's setup: the gates are told the count by a roster with a 2 s heartbeat. The dead
    # replica ages out of it and its share goes to the survivors; the replacement joins. Without the
    # fair-share ceiling the survivors' regrowth overfills the window, and every minute after the
    # kill the bins swing between about 0.5 and 1.8 of the quota.
    scenario = gate_sim.Scenario(
        "kill-roster",
        1200,
        72_000,
        workers,
        7200,
        kills=(gate_sim.Kill(at=120.0, replaced_after=15.0),),
        roster=2.0,
    )
    result = gate_sim.simulate(scenario)
    after_kill = result["rate_per_bin"][14:-1]  # from 20 s after the kill; the last bin is partial
    assert min(after_kill) >= 0.85, result
    assert max(after_kill) <= 1.1, result
    assert result["utilisation"] >= 0.98, result
    assert result["throttled_share"] <= 0.005, result


def test_the_simulated_roster_counts_a_killed_replica_until_it_ages_out(gate_sim: ModuleType) -> None:
    from postbus.worker.throttle import AimdGate

    told: list[tuple[float, int | None]] = []

    class Recording(AimdGate):
        def set_replicas(self, count: int | None) -> None:
            told.append((asyncio.get_running_loop().time(), count))
            super().set_replicas(count)

    scenario = gate_sim.Scenario(
        "kill-roster", 600, 36_000, 2, 1200, kills=(gate_sim.Kill(at=30.0, replaced_after=20.0),), roster=2.0
    )
    gate_sim.simulate(scenario, Recording)
    ones = [t for t, count in told if count == 1 and t >= 1.0]
    # The first to join counts itself alone until its next beat, within the startup second; then two
    # until the dead one's last beat is three heartbeats old, and one until the new one joins
    assert all(count == 2 for t, count in told if 1.0 <= t < 30.0), told
    # (its last beat was up to a heartbeat before the kill, and the survivor sees it at its own beat)
    assert ones, told
    assert 30.0 + 4.0 <= min(ones) <= 30.0 + 8.0 + 1e-9, told
    assert max(ones) < 50.0 + 1e-9, told
    assert all(count == 2 for t, count in told if t >= 50.0 + 1e-9), told


@pytest.mark.parametrize(
    ("workers", "at_least", "at_most"), [(1, 0.0, 1.5), (2, 25.0, 35.0), (4, 40.0, 50.0)]
)
def test_the_longest_stall_shows_the_window_filled_by_replicas_starting_together(
    gate_sim: ModuleType, workers: int, at_least: float, at_most: float
) -> None:
    # W cold replicas each start at the whole quota, so together they fill the empty minute window in
    # 60/W s and ACS takes nothing until its first entries leave, at 60 s: a stall of 60 - 60/W s.
    # A lone replica only waits out the echo of its one-second burst. (docs/throttling.md: why a
    # start-up rule alone cannot remove this.)
    result = gate_sim.simulate(gate_sim.Scenario("cold", 1200, 72_000, workers, 3600))
    assert at_least <= result["longest_stall_s"] <= at_most, result


def test_an_experiment_runs_its_own_variant_of_the_gate(gate_sim: ModuleType) -> None:
    from postbus.worker.throttle import AimdGate

    made: list[AimdGate] = []

    class Variant(AimdGate):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(initial_share=0.5, **kwargs)
            made.append(self)

    scenario = gate_sim.Scenario("variant", 600, 36_000, 1, 300)
    variant, default = gate_sim.simulate(scenario, Variant), gate_sim.simulate(scenario)
    assert len(made) == 1
    # Starting at half the quota, the lone replica drains a half-minute backlog visibly slower.
    assert variant["utilisation"] < default["utilisation"] - 0.1, (variant, default)


def test_the_simulation_is_deterministic(gate_sim: ModuleType) -> None:
    scenario = gate_sim.Scenario("again", 600, 36_000, 2, 900, seed=7)
    assert gate_sim.simulate(scenario) == gate_sim.simulate(scenario)


@settings(max_examples=25, deadline=None)
@given(
    per_minute=st.integers(min_value=1, max_value=60),
    extra_hour=st.integers(min_value=0, max_value=120),
    slowest=st.floats(min_value=0.001, max_value=3.0),
    concurrency=st.integers(min_value=1, max_value=32),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_a_lone_replica_is_never_throttled_whatever_the_quota_and_latency(
    gate_sim: ModuleType, per_minute: int, extra_hour: int, slowest: float, concurrency: int, seed: int
) -> None:
    per_hour = per_minute + extra_hour
    scenario = gate_sim.Scenario(
        "lone",
        per_minute,
        per_hour,
        1,
        min(3 * per_minute, per_hour + 5),
        concurrency=concurrency,
        latency=(0.0, slowest),
        seed=seed,
    )
    result = gate_sim.simulate(scenario)
    assert result["throttled"] == 0, result
