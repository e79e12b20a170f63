"""Remove dead-lettered messages for good (``postbus dlq purge``), with the same filters as replay.

Each matching message is peek-locked and completed; everything else is released untouched. The
CLI refuses to run without ``--yes``::

    async with DeadLetterQueue(settings) as dlq:
        summary = await purge(dlq, selection=Selection.parse(reasons=["Expired"]), limit=None)
        len(summary.removed)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from postbus.logs import get_logger
from postbus.worker.ops.deadletters import DeadLetterEntry, DeadLetterPort, sweep
from postbus.worker.ops.errors import OpsError
from postbus.worker.ops.filters import Selection

__all__ = ["PurgeSummary", "purge"]

log = get_logger(__name__)


@dataclass(slots=True)
class PurgeSummary:
    """What was removed, and what could not be (it is still in the dead-letter queue)."""

    removed: list[DeadLetterEntry] = field(default_factory=list)
    failed: list[tuple[DeadLetterEntry, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "removed": len(self.removed),
            "failed": len(self.failed),
            "items": [entry.to_json() for entry in self.removed],
            "errors": [{"sequence_number": e.sequence_number, "error": error} for e, error in self.failed],
        }


async def purge(
    port: DeadLetterPort, *, selection: Selection, limit: int | None, stop: asyncio.Event | None = None
) -> PurgeSummary:
    """Complete every matching dead-lettered message (up to ``limit``)."""
    summary = PurgeSummary()

    async def handle(message: Any, entry: DeadLetterEntry) -> bool:
        try:
            await port.complete(message)
        except OpsError as exc:
            summary.failed.append((entry, str(exc)))
            return False
        summary.removed.append(entry)
        log.info(
            "dlq.purged", event_id=entry.event_id, sequence_number=entry.sequence_number, reason=entry.reason
        )
        return True

    await sweep(port, selection=selection, limit=limit, stop=stop or asyncio.Event(), handle=handle)
    return summary
