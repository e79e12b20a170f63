"""The delivery record: one entry per event and send generation, from enqueue to ACS's last word.

Modules, one concept each:

- :mod:`~postbus.records.record`: the record, its outcomes and the merge that makes every write
  an order-independent, idempotent upsert (the precedence of outcomes is defined there);
- :mod:`~postbus.records.reports`: ACS delivery and engagement reports parsed from Event Grid and
  CloudEvents envelopes;
- :mod:`~postbus.records.summary`: outcome counts over a time range and the delivered-within-SLO share;
- :mod:`~postbus.records.errors`: ``RecordStoreUnavailable`` (retry) and ``InvalidReport`` (dead-letter).
"""

from __future__ import annotations

from postbus.records.errors import InvalidReport, RecordError, RecordStoreUnavailable
from postbus.records.record import DeliveryRecord, Outcome, dead_lettered, merge, queued, sent
from postbus.records.reports import DeliveryReport, DeliveryStatus, EngagementReport, Report, parse_report
from postbus.records.summary import Summary, SummaryRow

__all__ = [
    "DeliveryRecord",
    "DeliveryReport",
    "DeliveryStatus",
    "EngagementReport",
    "InvalidReport",
    "Outcome",
    "RecordError",
    "RecordStoreUnavailable",
    "Report",
    "Summary",
    "SummaryRow",
    "dead_lettered",
    "merge",
    "parse_report",
    "queued",
    "sent",
]
