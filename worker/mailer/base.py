"""What the pipeline needs from an email service: the :class:`Mailer` seam and its answers."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Protocol

__all__ = ["Mailer", "OperationStatus", "SendResult"]


class SendResult(Enum):
    """What ACS said to a send."""

    ACCEPTED = "accepted"
    #: The operation id exists already (409): an earlier attempt of this event got through.
    DUPLICATE = "duplicate"


class OperationStatus(Enum):
    """Status of an ACS send operation, as the status endpoint reports it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Mailer(Protocol):
    """Sends one email to ACS; raises :mod:`worker.errors` exceptions, never SDK ones."""

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        """POST the email; returns when ACS has answered 202 (or 409 for a known operation)."""
        ...

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        """The status of an earlier send, or ``None`` when ACS does not know the operation."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
