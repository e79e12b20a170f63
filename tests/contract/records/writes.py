"""Writes the record-store tests share (also imported by the writer processes of the SQLite test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

from postbus.records.record import DeliveryRecord, sent
from postbus.records.reports import DeliveryReport, DeliveryStatus

NAMESPACE = UUID("6f0b7c8e-3f4a-5d2b-9c1e-2a7d4b8e9f10")
T0 = datetime(2026, 3, 2, 9, 30, 0, 125000, tzinfo=UTC)


def op(event_id: str, generation: int = 0) -> str:
    return str(uuid5(NAMESPACE, event_id if generation == 0 else f"{event_id}#replay{generation}"))


def sent_write(
    event_id: str,
    *,
    generation: int = 0,
    at: datetime = T0,
    tenant: str = "shop",
    type_: str = "order.confirmation",
    enqueued: datetime | None = None,
    attempts: int = 1,
) -> DeliveryRecord:
    return sent(
        operation_id=op(event_id, generation),
        event_id=event_id,
        generation=generation,
        tenant=tenant,
        type=type_,
        recipient_domains=["contoso.com"],
        first_enqueued=enqueued or at - timedelta(seconds=2),
        attempts=attempts,
        accepted_at=at,
        at=at,
    )


def report(
    operation_id: str,
    status: DeliveryStatus,
    *,
    attempted: datetime,
    at: datetime | None = None,
    report_id: str = "",
    message: str | None = None,
) -> DeliveryRecord:
    return DeliveryReport(
        report_id=report_id or f"eg-{status.value}-{attempted.timestamp()}",
        operation_id=operation_id,
        status=status,
        recipient_domain="contoso.com",
        attempted_at=attempted,
        event_time=attempted,
        status_message=message,
        smtp_code=550 if message else None,
        smtp_status="5.1.1" if message else None,
        mail_server="mx.contoso.com" if message else None,
    ).as_write(at=at or attempted)
