"""The delivery record of one send generation, and how writes to it combine.

A record is keyed by the ACS operation id, which is one-to-one with (event id, send
generation): the worker derives it as ``uuid5(namespace, event id [+ "#replay<g>"])`` and ACS
delivery reports carry nothing else. Every write is itself a (partial) :class:`DeliveryRecord`,
and a store keeps ``merge(stored, write)``. :func:`merge` is commutative, associative and
idempotent, so the stored record does not depend on the order writes arrive in, nor on how often
each arrives: a report that comes before the worker's own write, twice, or out of order ends in the
same record as the tidy sequence.

Precedence of the outcome (:func:`precedence`), highest wins::

    tier 3  an ACS delivery report: delivered, bounced, suppressed, quarantined, filtered_spam,
            expired, failed; among reports the later ``outcome_at`` (the report's delivery
            attempt time) wins, so a later final state is never overwritten by an earlier one
    tier 2  dead_lettered (the worker gave up; ACS's own report still outranks it, because ACS
            only reports on an email it accepted)
    tier 1  sent (ACS accepted the send)
    tier 0  queued

Ties at the same tier and time go to the more severe outcome (failed > bounced > suppressed >
quarantined > filtered_spam > expired > delivered), then to the details as text, so the order is
total. The other fields combine field by field: earliest ``first_enqueued``, ``accepted_at``,
``delivered_at``, ``opened_at``, ``clicked_at`` and ``created_at``; largest ``attempts`` and
``updated_at``; the union of recipient domains; the latest dead-letter reason; identity fields
(event id, generation, tenant, type) from whichever write has them.

A send to several recipients gets one report per recipient; the record keeps the one that ranks
highest, and ``delivered_at`` the first delivery. Recipient addresses are never stored: only
their domains, and report texts with addresses masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from functools import reduce
from typing import Any, Final, TypeVar

__all__ = [
    "TEXT_LIMIT",
    "DeliveryRecord",
    "Outcome",
    "dead_lettered",
    "from_fields",
    "merge",
    "merge_all",
    "precedence",
    "queued",
    "sent",
    "to_fields",
]

#: Longest text kept in a record field (descriptions, ACS status messages); Table Storage allows 32K.
TEXT_LIMIT: Final = 1024
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T", str, int)


class Outcome(StrEnum):
    """Where one send generation stands. Report outcomes follow the ACS report's ``status``."""

    QUEUED = "queued"
    SENT = "sent"
    DEAD_LETTERED = "dead_lettered"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    QUARANTINED = "quarantined"
    FILTERED_SPAM = "filtered_spam"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """No later step of the pipeline will change it (only an ACS report can still follow)."""
        return self not in (Outcome.QUEUED, Outcome.SENT)

    @property
    def from_report(self) -> bool:
        """The outcome comes from an ACS delivery report."""
        return _TIER[self] == 3


_TIER: Final = {
    Outcome.QUEUED: 0,
    Outcome.SENT: 1,
    Outcome.DEAD_LETTERED: 2,
    **{
        o: 3
        for o in (
            Outcome.DELIVERED,
            Outcome.BOUNCED,
            Outcome.SUPPRESSED,
            Outcome.QUARANTINED,
            Outcome.FILTERED_SPAM,
            Outcome.EXPIRED,
            Outcome.FAILED,
        )
    },
}
_SEVERITY: Final = {
    Outcome.DELIVERED: 0,
    Outcome.EXPIRED: 1,
    Outcome.FILTERED_SPAM: 2,
    Outcome.QUARANTINED: 3,
    Outcome.SUPPRESSED: 4,
    Outcome.BOUNCED: 5,
    Outcome.FAILED: 6,
}

_TIMES: Final = (
    "outcome_at",
    "created_at",
    "updated_at",
    "first_enqueued",
    "accepted_at",
    "dead_lettered_at",
    "delivered_at",
    "opened_at",
    "clicked_at",
)
_TEXTS: Final = ("dead_letter_description", "status_message")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    value = value.astimezone(UTC)
    # Drivers hand back datetime subclasses; a plain datetime keeps equality and repr simple.
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, UTC
    )


