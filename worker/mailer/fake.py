"""An in-memory :class:`~worker.mailer.base.Mailer` for unit tests of the pipeline and the worker loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from postbus.worker.mailer.base import OperationStatus, SendResult

__all__ = ["FakeMailer"]


@dataclass
class FakeMailer:
    """An in-memory :class:`Mailer` for tests: records sends and fails on request.

    ``failures`` is consumed front to back: each send first pops one entry and raises it if it
    is an exception. Operations it accepted are known to :meth:`lookup`.
    """

    failures: list[BaseException | None] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    known: dict[str, OperationStatus] = field(default_factory=dict)

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure
        if operation_id in self.known:
            return SendResult.DUPLICATE
        self.sent.append((operation_id, dict(payload)))
        self.known[operation_id] = OperationStatus.SUCCEEDED
        return SendResult.ACCEPTED

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        return self.known.get(operation_id)

    async def close(self) -> None:
        return None

    def operation_ids(self) -> Sequence[str]:
        """Operation ids of the accepted sends, in order."""
        return [operation_id for operation_id, _ in self.sent]
