"""The send gate: pacing, pauses, FIFO and cancellation, the window mirror, and the AIMD rules.

Everything runs on a virtual clock (``run_virtual``): the gate's injected clock is the loop's time
and its sleep is ``asyncio.sleep``, so an hour of pacing takes milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbus.worker.throttle import AimdGate, AimdTuning, SendGate, UnlimitedGate, gate_for_quota
from tests.gate_support import admitted, demand, now

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def make_gate(per_minute: int = 600, per_hour: int = 0, **overrides: float) -> AimdGate:
    """A gate on the loop's clock; growth with time is off unless a test turns it on (it has its own)."""
    return AimdGate(per_minute=per_minute, per_hour=per_hour, clock=now, **({"regrow_time": 0.0} | overrides))


# ---- construction -------------------------------------------------------------------------------


def test_gate_for_quota_picks_the_gate_by_configured_limits() -> None:
    assert isinstance(gate_for_quota(0, 0), UnlimitedGate)
    gate = gate_for_quota(600, 20_000)
    assert isinstance(gate, AimdGate)
    assert gate.rate == pytest.approx(10.0)
    hour_only = gate_for_quota(0, 1200)
    assert hour_only.rate == pytest.approx(20.0)  # as if a minute could carry the hour's quota


def test_both_gates_satisfy_the_protocol() -> None:
    gates: list[SendGate] = [UnlimitedGate(), AimdGate(per_minute=30, per_hour=100)]
    assert [g.paused_until for g in gates] == [0.0, 0.0]


@pytest.mark.parametrize(("per_minute", "per_hour"), [(0, 0), (-1, 100), (30, -1)])
def test_nonsense_limits_are_rejected(per_minute: int, per_hour: int) -> None:
    with pytest.raises(ValueError, match="limits"):
        AimdGate(per_minute=per_minute, per_hour=per_hour)


@pytest.mark.parametrize(
    "overrides",
    [
        {"initial_share": 0.0},
        {"initial_share": 1.5},
        {"decrease": 1.0},
        {"max_boost": 0.5},
        {"burst": 0.0},
        {"hold": -1.0},
    ],
)
def test_nonsense_tuning_is_rejected(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        AimdGate(per_minute=600, per_hour=0, **overrides)


def test_tuning_can_be_passed_as_an_object_and_overridden() -> None:
    gate = AimdGate(per_minute=600, per_hour=0, tuning=AimdTuning(decrease=0.5), increase=0.01)
    assert gate.tuning == AimdTuning(decrease=0.5, increase=0.01)


# ---- pacing and pauses ---------------------------------------------------------------------------


def test_a_fresh_gate_paces_at_the_full_per_minute_rate(run_virtual: Run) -> None:
    async def main() -> list[float]:
        gate = make_gate(600)
        times = []
        for _ in range(50):
            await gate.acquire()
            times.append(now())
            gate.on_accepted()
        return times

    times = run_virtual(main())
    # A burst of about one second's worth, then one permit every 0.1 s.
    gaps = [b - a for a, b in itertools.pairwise(times[10:])]
    assert all(g == pytest.approx(0.1, abs=1e-6) for g in gaps)
    assert times[-1] == pytest.approx(4.0, abs=0.15)


def test_a_429_pauses_every_new_send_until_retry_after_has_passed(run_virtual: Run) -> None:
    async def main() -> tuple[float, float, float]:
        gate = make_gate(600)
        await gate.acquire()
        gate.on_throttled(7.0)
        paused_until = gate.paused_until
        await gate.acquire()
        return paused_until, now(), gate.share

    paused_until, resumed_at, share = run_virtual(main())
    assert paused_until == pytest.approx(7.0)
    assert resumed_at >= 7.0
    assert share < 1.0


def test_the_unlimited_gate_is_immediate_but_still_honours_a_pause(run_virtual: Run) -> None:
    async def main() -> tuple[float, float]:
        gate = UnlimitedGate(clock=now)
        for _ in range(1000):
            await gate.acquire()
            gate.on_accepted()
        first = now()
        gate.on_throttled(3.0)
        await gate.acquire()
        return first, now()

    first, resumed_at = run_virtual(main())
    assert first == 0.0
    assert resumed_at == pytest.approx(3.0)
    assert UnlimitedGate().rate == math.inf


def test_a_garbage_retry_after_is_capped(run_virtual: Run) -> None:
    async def main() -> list[float]:
        gate = make_gate(600, max_pause=120.0)
        gate.on_throttled(10**9)
        first = gate.paused_until
        gate.on_throttled(math.inf)
        second = gate.paused_until
        gate.on_throttled(-5)
        return [first, second, gate.paused_until]

    assert run_virtual(main()) == [120.0, 120.0, 120.0]


# ---- concurrency: FIFO, no busy-waiting, cancellation ---------------------------------------------


def test_concurrent_waiters_get_permits_in_arrival_order(run_virtual: Run) -> None:
    async def main() -> list[int]:
        gate = make_gate(60)  # one permit per second
        order: list[int] = []

        async def waiter(i: int) -> None:
            await gate.acquire()
            order.append(i)

        tasks = []
        for i in range(16):
            tasks.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0)  # arrival order = creation order
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(main()) == list(range(16))


