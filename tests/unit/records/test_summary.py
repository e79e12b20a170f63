"""The summary fold: counts by tenant, type and outcome, and the delivered-within-SLO share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from postbus.records.record import DeliveryRecord, Outcome
from postbus.records.summary import SummaryRow, summarize

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def record(
    n: int,
    outcome: Outcome,
    *,
    created: timedelta = timedelta(0),
    tenant: str | None = "clinic",
    type_: str | None = "appointment.reminder",
    delivered_after: timedelta | None = None,
    enqueued: bool = True,
) -> DeliveryRecord:
    at = T0 + created
    return DeliveryRecord(
        operation_id=f"op-{n}",
        outcome=outcome,
        outcome_at=at,
        created_at=at,
        updated_at=at,
        tenant=tenant,
        type=type_,
        first_enqueued=at if enqueued else None,
        delivered_at=None if delivered_after is None else at + delivered_after,
    )


def test_counts_and_the_share_delivered_within_the_objective() -> None:
    records = [
        record(1, Outcome.DELIVERED, delivered_after=timedelta(seconds=20)),
        record(2, Outcome.DELIVERED, delivered_after=timedelta(minutes=5)),  # exactly at the objective
        record(3, Outcome.DELIVERED, delivered_after=timedelta(minutes=5, seconds=1)),
        record(4, Outcome.DELIVERED, delivered_after=timedelta(seconds=5), enqueued=False),  # start unknown
        record(5, Outcome.BOUNCED, delivered_after=timedelta(seconds=10)),  # delivered, then bounced
        record(6, Outcome.DEAD_LETTERED, tenant=None, type_=None),
        record(7, Outcome.SENT, created=timedelta(hours=1)),  # at until: outside
        record(8, Outcome.SENT, created=-timedelta(microseconds=1)),  # before since: outside
    ]
    summary = summarize(records, since=T0, until=T0 + timedelta(hours=1))
    assert summary.total == 6
    assert summary.delivered_within_slo == 3
    assert summary.delivered_within_slo_share == pytest.approx(0.5)
    assert summary.share(Outcome.BOUNCED, Outcome.FAILED) == pytest.approx(1 / 6)
    assert summary.rows == (
        SummaryRow("", "", Outcome.DEAD_LETTERED, 1, 0, 0),
        SummaryRow("clinic", "appointment.reminder", Outcome.BOUNCED, 1, 1, 1),
        SummaryRow("clinic", "appointment.reminder", Outcome.DELIVERED, 4, 4, 2),
    )
    document = summary.to_json()
    assert json.loads(json.dumps(document))["by_outcome"] == {
        "bounced": 1,
        "dead_lettered": 1,
        "delivered": 4,
    }
    assert document["slo_seconds"] == 300.0


def test_an_empty_range_has_no_shares() -> None:
    summary = summarize([], since=T0, until=T0)
    assert (summary.total, summary.share(Outcome.DELIVERED), summary.delivered_within_slo_share) == (
        0,
        None,
        None,
    )
    with pytest.raises(ValueError, match="until must not be before since"):
        summarize([], since=T0, until=T0 - timedelta(seconds=1))
