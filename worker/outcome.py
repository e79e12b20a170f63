"""What processing one message decided, as a value.

The pipeline returns exactly one :data:`Outcome`; settlement (:mod:`worker.settlement`) is one
``match`` on it. Nothing else settles a message.
"""

from __future__ import annotations

from dataclasses import dataclass

from postbus.reasons import DeadLetterReason, RetryReason

__all__ = ["AlreadySent", "DeadLetter", "Outcome", "RetryLater", "Sent", "Systemic"]


@dataclass(frozen=True, slots=True)
class Sent:
    """ACS accepted the email (202) under ``operation_id``."""

    operation_id: str


@dataclass(frozen=True, slots=True)
class AlreadySent:
    """ACS already holds an operation for this event: complete without sending again."""

    operation_id: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Try again in ``delay`` seconds with a scheduled copy of the message.

    ``spend_attempt`` is false for throttling: waiting for quota is not the event's fault.
    """

    delay: float
    reason: RetryReason
    error: str
    spend_attempt: bool = True


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Move the message to the dead-letter queue with a reason from the closed list and a description."""

    reason: DeadLetterReason
    description: str


@dataclass(frozen=True, slots=True)
class Systemic:
    """The deployment, not the message, is broken: abandon and open the circuit breaker."""

    error: str


Outcome = Sent | AlreadySent | RetryLater | DeadLetter | Systemic