def test_waiting_does_not_spin(run_virtual: Run) -> None:
    # Given a gate paused for an hour and 16 waiters, the loop runs a handful of callbacks, not millions.
    async def main() -> int:
        gate = make_gate(600)
        gate.on_throttled(3600.0)
        sleeps = 0
        real_sleep = asyncio.sleep

        async def counting_sleep(seconds: float) -> None:
            nonlocal sleeps
            sleeps += 1
            await real_sleep(seconds)

        gate._sleep = counting_sleep
        await asyncio.gather(*(gate.acquire() for _ in range(16)))
        return sleeps

    assert run_virtual(main()) <= 16 * 3


def test_a_cancelled_waiter_takes_no_permit_and_keeps_the_queue_moving(run_virtual: Run) -> None:
    async def main() -> tuple[list[str], int]:
        gate = make_gate(60)  # one permit per second; the first is free
        got: list[str] = []

        async def waiter(name: str) -> None:
            await gate.acquire()
            got.append(name)

        await gate.acquire()  # uses the burst
        head = asyncio.create_task(waiter("head"))
        await asyncio.sleep(0)
        middle = asyncio.create_task(waiter("middle"))
        await asyncio.sleep(0)
        tail = asyncio.create_task(waiter("tail"))
        await asyncio.sleep(0.5)
        middle.cancel()
        head.cancel()  # the sleeping head, too
        await asyncio.gather(head, middle, return_exceptions=True)
        await tail
        return got, gate.in_flight

    got, in_flight = run_virtual(main())
    assert got == ["tail"]
    assert in_flight == 2  # the first permit and the tail's: cancelled waiters took none


def test_the_head_wakes_when_a_verdict_frees_the_window(run_virtual: Run) -> None:
    async def main() -> float:
        gate = make_gate(3, burst=100.0)  # three per minute, and enough burst to try a fourth at once
        for _ in range(3):
            await gate.acquire()
        fourth = asyncio.create_task(gate.acquire())
        await asyncio.sleep(2.0)
        assert not fourth.done()  # the window is full of sends in flight
        gate.on_throttled(1.0)  # one of them was refused: its slot is free again after the pause
        await fourth
        return now()

    assert run_virtual(main()) == pytest.approx(3.0)


def test_sends_without_a_verdict_count_after_the_pending_timeout(run_virtual: Run) -> None:
    async def main() -> float:
        gate = make_gate(2, pending_timeout=10.0, burst=10.0)
        await gate.acquire()
        await gate.acquire()  # neither ever gets a verdict (a 5xx, say)
        await gate.acquire()  # counted at t = 10 s, so they leave the window at t = 70 s
        return now()

    assert run_virtual(main()) == pytest.approx(70.0, abs=0.1)


# ---- the window mirror ----------------------------------------------------------------------------


