"""The delivery record's side of ``postbus status`` and ``postbus report``.

``postbus status`` asks the record first: it holds the whole story of each send generation
(queued, attempts, accepted, delivered or bounced with the SMTP detail, or dead-lettered with the
reason). Only when no record of the event has a final outcome does the command also ask ACS.
This module only reads the record; the ACS lookup stays in :mod:`~postbus.worker.ops.status`::

    async with record_store(settings) as store:
        records = await record_lookup(store, event_id="order-1001")
    if needs_acs(records):
        ...                                     # ask ACS as before
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from postbus.records import DeliveryRecord, RecordStore
from postbus.records.record import to_fields

__all__ = ["needs_acs", "record_json", "record_lookup", "story"]


async def record_lookup(
    store: RecordStore, *, event_id: str | None = None, operation_id: str | None = None
) -> list[DeliveryRecord]:
    """The records of an event (every generation) or of one operation; raises ``RecordStoreUnavailable``."""
    if event_id is not None:
        return await store.by_event(event_id)
    if operation_id is None:
        raise ValueError("give an event id or an operation id")
    record = await store.get(operation_id)
    return [record] if record is not None else []


def needs_acs(records: Sequence[DeliveryRecord]) -> bool:
    """Whether ACS must be asked: no record at all, or none with a final outcome yet."""
    return not any(record.outcome.is_final for record in records)


def _at(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def story(record: DeliveryRecord) -> list[str]:
    """The record as lines of what happened, oldest first (for the table)."""
    lines: list[str] = []
    if record.first_enqueued:
        lines.append(f"queued {_at(record.first_enqueued)}")
    if record.attempts:
        lines.append(f"attempts {record.attempts}")
    if record.accepted_at:
        lines.append(f"accepted by ACS {_at(record.accepted_at)}")
    if record.dead_letter_reason:
        lines.append(
            f"dead-lettered {_at(record.dead_lettered_at)}: {record.dead_letter_reason}"
            + (f" ({record.dead_letter_description})" if record.dead_letter_description else "")
            + " — in the dead-letter queue unless replayed or purged (postbus dlq list)"
        )
    if record.outcome.from_report:
        detail = " ".join(
            part
            for part in (
                str(record.smtp_code) if record.smtp_code is not None else "",
                record.smtp_status or "",
                f"via {record.mail_server}" if record.mail_server else "",
            )
            if part
        )
        lines.append(f"{record.outcome.value} {_at(record.outcome_at)}" + (f" [{detail}]" if detail else ""))
        if record.status_message:
            lines.append(f"  {record.status_message}")
    if record.opened_at:
        lines.append(f"opened {_at(record.opened_at)}")
    if record.clicked_at:
        lines.append(f"clicked {_at(record.clicked_at)}")
    latency = record.delivery_latency
    if latency is not None:
        lines.append(f"delivered {latency:.1f} s after first enqueue")
    return lines


def record_json(record: DeliveryRecord) -> dict[str, Any]:
    """The record as JSON values (times in ISO 8601, domains as a list), for ``--json``."""
    values = to_fields(record)
    document: dict[str, Any] = {}
    for name, value in values.items():
        document[name] = value.isoformat() if isinstance(value, datetime) else value
    document["recipient_domains"] = list(record.recipient_domains)
    document["final"] = record.outcome.is_final
    document["delivery_latency_seconds"] = record.delivery_latency
    return document
