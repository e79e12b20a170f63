"""The canonical log line: one ``message processed`` line per message, and what its span records.

:meth:`CanonicalLine.of` builds the line from what processing and settlement decided;
:meth:`CanonicalLine.fields` is the log line's fields and :meth:`CanonicalLine.record` puts the
same verdict on the consumer span and in the metrics. Support finds an event by ``event_id`` even
when its body did not decode: the id is then read best-effort from the raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from postbus.bus import Delivery
from postbus.logs import recipient_domain
from postbus.telemetry import Processing
from postbus.worker.outcome import AlreadySent, DeadLetter, RetryLater, Sent, Systemic
from postbus.worker.pipeline import Processed

__all__ = ["CanonicalLine", "OutcomeName", "outcome_name"]

OutcomeName = Literal["sent", "already_sent", "retry_scheduled", "dead_lettered", "abandoned"]


def outcome_name(processed: Processed) -> OutcomeName:
    """The ``outcome`` field of the line (and the key the worker counts messages by)."""
    match processed.outcome:
        case Sent():
            return "sent"
        case AlreadySent():
            return "already_sent"
        case RetryLater():
            return "retry_scheduled"
        case DeadLetter():
            return "dead_lettered"
        case Systemic():
            return "abandoned"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@dataclass(frozen=True, slots=True)
class CanonicalLine:
    """The fields of one ``message processed`` line (``None`` fields are left out of it).

    ``duration_ms`` is the whole handling; ``gate_wait_ms`` the part spent waiting for send
    permits and ``acs_ms`` the part spent in ACS calls. ``decoded`` says whether ``type`` and
    ``tenant`` come from a valid event (only then do they become metric dimensions).
    """

    outcome: OutcomeName
    message_id: str
    delivery_count: int
    duration_ms: float
    gate_wait_ms: float = 0.0
    acs_ms: float = 0.0
    attachments_ms: float | None = None
    event_id: str | None = None
    type: str | None = None
    tenant: str | None = None
    attempt: int | None = None
    recipient_domain: str | None = None
    operation_id: str | None = None
    reason: str | None = None
    description: str | None = None
    retry_in_seconds: float | None = None
    error: str | None = None
    settle_error: str | None = None
    decoded: bool = False

    @classmethod
    def of(
        cls, processed: Processed, delivery: Delivery, *, duration: float, settle_error: str = ""
    ) -> CanonicalLine:
        """The line of ``delivery``, processed as ``processed`` in ``duration`` seconds."""
        identity = processed.identity
        decoded = processed.decoded
        reason: str | None = None
        description = retry_in = error = None
        match processed.outcome:
            case DeadLetter(reason=dead_reason, description=text):
                reason, description = dead_reason.value, text
            case RetryLater(delay=delay, reason=retry_reason, error=text):
                reason, retry_in, error = retry_reason.value, round(delay, 3), text
            case Systemic(error=text):
                reason, error = "Systemic", text
            case _:
                pass
        return cls(
            outcome=outcome_name(processed),
            message_id=delivery.message_id,
            delivery_count=delivery.delivery_count,
            duration_ms=_ms(duration),
            gate_wait_ms=_ms(processed.gate_wait),
            acs_ms=_ms(processed.acs),
            attachments_ms=None if processed.attachments is None else _ms(processed.attachments),
            event_id=identity.id if identity else None,
            type=identity.type if identity else None,
            tenant=identity.tenant if identity else None,
            attempt=decoded.attempt if decoded else None,
            recipient_domain=recipient_domain(decoded.event.to[0].address) if decoded else None,
            operation_id=processed.operation_id,
            reason=reason,
            description=description,
            retry_in_seconds=retry_in,
            error=error,
            settle_error=settle_error or None,
            decoded=decoded is not None,
        )

    def fields(self) -> dict[str, Any]:
        """The log line's fields, in a stable order, without the unset ones."""
        values = {
            "outcome": self.outcome,
            "message_id": self.message_id,
            "delivery_count": self.delivery_count,
            "duration_ms": self.duration_ms,
            "gate_wait_ms": self.gate_wait_ms,
            "acs_ms": self.acs_ms,
            "attachments_ms": self.attachments_ms,
            "event_id": self.event_id,
            "type": self.type or None,
            "tenant": self.tenant or None,
            "attempt": self.attempt,
            "recipient_domain": self.recipient_domain,
            "operation_id": self.operation_id,
            "reason": self.reason,
            "description": self.description,
            "retry_in_seconds": self.retry_in_seconds,
            "error": self.error,
            "settle_error": self.settle_error,
        }
        return {key: value for key, value in values.items() if value is not None}

    def record(self, processing: Processing) -> None:
        """The same verdict on the consumer span and in the per-message metrics."""
        processing.finish(
            outcome=self.outcome,
            event_id=self.event_id,
            # Types and tenants of a body that did not decode are untrusted: no metric dimensions.
            event_type=(self.type or "") if self.decoded else "",
            tenant=(self.tenant or "") if self.decoded else "",
            attempt=self.attempt,
            reason=self.reason,
            operation_id=self.operation_id,
            recipient_domain=self.recipient_domain,
            error=self.settle_error,
        )
