"""Outcomes over a time range, by outcome, tenant and type: what ``postbus report`` prints.

A pure fold over records, so every store answers the same way: a store only streams the records
first written (``created_at``) in ``[since, until)`` and :func:`summarize` does the counting. The
service-level share is "delivered within ``slo`` of first enqueue" over all records in the range;
a record without a known first enqueue or delivery time does not count as within.

Example::

    summary = await store.summary(since=now - timedelta(hours=1), until=now)
    summary.share(Outcome.BOUNCED, Outcome.FAILED)      # bounce + failed share, e.g. 0.004
    summary.delivered_within_slo_share                  # e.g. 0.985
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from postbus.records.record import DeliveryRecord, Outcome

__all__ = ["DEFAULT_SLO", "Summary", "SummaryRow", "summarize"]

#: The delivery objective the issue names: delivered within 5 minutes of first enqueue.
DEFAULT_SLO: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Records of one tenant, type and outcome (``""`` where the record does not know)."""

    tenant: str
    type: str
    outcome: Outcome
    count: int
    #: Of ``count``: records ACS reported delivered at some point, and those within the objective.
    delivered: int
    delivered_within_slo: int


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts over ``[since, until)``; rows sorted by tenant, type, outcome."""

    since: datetime
    until: datetime
    slo: timedelta
    rows: tuple[SummaryRow, ...]
    #: Seconds from first enqueue to ACS acceptance, and to delivery, of every record that knows
    #: both ends (for percentiles: the console's latency tiles).
    accepted_seconds: tuple[float, ...] = ()
    delivered_seconds: tuple[float, ...] = ()

    @property
    def total(self) -> int:
        """Records in the range."""
        return sum(row.count for row in self.rows)

    def count(self, *outcomes: Outcome, tenant: str | None = None, type: str | None = None) -> int:
        """Records with any of ``outcomes`` (all when none given), optionally of one tenant/type."""
        return sum(
            row.count
            for row in self.rows
            if (not outcomes or row.outcome in outcomes)
            and (tenant is None or row.tenant == tenant)
            and (type is None or row.type == type)
        )

    def share(self, *outcomes: Outcome) -> float | None:
        """Fraction of all records with any of ``outcomes``; ``None`` for an empty range."""
        return self.count(*outcomes) / self.total if self.total else None

    def by_outcome(self) -> dict[Outcome, int]:
        """Records per outcome, outcomes with none left out."""
        counts: Counter[Outcome] = Counter()
        for row in self.rows:
            counts[row.outcome] += row.count
        return dict(counts)

    @property
    def delivered_within_slo(self) -> int:
        """Records delivered within :attr:`slo` of their first enqueue."""
        return sum(row.delivered_within_slo for row in self.rows)

    @property
    def delivered_within_slo_share(self) -> float | None:
        """:attr:`delivered_within_slo` over all records; ``None`` for an empty range."""
        return self.delivered_within_slo / self.total if self.total else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json`` output)."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "slo_seconds": self.slo.total_seconds(),
            "total": self.total,
            "by_outcome": {outcome.value: n for outcome, n in sorted(self.by_outcome().items())},
            "delivered_within_slo": self.delivered_within_slo,
            "delivered_within_slo_share": self.delivered_within_slo_share,
            "rows": [
                {
                    "tenant": row.tenant,
                    "type": row.type,
                    "outcome": row.outcome.value,
                    "count": row.count,
                    "delivered": row.delivered,
                    "delivered_within_slo": row.delivered_within_slo,
                }
                for row in self.rows
            ],
        }


def summarize(
    records: Iterable[DeliveryRecord], *, since: datetime, until: datetime, slo: timedelta = DEFAULT_SLO
) -> Summary:
    """Count the records first written in ``[since, until)``; others are skipped."""
    if until < since:
        raise ValueError("until must not be before since")
    counts: Counter[tuple[str, str, Outcome]] = Counter()
    delivered: Counter[tuple[str, str, Outcome]] = Counter()
    within: Counter[tuple[str, str, Outcome]] = Counter()
    accepted_seconds: list[float] = []
    delivered_seconds: list[float] = []
    limit = slo.total_seconds()
    for record in records:
        if not since <= record.created_at < until:
            continue
        key = (record.tenant or "", record.type or "", record.outcome)
        counts[key] += 1
        if record.delivered_at is not None:
            delivered[key] += 1
        latency = record.delivery_latency
        if latency is not None:
            delivered_seconds.append(latency)
            if latency <= limit:
                within[key] += 1
        if record.accepted_at is not None and record.first_enqueued is not None:
            accepted_seconds.append(max(0.0, (record.accepted_at - record.first_enqueued).total_seconds()))
    rows = tuple(
        SummaryRow(
            tenant, type_, outcome, n, delivered[(tenant, type_, outcome)], within[(tenant, type_, outcome)]
        )
        for (tenant, type_, outcome), n in sorted(counts.items())
    )
    return Summary(
        since=since,
        until=until,
        slo=slo,
        rows=rows,
        accepted_seconds=tuple(accepted_seconds),
        delivered_seconds=tuple(delivered_seconds),
    )