def test_a_lone_gate_never_lets_its_minute_window_exceed_the_limit(run_virtual: Run) -> None:
    # Given answers that arrive 0-2 s after the permit, a replica alone at share 1
    async def main() -> list[float]:
        gate = make_gate(30, 100, burst=100.0)
        stamps: list[float] = []
        rng = random.Random(5)

        async def send() -> None:
            await gate.acquire()
            latency = rng.uniform(0.0, 2.0)
            await asyncio.sleep(latency / 2)
            stamps.append(now())  # the server's admission stamp
            await asyncio.sleep(latency / 2)
            gate.on_accepted()

        await asyncio.gather(*(send() for _ in range(130)))
        return sorted(stamps)

    stamps = run_virtual(main())
    # Then no 60 s window holds more than 30 and no hour more than 100 (the 101st waits for the hour).
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < t + 60.0) <= 30
        assert sum(1 for s in stamps[i:] if s < t + 3600.0) <= 100
    assert stamps[100] >= 3600.0


# ---- decrease and increase ------------------------------------------------------------------------


def test_the_decrease_uses_the_measured_share_and_happens_once_per_episode(run_virtual: Run) -> None:
    async def main() -> tuple[float, float, int]:
        gate = make_gate(600, decrease=0.5, initial_share=0.25, increase=0.0)
        await demand(gate, 60.0)  # paced all minute: 150 of the 600 in the window are ours
        for _ in range(5):  # one burst of concurrent 429s is one signal
            gate.on_throttled(1.0)
        first = gate.share
        await asyncio.sleep(1.5)
        gate.on_throttled(1.0)  # after the pause: a new episode
        return first, gate.share, gate.throttle_episodes

    first, second, episodes = run_virtual(main())
    assert first == pytest.approx(0.5 * 150 / 600, rel=0.03)
    assert second == pytest.approx(0.5 * first, rel=0.05)
    assert episodes == 2


def test_replicas_that_filled_the_window_together_learn_their_share_from_one_429(run_virtual: Run) -> None:
    # Four replicas start at share 1 and fill the window in 15 s: Retry-After (46 s) says the window
    # spans only the 15 s this replica was bound, so the 25 % it holds is its share.
    async def main() -> tuple[int, float]:
        gate = make_gate(600, decrease=0.9, increase=0.0)
        sent = len(await demand(gate, 15.0))
        gate.on_throttled(46.0)
        return sent, gate.share

    sent, share = run_virtual(main())
    assert sent / 600 < 0.3
    assert share == pytest.approx(0.9 * sent / 600, rel=0.02)


# ---- recovery after a disturbance ------------------------------------------------------------------


@pytest.mark.parametrize("per_minute", [600, 30])
def test_a_429_taken_at_low_traffic_does_not_become_the_ceiling(run_virtual: Run, per_minute: int) -> None:
    # Another application filled the window while this replica sent 3 emails a minute; then a spike.
    async def main() -> tuple[int, float]:
        gate = make_gate(per_minute)
        for _ in range(3):
            await gate.acquire()
            gate.on_accepted()
            await asyncio.sleep(20.0)
        await gate.acquire()
        gate.on_throttled(40.0)
        resumed = gate.paused_until
        stamps = await demand(gate, 120.0)
        return admitted(stamps, resumed, 60.0), resumed

    sends, _ = run_virtual(main())
    assert sends >= 0.9 * per_minute


def test_a_share_learnt_while_bound_is_kept_while_429s_keep_coming(run_virtual: Run) -> None:
    # A replica that keeps hitting a full window does not grow past what it learnt.
    async def main() -> float:
        gate = make_gate(600, initial_share=0.25, regrow_time=20.0, regrow_after=10.0, increase=0.0)
        for _ in range(6):
            await demand(gate, 10.0)
            gate.on_throttled(1.0)
        return gate.share

    assert run_virtual(main()) <= 0.25


@pytest.mark.parametrize("per_minute", [600, 30])
def test_after_a_quiet_stretch_the_share_regrows_with_time(run_virtual: Run, per_minute: int) -> None:
    # The replicas or the other sender that held 90 % of the window are gone: within a minute of the
    # pause the gate admits 90 % of the quota again, however few sends probing by sends alone allows.
    async def main() -> tuple[float, int]:
        gate = make_gate(per_minute, initial_share=0.1, increase=0.0, regrow_time=20.0, regrow_after=10.0)
        for _ in range(6):  # others hold 90 % of the window for a minute
            await demand(gate, 10.0)
            gate.on_throttled(1.0)
        learnt = gate.share
        resumed = gate.paused_until
        stamps = await demand(gate, 120.0)
        return learnt, admitted(stamps, resumed + 60.0, 60.0)

    learnt, sends = run_virtual(main())
    assert learnt < 0.12
    assert sends >= 0.9 * per_minute


