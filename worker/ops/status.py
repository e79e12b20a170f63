"""``postbus status``: what ACS says about an event's sends, by operation id or by event id.

The worker derives the operation id of each send generation from the event id
(:func:`worker.mailer.operation_id_for`), so an event id maps to one operation per generation:
0 for the original, ``N`` after the ``N``-th dead-letter replay::

    async with AcsStatusClient.from_settings(settings) as acs:
        rows = await event_status(acs, "order-1001", namespace=settings.operation_namespace, generations=3)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from postbus.events import TOKENS, valid_token
from postbus.worker.mailer import operation_id_for
from postbus.worker.ops.acs import OperationInfo, OperationLookup
from postbus.worker.ops.errors import BadInput

__all__ = ["StatusRow", "check_event_id", "check_operation_id", "event_status", "operation_status"]


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One operation: which generation it belongs to (``None`` when looked up by id) and what ACS said."""

    operation_id: str
    generation: int | None
    info: OperationInfo | None

    @property
    def status(self) -> str:
        return self.info.status if self.info else "NotFound"

    @property
    def error(self) -> str:
        if self.info is None:
            return "ACS does not know this operation (never sent, or older than its retention)"
        return f"{self.info.error_code}: {self.info.error_message}".strip(": ")

    def to_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "generation": self.generation,
            "status": self.status,
            "error_code": self.info.error_code if self.info else "",
            "error_message": self.info.error_message if self.info else "",
        }


def check_operation_id(value: str) -> str:
    """An ACS operation id is a UUID (the worker always sends one)."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise BadInput(f"{value!r} is not an ACS operation id (a UUID)") from None


def check_event_id(value: str) -> str:
    if not valid_token("id", value):
        raise BadInput(f"{value!r} is not a valid {TOKENS['id'][1]}")
    return value


async def operation_status(lookup: OperationLookup, operation_id: str) -> StatusRow:
    operation_id = check_operation_id(operation_id)
    return StatusRow(operation_id, None, await lookup.lookup(operation_id))


async def event_status(
    lookup: OperationLookup, event_id: str, *, namespace: UUID, generations: int
) -> list[StatusRow]:
    """One row per generation ``0..generations`` (each is one status read against the ACS quota)."""
    check_event_id(event_id)
    rows: list[StatusRow] = []
    for generation in range(generations + 1):
        operation_id = operation_id_for(event_id, namespace=namespace, generation=generation)
        rows.append(StatusRow(operation_id, generation, await lookup.lookup(operation_id)))
    return rows
