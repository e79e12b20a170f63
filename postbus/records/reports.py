"""ACS delivery and engagement reports: Event Grid events parsed into typed values (pure).

ACS publishes two email events to Event Grid; the subscription delivers each one to the
``email-events`` queue (one event per message) in either envelope:

- Event Grid schema: ``id``, ``topic``, ``subject``, ``eventType``, ``eventTime``, ``data``,
  ``dataVersion``, ``metadataVersion``;
- CloudEvents 1.0: ``specversion``, ``id``, ``source``, ``type``, ``time``, ``subject``, ``data``.

``Microsoft.Communication.EmailDeliveryReportReceived`` data: ``sender``, ``recipient``,
``messageId`` (the send's operation id), ``internetMessageId``, ``status``,
``deliveryStatusDetails.statusMessage`` and ``.recipientMailServerHostName``, and the delivery
attempt time, spelled ``deliveryAttemptTimestamp`` or ``deliveryAttemptTimeStamp`` depending on the
publisher's version (both are read). Azure's samples write ``status`` in any case ("delivered"), so
it is matched without regard to case. Statuses: ``Delivered``, ``Bounced``, ``Suppressed``,
``Quarantined``, ``FilteredSpam``, ``Failed``, ``Expanded`` (a distribution list was expanded;
reports for its members follow) and ``Expired`` (delivery gave up after its retry window).

``Microsoft.Communication.EmailEngagementTrackingReportReceived`` data: ``sender``, ``messageId``,
``userActionTimestamp``, ``engagementContext`` (the clicked link), ``userAgent``,
``engagementType`` (``view`` or ``click``).

The recipient address never leaves this module: a report keeps its domain, and status texts have
addresses masked. Anything that is not one of these two events, or lacks what the record needs,
raises :class:`~postbus.records.errors.InvalidReport` with a dead-letter ``reason``::

    report = parse_report(message_body)          # DeliveryReport | EngagementReport
    await store.write(report.as_write())
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from postbus.logs import recipient_domain, redact
from postbus.records.errors import InvalidReport
from postbus.records.record import DeliveryRecord, Outcome

__all__ = [
    "DELIVERY_REPORT_EVENT",
    "ENGAGEMENT_REPORT_EVENT",
    "DeliveryReport",
    "DeliveryStatus",
    "EngagementReport",
    "Envelope",
    "Report",
    "parse_report",
    "parse_reports",
]

DELIVERY_REPORT_EVENT: Final = "Microsoft.Communication.EmailDeliveryReportReceived"
ENGAGEMENT_REPORT_EVENT: Final = "Microsoft.Communication.EmailEngagementTrackingReportReceived"

#: ``550 5.1.1 ...``, ``550-5.7.1 ...``: an SMTP reply code, optionally an enhanced status code.
_SMTP_REPLY: Final = re.compile(r"^\s*(?P<code>[245]\d\d)(?:[\s-]+(?P<status>[245]\.\d{1,3}\.\d{1,3}))?\b")
_ENHANCED: Final = re.compile(r"(?<![\d.])(?P<status>[245]\.\d{1,3}\.\d{1,3})(?![\d.])")


class DeliveryStatus(StrEnum):
    """The ``status`` of an ``EmailDeliveryReportReceived`` event."""

    DELIVERED = "Delivered"
    BOUNCED = "Bounced"
    SUPPRESSED = "Suppressed"
    QUARANTINED = "Quarantined"
    FILTERED_SPAM = "FilteredSpam"
    EXPIRED = "Expired"
    FAILED = "Failed"
    EXPANDED = "Expanded"

    @property
    def outcome(self) -> Outcome:
        """The record outcome; ``Expanded`` only says ACS has the email (members report later)."""
        return _OUTCOMES[self]


_OUTCOMES: Final = {
    DeliveryStatus.DELIVERED: Outcome.DELIVERED,
    DeliveryStatus.BOUNCED: Outcome.BOUNCED,
    DeliveryStatus.SUPPRESSED: Outcome.SUPPRESSED,
    DeliveryStatus.QUARANTINED: Outcome.QUARANTINED,
    DeliveryStatus.FILTERED_SPAM: Outcome.FILTERED_SPAM,
    DeliveryStatus.EXPIRED: Outcome.EXPIRED,
    DeliveryStatus.FAILED: Outcome.FAILED,
    DeliveryStatus.EXPANDED: Outcome.SENT,
}
_STATUS_BY_NAME: Final = {status.value.lower(): status for status in DeliveryStatus}
#: Which envelope a report came in.
Envelope = Literal["eventgrid", "cloudevents"]


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport:
    """An ``EmailDeliveryReportReceived`` event: what happened to the email for one recipient."""

    #: The Event Grid event id (at-least-once delivery repeats it).
    report_id: str
    #: ``data.messageId``: the ACS operation id of the send, canonical lower-case when a UUID.
    operation_id: str
    status: DeliveryStatus
    recipient_domain: str
    #: ``data.deliveryAttemptTimestamp``, else the event time.
    attempted_at: datetime
    event_time: datetime
    status_message: str | None = None
    smtp_code: int | None = None
    smtp_status: str | None = None
    mail_server: str | None = None
    internet_message_id: str | None = None
    envelope: Envelope = "eventgrid"

    @property
    def outcome(self) -> Outcome:
        """The record outcome this report stands for."""
        return self.status.outcome

    @property
    def suppresses(self) -> bool:
        """A recipient not to send to again for a while: ``Suppressed``, or a hard (5.x.x) bounce."""
        if self.status is DeliveryStatus.SUPPRESSED:
            return True
        return self.status is DeliveryStatus.BOUNCED and not (self.smtp_status or "").startswith("4")

    def as_write(self, *, at: datetime | None = None) -> DeliveryRecord:
        """The record write of this report (``at``: when the write is made, default now)."""
        now = _now(at)
        return DeliveryRecord(
            operation_id=self.operation_id,
            outcome=self.outcome,
            outcome_at=self.attempted_at,
            created_at=now,
            updated_at=now,
            recipient_domains=(self.recipient_domain,) if self.recipient_domain else (),
            status_message=self.status_message,
            smtp_code=self.smtp_code,
            smtp_status=self.smtp_status,
            mail_server=self.mail_server,
            report_id=self.report_id,
            delivered_at=self.attempted_at if self.status is DeliveryStatus.DELIVERED else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EngagementReport:
    """An ``EmailEngagementTrackingReportReceived`` event: a recipient opened or clicked."""

    report_id: str
    operation_id: str
    engagement: Literal["view", "click"]
    #: ``data.userActionTimestamp``, else the event time.
    acted_at: datetime
    event_time: datetime
    #: The clicked link for ``click``.
    context: str | None = None
    user_agent: str | None = None
    envelope: Envelope = "eventgrid"

    def as_write(self, *, at: datetime | None = None) -> DeliveryRecord:
        """The record write: the first open or click time (an engagement proves ACS sent it)."""
        now = _now(at)
        return DeliveryRecord(
            operation_id=self.operation_id,
            outcome=Outcome.SENT,
            outcome_at=self.acted_at,
            created_at=now,
            updated_at=now,
            opened_at=self.acted_at if self.engagement == "view" else None,
            clicked_at=self.acted_at if self.engagement == "click" else None,
        )


Report = DeliveryReport | EngagementReport


# --- wire models (internal) --------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    # Event Grid times are UTC; a publisher that drops the offset still means UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_aware)]
_Text = Annotated[str, Field(min_length=1, max_length=1024)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _StatusDetails(_Wire):
    status_message: str | None = Field(None, alias="statusMessage")
    mail_server: str | None = Field(None, alias="recipientMailServerHostName")


class _DeliveryData(_Wire):
    message_id: _Text = Field(alias="messageId")
    recipient: str = Field(min_length=3, max_length=320)
    status: _Text
    internet_message_id: str | None = Field(None, alias="internetMessageId")
    details: _StatusDetails | None = Field(None, alias="deliveryStatusDetails")
    attempted_at: Timestamp | None = Field(
        None, validation_alias=AliasChoices("deliveryAttemptTimestamp", "deliveryAttemptTimeStamp")
    )


class _EngagementData(_Wire):
    message_id: _Text = Field(alias="messageId")
    engagement: str = Field(alias="engagementType")
    acted_at: Timestamp | None = Field(
        None, validation_alias=AliasChoices("userActionTimestamp", "userActionTimeStamp")
    )
    context: str | None = Field(None, alias="engagementContext")
    user_agent: str | None = Field(None, alias="userAgent")


class _EventGridEnvelope(_Wire):
    id: _Text
    event_type: _Text = Field(alias="eventType")
    event_time: Timestamp = Field(alias="eventTime")
    data: dict[str, Any]


class _CloudEventEnvelope(_Wire):
    specversion: Literal["1.0"]
    id: _Text
    type: _Text
    source: _Text
    time: Timestamp | None = None
    data: dict[str, Any]


def _describe(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in (*([prefix] if prefix else []), *item["loc"]))
        parts.append(f"{location}: {item['msg']}" if location else item["msg"])
    return "; ".join(parts)


def _operation_id(message_id: str) -> str:
    try:
        return str(UUID(message_id))
    except ValueError:
        return message_id


def _smtp(message: str | None) -> tuple[int | None, str | None]:
    if not message:
        return None, None
    reply = _SMTP_REPLY.match(message)
    if reply:
        return int(reply["code"]), reply["status"] or _enhanced(message)
    return None, _enhanced(message)


def _enhanced(message: str) -> str | None:
    found = _ENHANCED.search(message)
    return found["status"] if found else None


def _event_time(envelope: _EventGridEnvelope | _CloudEventEnvelope, *fallbacks: datetime | None) -> datetime:
    if isinstance(envelope, _EventGridEnvelope):
        return envelope.event_time
    for value in (envelope.time, *fallbacks):
        if value is not None:
            return value
    raise InvalidReport("time: the event has no time and its data no timestamp")


def _delivery(envelope: _EventGridEnvelope | _CloudEventEnvelope, kind: Envelope) -> DeliveryReport:
    try:
        data = _DeliveryData.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidReport(_describe(exc, "data")) from None
    status = _STATUS_BY_NAME.get(data.status.lower())
    if status is None:
        raise InvalidReport(f"data.status: unknown delivery status {data.status!r}", reason="UnknownStatus")
    message = data.details.status_message if data.details else None
    message = redact(message)[:1024] if message else None
    smtp_code, smtp_status = _smtp(message)
    event_time = _event_time(envelope, data.attempted_at)
    return DeliveryReport(
        report_id=envelope.id,
        operation_id=_operation_id(data.message_id),
        status=status,
        recipient_domain=recipient_domain(data.recipient),
        attempted_at=data.attempted_at or event_time,
        event_time=event_time,
        status_message=message,
        smtp_code=smtp_code,
        smtp_status=smtp_status,
        mail_server=(data.details.mail_server or None) if data.details else None,
        internet_message_id=data.internet_message_id,
        envelope=kind,
    )


def _engagement(envelope: _EventGridEnvelope | _CloudEventEnvelope, kind: Envelope) -> EngagementReport:
    try:
        data = _EngagementData.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidReport(_describe(exc, "data")) from None
    engagement = data.engagement.lower()
    if engagement not in ("view", "click"):
        raise InvalidReport(
            f"data.engagementType: unknown engagement {data.engagement!r}", reason="UnknownStatus"
        )
    event_time = _event_time(envelope, data.acted_at)
    return EngagementReport(
        report_id=envelope.id,
        operation_id=_operation_id(data.message_id),
        engagement="view" if engagement == "view" else "click",
        acted_at=data.acted_at or event_time,
        event_time=event_time,
        context=redact(data.context)[:1024] if data.context else None,
        user_agent=data.user_agent[:256] if data.user_agent else None,
        envelope=kind,
    )


def _load(body: bytes | str | Mapping[str, Any] | Sequence[Any]) -> Any:
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidReport(f"body is not valid JSON: {exc}") from None
    return body


def _one(document: Any) -> Report:
    if not isinstance(document, Mapping):
        raise InvalidReport(f"an event must be a JSON object, not {type(document).__name__}")
    envelope: _EventGridEnvelope | _CloudEventEnvelope
    kind: Envelope
    try:
        if "specversion" in document:
            kind = "cloudevents"
            envelope = _CloudEventEnvelope.model_validate(document)
            event_type = envelope.type
        elif "eventType" in document:
            kind = "eventgrid"
            envelope = _EventGridEnvelope.model_validate(document)
            event_type = envelope.event_type
        else:
            raise InvalidReport(
                "neither an Event Grid event (no eventType) nor a CloudEvents 1.0 event (no specversion)"
            )
    except ValidationError as exc:
        if "data_base64" in document and "data" not in document:
            raise InvalidReport("data_base64: binary CloudEvents data is not a report") from None
        raise InvalidReport(_describe(exc)) from None
    if event_type == DELIVERY_REPORT_EVENT:
        return _delivery(envelope, kind)
    if event_type == ENGAGEMENT_REPORT_EVENT:
        return _engagement(envelope, kind)
    raise InvalidReport(
        f"event type {event_type!r} is not an ACS email report", reason="UnsupportedEventType"
    )


def parse_report(body: bytes | str | Mapping[str, Any] | Sequence[Any]) -> Report:
    """One event (an object, or an array of exactly one as Event Grid's samples show it).

    Raises :class:`~postbus.records.errors.InvalidReport` with a dead-letter reason.
    """
    document = _load(body)
    if isinstance(document, list):
        if len(document) != 1:
            raise InvalidReport(f"expected one event, got an array of {len(document)}")
        document = document[0]
    return _one(document)


def parse_reports(body: bytes | str | Mapping[str, Any] | Sequence[Any]) -> list[Report]:
    """A batch (an array, as a webhook receives it) or one event; all must be valid."""
    document = _load(body)
    items = document if isinstance(document, list) else [document]
    reports = []
    for index, item in enumerate(items):
        try:
            reports.append(_one(item))
        except InvalidReport as exc:
            raise InvalidReport(f"event {index}: {exc}", reason=exc.reason) from None
    return reports
