"""Worker errors, keyed on what the worker does next.

::

    PostbusError (postbus.errors)
    └── ProcessingError          something went wrong while handling one message
        ├── PermanentError       dead-letter now, with ``reason`` from DEAD_LETTER_REASONS
        │   ├── InvalidMessage       InvalidEvent: bad JSON, schema violation
        │   ├── UnknownTemplate      no template for the event type
        │   ├── TemplateError        the template failed to render with the event's data
        │   ├── SenderNotAllowed     sender alias not in the allow-list
        │   ├── MessageTooLarge      the rendered email exceeds the ACS request limit
        │   ├── Expired              ``not_after`` has passed
        │   └── RecipientRejected    ACS refused the recipients (400 on an address)
        ├── TransientError       retry: a few quick tries, then a delayed retry
        │   └── AmbiguousSend        the request may have been accepted: same operation id, look up first
        ├── ThrottledError       pause all sends for ``retry_after`` seconds; no attempt is spent
        └── SystemicError        configuration or credentials: abandon, open the circuit breaker

Third-party exceptions are translated into this tree once, in the adapter that calls the SDK
(``worker.mailer`` for ACS, the Service Bus adapter for the queue); nothing else catches
``azure.*`` exceptions.
"""

from __future__ import annotations

from typing import Final

from postbus.errors import PostbusError

__all__ = [
    "DEAD_LETTER_REASONS",
    "AmbiguousSend",
    "Expired",
    "InvalidMessage",
    "MessageTooLarge",
    "PermanentError",
    "ProcessingError",
    "RecipientRejected",
    "SenderNotAllowed",
    "SystemicError",
    "TemplateError",
    "ThrottledError",
    "TransientError",
    "UnknownTemplate",
]

#: The only values a Postbus worker writes to ``DeadLetterReason``.
DEAD_LETTER_REASONS: Final = (
    "InvalidEvent",
    "UnknownTemplate",
    "TemplateError",
    "SenderNotAllowed",
    "MessageTooLarge",
    "Expired",
    "RecipientRejected",
    "RetriesExhausted",
)


class ProcessingError(PostbusError):
    """Base class for failures while processing one message."""


class PermanentError(ProcessingError):
    """Retrying cannot help: dead-letter the message with :attr:`reason` and the message text."""

    reason: str = "InvalidEvent"


class InvalidMessage(PermanentError):
    """The message body is not a valid notification event."""

    reason = "InvalidEvent"


class UnknownTemplate(PermanentError):
    """No template is registered for the event's type."""

    reason = "UnknownTemplate"


class TemplateError(PermanentError):
    """The template exists but failed to render with the event's data."""

    reason = "TemplateError"


class SenderNotAllowed(PermanentError):
    """The event's sender alias is not in the configured allow-list."""

    reason = "SenderNotAllowed"


class MessageTooLarge(PermanentError):
    """The rendered email is larger than ACS accepts."""

    reason = "MessageTooLarge"


class Expired(PermanentError):
    """The event's ``not_after`` instant has passed; sending now would be worse than not sending."""

    reason = "Expired"


class RecipientRejected(PermanentError):
    """ACS rejected the recipients themselves (invalid or suppressed addresses)."""

    reason = "RecipientRejected"


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
