"""The precedence of record writes: the stored record must not depend on arrival order or repeats.

Hypothesis draws writes of one operation from small pools of values, so ties (same time, same
tier) and conflicts (two outcomes, two dead-letter reasons) come up often.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbus.records.record import (
    TEXT_LIMIT,
    DeliveryRecord,
    Outcome,
    from_fields,
    merge,
    merge_all,
    precedence,
    sent,
    to_fields,
)

OPERATION = "6d0c4c55-0e53-5b8e-9a7e-0f1b2c3d4e5f"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
times = st.sampled_from([T0 + timedelta(seconds=s) for s in (0, 1, 30, 3600)])
maybe_times = st.none() | times


def maybe(*values: object) -> st.SearchStrategy[object]:
    return st.none() | st.sampled_from(values)


writes = st.builds(
    DeliveryRecord,
    operation_id=st.just(OPERATION),
    outcome=st.sampled_from(Outcome),
    outcome_at=times,
    created_at=times,
    updated_at=times,
    event_id=maybe("order-1", "order-2"),
    generation=maybe(0, 1),
    tenant=maybe("shop", "clinic"),
    type=maybe("order.confirmation", "appointment.reminder"),
    recipient_domains=st.lists(
        st.sampled_from(["contoso.com", "fabrikam.com", "example.org"]), max_size=3
    ).map(tuple),
    first_enqueued=maybe_times,
    accepted_at=maybe_times,
    attempts=st.integers(0, 3),
    dead_letter_reason=maybe("RetriesExhausted", "InvalidEvent"),
    dead_letter_description=maybe("gave up", "bad address"),
    dead_lettered_at=maybe_times,
    status_message=maybe("550 5.1.1 unknown", "No error."),
    smtp_code=maybe(550, 250),
    smtp_status=maybe("5.1.1"),
    mail_server=maybe("mx1.fabrikam.com"),
    report_id=maybe("eg-1", "eg-2"),
    delivered_at=maybe_times,
    opened_at=maybe_times,
    clicked_at=maybe_times,
)


@given(
    st.lists(writes, min_size=1, max_size=6).flatmap(lambda ws: st.tuples(st.just(ws), st.permutations(ws)))
)
def test_the_end_state_does_not_depend_on_arrival_order(
    pair: tuple[list[DeliveryRecord], list[DeliveryRecord]],
) -> None:
    original, shuffled = pair
    assert merge_all(shuffled) == merge_all(original)


@given(st.lists(writes, min_size=1, max_size=6), st.data())
def test_repeated_writes_change_nothing(ws: list[DeliveryRecord], data: st.DataObject) -> None:
    repeats = data.draw(st.lists(st.sampled_from(ws), max_size=6))
    assert merge_all([*ws, *repeats]) == merge_all(ws)


@given(writes, writes, writes)
def test_merge_is_a_semilattice(a: DeliveryRecord, b: DeliveryRecord, c: DeliveryRecord) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a


@given(st.lists(writes, min_size=1, max_size=6))
def test_the_outcome_is_the_highest_precedence_write(ws: list[DeliveryRecord]) -> None:
    merged = merge_all(ws)
    winner = max(ws, key=precedence)
    assert (merged.outcome, merged.outcome_at, merged.status_message, merged.report_id) == (
        winner.outcome,
        winner.outcome_at,
        winner.status_message,
        winner.report_id,
    )
    # the field-wise rules
    assert merged.attempts == max(w.attempts for w in ws)
    assert merged.created_at == min(w.created_at for w in ws)
    assert merged.updated_at == max(w.updated_at for w in ws)
    assert set(merged.recipient_domains) == {d for w in ws for d in w.recipient_domains}
    known = [w.first_enqueued for w in ws if w.first_enqueued is not None]
    assert merged.first_enqueued == (min(known) if known else None)


@given(st.lists(writes, min_size=1, max_size=6))
def test_a_final_state_is_never_overwritten_by_an_earlier_or_non_final_one(ws: list[DeliveryRecord]) -> None:
    merged = merge_all(ws)
    finals = [w for w in ws if w.outcome.is_final]
    if finals:
        assert merged.outcome.is_final
    reports = [w for w in ws if w.outcome.from_report]
    if reports:
        assert merged.outcome.from_report
        assert merged.outcome_at == max(w.outcome_at for w in reports)


@given(writes)
def test_storage_fields_round_trip(record: DeliveryRecord) -> None:
    assert from_fields(to_fields(record)) == record
    as_text = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in to_fields(record).items()}
    assert from_fields(as_text) == record


def _report(outcome: Outcome, at: datetime) -> DeliveryRecord:
    return DeliveryRecord(
        operation_id=OPERATION, outcome=outcome, outcome_at=at, created_at=at, updated_at=at
    )


def test_the_later_report_wins_whatever_its_outcome() -> None:
    delivered, bounced = _report(Outcome.DELIVERED, T0), _report(Outcome.BOUNCED, T0 + timedelta(hours=1))
    assert merge(delivered, bounced).outcome is Outcome.BOUNCED
    assert merge(bounced, delivered).outcome is Outcome.BOUNCED
    late_delivery = _report(Outcome.DELIVERED, T0 + timedelta(hours=2))
    assert merge(bounced, late_delivery).outcome is Outcome.DELIVERED


def test_simultaneous_reports_resolve_to_the_more_severe() -> None:
    assert merge(_report(Outcome.DELIVERED, T0), _report(Outcome.FAILED, T0)).outcome is Outcome.FAILED
    assert merge(_report(Outcome.SUPPRESSED, T0), _report(Outcome.BOUNCED, T0)).outcome is Outcome.BOUNCED


def test_any_report_outranks_the_workers_view() -> None:
    dead = _report(Outcome.DEAD_LETTERED, T0 + timedelta(days=1))
    assert merge(dead, _report(Outcome.EXPIRED, T0)).outcome is Outcome.EXPIRED
    assert (
        merge(_report(Outcome.SENT, T0 + timedelta(days=1)), _report(Outcome.QUEUED, T0)).outcome
        is Outcome.SENT
    )
    assert merge(_report(Outcome.QUEUED, T0 + timedelta(days=1)), dead).outcome is Outcome.DEAD_LETTERED


def test_records_of_different_operations_do_not_merge() -> None:
    other = DeliveryRecord(
        operation_id="other", outcome=Outcome.SENT, outcome_at=T0, created_at=T0, updated_at=T0
    )
    with pytest.raises(ValueError, match="cannot merge records of"):
        merge(_report(Outcome.SENT, T0), other)


def test_records_normalise_and_refuse_what_they_must_not_hold() -> None:
    record = DeliveryRecord(
        operation_id=OPERATION,
        outcome=Outcome.SENT,
        outcome_at=datetime(2026, 3, 2, 10, 30, tzinfo=UTC).astimezone(),  # any zone in, UTC out
        created_at=T0,
        updated_at=T0,
        recipient_domains=("Fabrikam.COM", "contoso.com", "fabrikam.com"),
        dead_letter_description="x" * (TEXT_LIMIT + 50),
    )
    assert record.outcome_at.tzinfo is UTC
    assert record.recipient_domains == ("contoso.com", "fabrikam.com")
    assert record.dead_letter_description is not None
    assert len(record.dead_letter_description) == TEXT_LIMIT
    with pytest.raises(ValueError, match="never an address"):
        DeliveryRecord(
            operation_id=OPERATION,
            outcome=Outcome.SENT,
            outcome_at=T0,
            created_at=T0,
            updated_at=T0,
            recipient_domains=("jane@contoso.com",),
        )
    with pytest.raises(ValueError, match="has no time zone"):
        DeliveryRecord(
            operation_id=OPERATION,
            outcome=Outcome.SENT,
            outcome_at=datetime(2026, 3, 2),
            created_at=T0,
            updated_at=T0,
        )


def test_delivery_latency_is_from_first_enqueue() -> None:
    write = sent(
        operation_id=OPERATION,
        event_id="order-1",
        generation=0,
        tenant=None,
        type="order.confirmation",
        recipient_domains=[],
        first_enqueued=T0,
        attempts=1,
        accepted_at=T0 + timedelta(seconds=1),
    )
    delivered = merge(write, _report(Outcome.DELIVERED, T0 + timedelta(seconds=90)))
    assert delivered.delivered_at is None  # a hand-made report write without delivered_at
    assert (
        merge(
            write,
            DeliveryRecord(
                operation_id=OPERATION,
                outcome=Outcome.DELIVERED,
                outcome_at=T0 + timedelta(seconds=90),
                created_at=T0,
                updated_at=T0,
                delivered_at=T0 + timedelta(seconds=90),
            ),
        ).delivery_latency
        == 90.0
    )
    assert write.delivery_latency is None