def test_accepted_sends_grow_the_share_additively(run_virtual: Run) -> None:
    async def main() -> list[float]:
        gate = make_gate(600, initial_share=0.5, increase=0.001, max_boost=1.0)
        shares = [gate.share]
        for _ in range(100):
            await gate.acquire()
            gate.on_accepted()
            shares.append(gate.share)
        return shares

    shares = run_virtual(main())
    assert shares[-1] == pytest.approx(0.6)
    assert all(b - a == pytest.approx(0.001) for a, b in itertools.pairwise(shares))


def test_the_share_recovers_quickly_towards_the_measured_share(run_virtual: Run) -> None:
    async def main() -> tuple[float, float]:
        gate = make_gate(600, increase=0.0, recovery=5.0, decrease=0.5, initial_share=0.5)
        await demand(gate, 60.0)
        gate.on_throttled(1.0)  # measured 0.5, down to 0.25
        low = gate.share
        for _ in range(150):
            await gate.acquire()
            gate.on_accepted()
        return low, gate.share

    low, recovered = run_virtual(main())
    assert low == pytest.approx(0.25, rel=0.02)
    assert 0.45 < recovered <= 0.5


def test_a_long_retry_after_holds_growth_for_a_window(run_virtual: Run) -> None:
    async def main() -> tuple[float, float, float]:
        gate = make_gate(600, increase=0.01, recovery=0.0, hold=60.0)
        for _ in range(100):
            await gate.acquire()
            gate.on_accepted()
        gate.on_throttled(40.0)  # the window filled in a clump
        held = gate.share
        for _ in range(20):
            await gate.acquire()
            gate.on_accepted()
        during = gate.share
        await asyncio.sleep(60.0)
        await gate.acquire()
        gate.on_accepted()
        return held, during, gate.share

    held, during, after = run_virtual(main())
    assert during == held
    assert after > held


def test_the_share_stays_within_its_bounds(run_virtual: Run) -> None:
    async def main() -> tuple[float, float]:
        gate = make_gate(30, increase=0.5)
        for _ in range(40):
            gate.on_throttled(0.0)
            await asyncio.sleep(0.01)
        low = gate.share
        for _ in range(10):
            await gate.acquire()
            gate.on_accepted()
        return low, gate.share

    low, high = run_virtual(main())
    assert low == pytest.approx(1 / 30)  # at least one send per minute
    assert high == 1.0


@settings(max_examples=60, deadline=None)
@given(
    per_minute=st.integers(min_value=1, max_value=120),
    cancel_at=st.lists(
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=30.0)), min_size=1, max_size=24
    ),
)
def test_permits_go_in_arrival_order_and_cancelled_waiters_take_none(
    gate_sim: ModuleType, per_minute: int, cancel_at: list[float | None]
) -> None:
    async def main() -> tuple[list[int], list[int], int]:
        gate = make_gate(per_minute)
        granted: list[int] = []
        taken = 0
        take = gate._take

        def counting_take(now: float) -> None:
            nonlocal taken
            taken += 1
            take(now)

        gate._take = counting_take  # type: ignore[method-assign]

        async def waiter(i: int) -> None:
            await gate.acquire()
            granted.append(i)

        tasks = []
        for i in range(len(cancel_at)):
            tasks.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0)

        async def canceller(i: int, at: float) -> None:
            await asyncio.sleep(at)
            tasks[i].cancel()

        cancellers = [
            asyncio.create_task(canceller(i, at)) for i, at in enumerate(cancel_at) if at is not None
        ]
        await asyncio.gather(*tasks, *cancellers, return_exceptions=True)
        cancelled = [i for i, t in enumerate(tasks) if t.cancelled()]
        return granted, cancelled, taken

    with asyncio.Runner(loop_factory=gate_sim.VirtualClockLoop) as runner:
        granted, cancelled, taken = runner.run(main())
    assert granted == sorted(granted)
    assert set(granted).isdisjoint(cancelled)
    assert len(granted) + len(cancelled) == len(cancel_at)
    assert taken == len(granted)  # no permit was taken for a waiter that was then cancelled
