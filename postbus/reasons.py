"""Why a message left the normal path: the closed lists of dead-letter and retry reasons.

A dead-letter reason is written to Service Bus's ``DeadLetterReason`` and is a contract with the
``dlq`` filters, the traffic generator's expectations, the KQL in the runbook and the alerts, so
the list is closed: an :class:`enum.StrEnum` that mypy checks wherever a reason is produced.
Adding a reason is one edit here. Members compare equal to their text (``"Expired"``), so the
values read back from Service Bus match them directly::

    DeadLetterReason.EXPIRED == "Expired"            # True
    DeadLetterReason("Expired")                      # parse what Service Bus returns
"""

from __future__ import annotations

from enum import StrEnum, unique

__all__ = ["DeadLetterReason", "RetryReason"]


@unique
class DeadLetterReason(StrEnum):
    """The only values a Postbus worker writes to ``DeadLetterReason``."""

    #: Bad JSON, a schema violation, a wrong content type, or ACS refused the email's content.
    INVALID_EVENT = "InvalidEvent"
    #: No template is registered for the event's type.
    UNKNOWN_TEMPLATE = "UnknownTemplate"
    #: The template exists but failed to render with the event's data.
    TEMPLATE_ERROR = "TemplateError"
    #: The event's sender alias is not in the configured allow-list.
    SENDER_NOT_ALLOWED = "SenderNotAllowed"
    #: The rendered email is larger than ACS accepts.
    MESSAGE_TOO_LARGE = "MessageTooLarge"
    #: The event's ``not_after`` had passed when the worker got it.
    EXPIRED = "Expired"
    #: ACS refused the recipients themselves (an invalid or suppressed address).
    RECIPIENT_REJECTED = "RecipientRejected"
    #: Transient failures spent the attempt budget or the maximum age.
    RETRIES_EXHAUSTED = "RetriesExhausted"
    #: A recipient hard-bounced or was suppressed earlier; sending again would hurt the domain.
    RECIPIENT_SUPPRESSED = "RecipientSuppressed"
    #: (``email-events``) A delivery report that is not JSON, in neither envelope, or lacks a field.
    MALFORMED_REPORT = "MalformedReport"
    #: (``email-events``) An event of another type than ACS's two email reports.
    UNSUPPORTED_EVENT_TYPE = "UnsupportedEventType"
    #: (``email-events``) A report with a status or engagement type Postbus does not know yet.
    UNKNOWN_STATUS = "UnknownStatus"
    #: A claim-checked attachment is gone from the attachment store, or is not the one published.
    ATTACHMENT_UNAVAILABLE = "AttachmentUnavailable"


@unique
class RetryReason(StrEnum):
    """Why a delayed retry (a scheduled copy of the message) was made."""

    #: A failure likely to pass (5xx before the request left, a connection reset).
    TRANSIENT = "Transient"
    #: The send may have reached ACS (timeout after the request left, 5xx on send): same operation id.
    AMBIGUOUS = "Ambiguous"
    #: ACS throttled for longer than a handler waits; spends no attempt.
    THROTTLED = "Throttled"
    #: A systemic outage outlasted a few abandons; the message waits as a copy, spending no attempt.
    SYSTEMIC = "Systemic"
