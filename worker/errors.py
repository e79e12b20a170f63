"""Worker errors, keyed on what the worker does next.

::

    PostbusError (postbus.errors)
    └── ProcessingError          something went wrong while handling one message
        ├── PermanentError       dead-letter now, with ``reason`` (a postbus.reasons.DeadLetterReason)
        │   ├── InvalidMessage       InvalidEvent: ACS refused the email's content
        │   ├── UnknownTemplate      no template for the event type
        │   ├── TemplateError        the template failed to render with the event's data
        │   ├── MessageTooLarge      the rendered email exceeds the ACS request limit
        │   └── RecipientRejected    ACS refused the recipients (400 on an address)
        ├── TransientError       retry: a few quick tries, then a delayed retry
        │   └── AmbiguousSend        the request may have been accepted: same operation id, look up first
        ├── ThrottledError       pause all sends for ``retry_after`` seconds; no attempt is spent
        └── SystemicError        configuration or credentials: abandon, open the circuit breaker
    └── CannotStart              the worker cannot begin: a taken port, an unreachable namespace

Third-party exceptions are translated into this tree once, in the adapter that calls the SDK
(``worker.mailer`` for ACS); Service Bus failures are ``postbus.bus.errors.BusError``. The other
dead-letter reasons (an event that does not decode, an expired one, an unknown sender alias, a
claim-checked attachment that is gone or altered) are decided by the pipeline as values, not
raised; an unreachable attachment store (``postbus.attachments``) becomes a delayed retry there.
"""

from __future__ import annotations

from typing import ClassVar

from postbus.errors import PostbusError
from postbus.reasons import DeadLetterReason

__all__ = [
    "AmbiguousSend",
    "CannotStart",
    "InvalidMessage",
    "MessageTooLarge",
    "PermanentError",
    "ProcessingError",
    "RecipientRejected",
    "SystemicError",
    "TemplateError",
    "ThrottledError",
    "TransientError",
    "UnknownTemplate",
]


class ProcessingError(PostbusError):
    """Base class for failures while processing one message."""


class PermanentError(ProcessingError):
    """Retrying cannot help: dead-letter the message with :attr:`reason` and the message text."""

    reason: ClassVar[DeadLetterReason] = DeadLetterReason.INVALID_EVENT


class InvalidMessage(PermanentError):
    """The message is not an email ACS accepts (ACS refused its content)."""

    reason = DeadLetterReason.INVALID_EVENT


class UnknownTemplate(PermanentError):
    """No template is registered for the event's type."""

    reason = DeadLetterReason.UNKNOWN_TEMPLATE


class TemplateError(PermanentError):
    """The template exists but failed to render with the event's data."""

    reason = DeadLetterReason.TEMPLATE_ERROR


class MessageTooLarge(PermanentError):
    """The rendered email is larger than ACS accepts."""

    reason = DeadLetterReason.MESSAGE_TOO_LARGE


class RecipientRejected(PermanentError):
    """ACS rejected the recipients themselves (invalid or suppressed addresses)."""

    reason = DeadLetterReason.RECIPIENT_REJECTED


class TransientError(ProcessingError):
    """A fault that is likely to pass (5xx, connection reset): retry with backoff."""


class AmbiguousSend(TransientError):
    """The send may have reached ACS (timeout after the request left, 5xx on send).

    Retry with the same ``operation_id``; before resending a redelivered message, look the
    operation up and complete without sending if ACS already has it.
    """


class ThrottledError(ProcessingError):
    """ACS answered 429: every send in the process waits ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SystemicError(ProcessingError):
    """The deployment is broken (401/403, unverified sender domain, bad configuration).

    No single message is at fault: abandon it, open the circuit breaker, report not-ready.
    """


class CannotStart(PostbusError):
    """The worker could not begin work (its health port is taken, Service Bus never answered).

    Nothing was received; the message names the cause and the setting that fixes it.
    """
