"""The send gate told the replica count: share 1/n until its first 429, then AIMD scaled by old/new counts.

Everything runs on a virtual clock (``run_virtual``) with the gate's default tuning, growth with
time included, so "no growth before the first 429" is tested against the rules that would grow it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from postbus.worker.throttle import AimdGate, UnlimitedGate
from tests.gate_support import admitted, demand, now

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def make_gate(per_minute: int = 600, clock: Callable[[], float] = now) -> AimdGate:
    return AimdGate(per_minute=per_minute, per_hour=0, clock=clock)


def still() -> float:
    """A clock for the tests that never wait."""
    return 0.0


def test_a_gate_never_told_starts_at_the_whole_quota() -> None:
    gate = make_gate(clock=still)
    assert gate.replicas is None
    assert gate.share == 1.0


def test_told_two_replicas_it_paces_at_half_the_rate_and_does_not_grow_before_a_429(run_virtual: Run) -> None:
    async def main() -> tuple[list[float], float]:
        # Given a gate told at start that two replicas share the quota
        gate = make_gate(600)
        gate.set_replicas(2)
        # When it is kept busy for three minutes without a single 429
        stamps = await demand(gate, 180.0)
        return stamps, gate.share

    stamps, share = run_virtual(main())
    # Then it sends at half of 600/min the whole time: accepted sends and quiet time grew nothing
    assert share == 0.5
    for minute in range(3):
        assert admitted(stamps, 60.0 * minute + 1, 59.0) == pytest.approx(295, abs=2)


def test_a_count_that_falls_to_one_before_any_429_gives_the_whole_rate_back(run_virtual: Run) -> None:
    async def main() -> tuple[list[float], float]:
        gate = make_gate(600)
        gate.set_replicas(2)
        first = await demand(gate, 30.0)
        # When the other replica leaves the roster
        gate.set_replicas(1)
        second = await demand(gate, 30.0)
        return first + second, gate.share

    stamps, share = run_virtual(main())
    assert share == 1.0
    assert admitted(stamps, 5.0, 20.0) == pytest.approx(100, abs=2)  # 5/s
    assert admitted(stamps, 35.0, 20.0) == pytest.approx(200, abs=2)  # 10/s


def test_the_share_follows_the_count_up_and_down_before_any_429() -> None:
    gate = make_gate(600, clock=still)
    shares = []
    for count in (1, 4, 3, 8, 2):
        gate.set_replicas(count)
        shares.append(gate.share)
    assert shares == [1.0, 0.25, pytest.approx(1 / 3), 0.125, 0.5]
    assert gate.rate == pytest.approx(5.0)


def test_a_head_waiting_at_the_slow_pace_is_woken_when_the_count_falls(run_virtual: Run) -> None:
    async def main() -> float:
        # Given 60/min among four replicas: one permit every 4 s, and the burst of one already spent
        gate = make_gate(60)
        gate.set_replicas(4)
        await gate.acquire()
        gate.on_accepted()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0.5)
        assert not waiter.done()
        # When the roster says this replica is alone now
        gate.set_replicas(1)
        await waiter
        return now()

    # Then the waiting permit comes at the whole rate's pace (1/s), not after the 4 s it was waiting for
    granted_at = run_virtual(main())
    assert granted_at < 1.5


def test_after_a_429_a_new_count_scales_the_learnt_share_by_old_over_new(run_virtual: Run) -> None:
    async def main() -> tuple[float, float, float, float, int | None]:
        gate = make_gate(600)
        gate.set_replicas(4)
        sent = len(await demand(gate, 60.0))
        # When the window is full after a minute at a quarter of the rate (others used the rest): a 429
        gate.on_throttled(1.0)
        learnt = gate.share
        # Then AIMD owns the share, and a change of the count scales it: a replica gone, its share
        # goes to the others; more replicas, room is made for them
        gate.set_replicas(2)
        after_two = gate.share
        gate.set_replicas(8)
        return sent / 600, learnt, after_two, gate.share, gate.replicas

    measured, learnt, after_two, after_eight, replicas = run_virtual(main())
    assert learnt == pytest.approx(0.9 * measured, rel=0.03)
    assert after_two == pytest.approx(2 * learnt)
    assert after_eight == pytest.approx(learnt / 2)
    assert replicas == 8


def test_after_a_429_the_same_count_again_changes_nothing_and_a_share_never_passes_one(
    run_virtual: Run,
) -> None:
    async def main() -> tuple[float, float, float]:
        gate = make_gate(600)
        gate.set_replicas(2)
        await demand(gate, 60.0)
        gate.on_throttled(1.0)
        learnt = gate.share
        gate.set_replicas(2)
        same = gate.share
        gate.set_replicas(1)
        return learnt, same, gate.share

    learnt, same, alone = run_virtual(main())
    assert same == learnt
    assert alone == pytest.approx(min(1.0, 2 * learnt))
    assert alone <= 1.0


def test_after_a_429_the_share_grows_again_by_the_usual_rules(run_virtual: Run) -> None:
    async def main() -> tuple[float, float]:
        gate = make_gate(600)
        gate.set_replicas(4)
        await demand(gate, 60.0)
        gate.on_throttled(1.0)
        learnt = gate.share
        await demand(gate, 60.0)  # no more 429s: recovery, additive increase and regrowth apply
        return learnt, gate.share

    learnt, later = run_virtual(main())
    assert later > learnt


async def grown_after_a_429(count: int | None, **tuning: float) -> AimdGate:
    """A 600/min gate after a 429 at the end of a busy minute and three busy minutes without one.

    Recovery, additive increase and regrowth with time all apply in those three minutes.
    """
    gate = AimdGate(per_minute=600, per_hour=0, clock=now, **tuning)
    if count is not None:
        gate.set_replicas(count)
    await demand(gate, 60.0)
    gate.on_throttled(1.0)
    await demand(gate, 180.0)
    return gate


def test_after_a_429_growth_stops_at_the_fair_share_of_the_count(run_virtual: Run) -> None:
    async def main() -> tuple[float, float, float]:
        gate = await grown_after_a_429(2)
        two = gate.share
        # When the count falls to one, then rises to four
        gate.set_replicas(1)
        one = gate.share
        gate.set_replicas(4)
        return two, one, gate.share

    two, one, four = run_virtual(main())
    # Then the share stops at 1/n: the replicas together never pace above the quota
    assert two == pytest.approx(0.5)
    assert one == pytest.approx(1.0)
    assert four == pytest.approx(0.25)


def test_without_a_ceiling_a_told_gate_grows_past_its_fair_share(run_virtual: Run) -> None:
    async def main() -> float:
        return (await grown_after_a_429(2, ceiling=0.0)).share

    assert run_virtual(main()) > 0.9


def test_a_gate_never_told_the_count_may_grow_to_the_whole_quota(run_virtual: Run) -> None:
    async def main() -> float:
        return (await grown_after_a_429(None)).share

    assert run_virtual(main()) == pytest.approx(1.0)


def test_an_unknown_count_lifts_the_ceiling_until_a_count_is_known_again(run_virtual: Run) -> None:
    async def main() -> tuple[float, float, float]:
        # Given two replicas and a share held at 1/2 by the ceiling after a 429
        gate = await grown_after_a_429(2)
        capped = gate.share
        # When the roster has been unreachable long enough that replicas may have gone unseen
        gate.set_replicas(None)
        await demand(gate, 60.0)
        unknown = gate.share
        # And then answers with two replicas again
        gate.set_replicas(2)
        return capped, unknown, gate.share

    capped, unknown, known = run_virtual(main())
    # Then without a known count AIMD alone grows the share (it may find a departed replica's quota),
    # and a known count brings the ceiling back at once
    assert capped == pytest.approx(0.5)
    assert unknown > 0.9
    assert known == pytest.approx(0.5)


def test_an_unknown_count_before_any_429_keeps_the_last_counts_share(run_virtual: Run) -> None:
    async def main() -> float:
        gate = make_gate(600)
        gate.set_replicas(4)
        gate.set_replicas(None)
        await demand(gate, 120.0)
        return gate.share

    # An optimistic start is the clump the count prevents; the last count's share stays, without growth
    assert run_virtual(main()) == 0.25


def test_a_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make_gate(clock=still).set_replicas(0)


def test_the_unlimited_gate_ignores_the_count() -> None:
    gate = UnlimitedGate()
    gate.set_replicas(4)
    assert gate.rate == float("inf")