def _domains(values: Iterable[str]) -> tuple[str, ...]:
    domains = {value.strip().lower() for value in values if value.strip()}
    for domain in domains:
        if "@" in domain or "," in domain:
            raise ValueError(f"recipient domain {domain!r} must be a bare domain, never an address")
    return tuple(sorted(domains))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    """One send generation of one event: what the worker did and what ACS reported.

    Also the shape of every write (most fields ``None``); see :func:`merge`. Timestamps are aware
    and normalised to UTC; texts are cut at :data:`TEXT_LIMIT`; recipient domains are lower-case,
    sorted and unique.

    Example::

        write = sent(operation_id=op, event_id="order-1001", generation=0, tenant="shop",
                     type="order.confirmation", recipient_domains=["contoso.com"],
                     first_enqueued=enqueued, attempts=1, accepted_at=now)
        stored = await store.write(write)
    """

    operation_id: str
    outcome: Outcome
    #: When the deciding step happened: enqueue, ACS acceptance, dead-lettering, report time.
    outcome_at: datetime
    #: Earliest and latest time a write to this record was made.
    created_at: datetime
    updated_at: datetime
    event_id: str | None = None
    generation: int | None = None
    tenant: str | None = None
    type: str | None = None
    recipient_domains: tuple[str, ...] = ()
    first_enqueued: datetime | None = None
    accepted_at: datetime | None = None
    attempts: int = 0
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    dead_lettered_at: datetime | None = None
    #: ACS ``deliveryStatusDetails`` of the deciding report: its text (addresses masked), the SMTP
    #: reply code and enhanced status code found in it, and the recipient's mail server.
    status_message: str | None = None
    smtp_code: int | None = None
    smtp_status: str | None = None
    mail_server: str | None = None
    #: The Event Grid id of the deciding report.
    report_id: str | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.operation_id:
            raise ValueError("operation_id must not be empty")
        if self.attempts < 0 or (self.generation is not None and self.generation < 0):
            raise ValueError("attempts and generation must not be negative")
        set_ = object.__setattr__  # normalising a frozen dataclass in place
        set_(self, "outcome", Outcome(self.outcome))
        for name in _TIMES:
            value = getattr(self, name)
            if value is not None:
                set_(self, name, _utc(value))
        for name in _TEXTS:
            value = getattr(self, name)
            if value is not None and len(value) > TEXT_LIMIT:
                set_(self, name, value[: TEXT_LIMIT - 1] + "…")
        set_(self, "recipient_domains", _domains(self.recipient_domains))

    @property
    def delivery_latency(self) -> float | None:
        """Seconds from first enqueue to delivery, when both are known."""
        if self.delivered_at is None or self.first_enqueued is None:
            return None
        return (self.delivered_at - self.first_enqueued).total_seconds()


def precedence(record: DeliveryRecord) -> tuple[Any, ...]:
    """The total order that decides a record's outcome: the highest key wins (module docstring)."""
    return (
        _TIER[record.outcome],
        record.outcome_at,
        _SEVERITY.get(record.outcome, 0),
        record.report_id or "",
        record.status_message or "",
        record.smtp_status or "",
        -1 if record.smtp_code is None else record.smtp_code,
        record.mail_server or "",
    )


def _dead_letter_key(record: DeliveryRecord) -> tuple[Any, ...]:
    return (
        record.dead_lettered_at or _EPOCH,
        record.dead_letter_reason or "",
        record.dead_letter_description or "",
    )


def _pick(a: _T | None, b: _T | None) -> _T | None:
    # Identity fields agree in practice; max() only makes a disagreement resolve the same way
    # in every order.
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def merge(a: DeliveryRecord, b: DeliveryRecord) -> DeliveryRecord:
    """Combine two writes (or a stored record and a write) of the same operation id.

    Commutative, associative and idempotent: see the module docstring for the rules.
    """
    if a.operation_id != b.operation_id:
        raise ValueError(f"cannot merge records of {a.operation_id} and {b.operation_id}")
    win = a if precedence(a) >= precedence(b) else b
    dead = a if _dead_letter_key(a) >= _dead_letter_key(b) else b
    return DeliveryRecord(
        operation_id=a.operation_id,
        outcome=win.outcome,
        outcome_at=win.outcome_at,
        status_message=win.status_message,
        smtp_code=win.smtp_code,
        smtp_status=win.smtp_status,
        mail_server=win.mail_server,
        report_id=win.report_id,
        dead_letter_reason=dead.dead_letter_reason,
        dead_letter_description=dead.dead_letter_description,
        dead_lettered_at=dead.dead_lettered_at,
        created_at=min(a.created_at, b.created_at),
        updated_at=max(a.updated_at, b.updated_at),
        event_id=_pick(a.event_id, b.event_id),
        generation=_pick(a.generation, b.generation),
        tenant=_pick(a.tenant, b.tenant),
        type=_pick(a.type, b.type),
        recipient_domains=a.recipient_domains + b.recipient_domains,
        first_enqueued=_earliest(a.first_enqueued, b.first_enqueued),
        accepted_at=_earliest(a.accepted_at, b.accepted_at),
        attempts=max(a.attempts, b.attempts),
        delivered_at=_earliest(a.delivered_at, b.delivered_at),
        opened_at=_earliest(a.opened_at, b.opened_at),
        clicked_at=_earliest(a.clicked_at, b.clicked_at),
    )


