"""The delivery record: one entry per event and send generation, from enqueue to ACS's last word.

Modules, one concept each:

- :mod:`~postbus.records.record`: the record, its outcomes and the merge that makes every write
  an order-independent, idempotent upsert (the precedence of outcomes is defined there);
- :mod:`~postbus.records.store`: the ``RecordStore`` protocol, the in-memory fake, and
  :func:`record_store` that picks the backend from ``POSTBUS_RECORD_URL``;
- :mod:`~postbus.records.sqlite` and :mod:`~postbus.records.tables`: the SQLite and Azure Table
  Storage backends (imported lazily by the factory);
- :mod:`~postbus.records.reports`: ACS delivery and engagement reports parsed from Event Grid and
  CloudEvents envelopes;
- :mod:`~postbus.records.summary`: outcome counts over a time range and the delivered-within-SLO share;
- :mod:`~postbus.records.url`: the URL setting, parsed without touching a store;
- :mod:`~postbus.records.errors`: ``RecordStoreUnavailable`` (retry) and ``InvalidReport`` (dead-letter).
"""

from __future__ import annotations

from postbus.records.errors import InvalidReport, RecordError, RecordStoreUnavailable
from postbus.records.record import DeliveryRecord, Outcome, dead_lettered, merge, queued, sent
from postbus.records.reports import DeliveryReport, DeliveryStatus, EngagementReport, Report, parse_report
from postbus.records.store import MemoryRecordStore, RecordStore, record_store
from postbus.records.summary import Summary, SummaryRow

__all__ = [
    "DeliveryRecord",
    "DeliveryReport",
    "DeliveryStatus",
    "EngagementReport",
    "InvalidReport",
    "MemoryRecordStore",
    "Outcome",
    "RecordError",
    "RecordStore",
    "RecordStoreUnavailable",
    "Report",
    "Summary",
    "SummaryRow",
    "dead_lettered",
    "merge",
    "parse_report",
    "queued",
    "record_store",
    "sent",
]