def merge_all(records: Iterable[DeliveryRecord]) -> DeliveryRecord:
    """:func:`merge` over one or more writes of the same operation id."""
    return reduce(merge, records)


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


def queued(
    *,
    operation_id: str,
    event_id: str,
    generation: int,
    tenant: str | None,
    type: str,
    recipient_domains: Iterable[str],
    first_enqueued: datetime,
    at: datetime | None = None,
) -> DeliveryRecord:
    """The write of a producer that enqueued the event (``at``: when the write is made)."""
    now = _now(at)
    return DeliveryRecord(
        operation_id=operation_id,
        outcome=Outcome.QUEUED,
        outcome_at=first_enqueued,
        created_at=now,
        updated_at=now,
        event_id=event_id,
        generation=generation,
        tenant=tenant,
        type=type,
        recipient_domains=tuple(recipient_domains),
        first_enqueued=first_enqueued,
    )


def sent(
    *,
    operation_id: str,
    event_id: str,
    generation: int,
    tenant: str | None,
    type: str,
    recipient_domains: Iterable[str],
    first_enqueued: datetime | None,
    attempts: int,
    accepted_at: datetime,
    at: datetime | None = None,
) -> DeliveryRecord:
    """The worker's write after ACS accepted the send (or already had the operation)."""
    now = _now(at)
    return DeliveryRecord(
        operation_id=operation_id,
        outcome=Outcome.SENT,
        outcome_at=accepted_at,
        created_at=now,
        updated_at=now,
        event_id=event_id,
        generation=generation,
        tenant=tenant,
        type=type,
        recipient_domains=tuple(recipient_domains),
        first_enqueued=first_enqueued,
        attempts=attempts,
        accepted_at=accepted_at,
    )


def dead_lettered(
    *,
    operation_id: str,
    event_id: str,
    generation: int,
    tenant: str | None,
    type: str | None,
    recipient_domains: Iterable[str],
    first_enqueued: datetime | None,
    attempts: int,
    reason: str,
    description: str,
    at: datetime | None = None,
) -> DeliveryRecord:
    """The worker's write when it dead-letters the event (``reason`` from its fixed list).

    ``type`` and the domains may be unknown when the body did not decode.
    """
    now = _now(at)
    return DeliveryRecord(
        operation_id=operation_id,
        outcome=Outcome.DEAD_LETTERED,
        outcome_at=now,
        created_at=now,
        updated_at=now,
        event_id=event_id,
        generation=generation,
        tenant=tenant,
        type=type,
        recipient_domains=tuple(recipient_domains),
        first_enqueued=first_enqueued,
        attempts=attempts,
        dead_letter_reason=reason,
        dead_letter_description=description,
        dead_lettered_at=now,
    )


_FIELD_NAMES: Final = tuple(f.name for f in fields(DeliveryRecord))


def to_fields(record: DeliveryRecord) -> dict[str, Any]:
    """The record as flat storage values: text, int, aware datetime or ``None``.

    Recipient domains are joined with ``,`` and the outcome is its text.
    """
    values = {name: getattr(record, name) for name in _FIELD_NAMES}
    values["outcome"] = record.outcome.value
    values["recipient_domains"] = ",".join(record.recipient_domains)
    return values


def from_fields(values: Mapping[str, Any]) -> DeliveryRecord:
    """Inverse of :func:`to_fields`; timestamps may be datetimes or ISO-8601 text."""
    kwargs: dict[str, Any] = {name: values.get(name) for name in _FIELD_NAMES}
    for name in _TIMES:
        value = kwargs[name]
        if isinstance(value, str):
            kwargs[name] = datetime.fromisoformat(value)
    domains = kwargs["recipient_domains"] or ""
    kwargs["recipient_domains"] = tuple(d for d in domains.split(",") if d)
    kwargs["attempts"] = kwargs["attempts"] or 0
    return DeliveryRecord(**kwargs)
