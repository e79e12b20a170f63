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
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from postbus.bus import (
    AccessDenied,
    AuthenticationFailed,
    BusError,
    QueueLinks,
    QueueNotFound,
    ServiceBusConnection,
)
from postbus.events import TOKENS, valid_token
from postbus.settings import Settings
from postbus.worker.mailer import operation_id_for
from postbus.worker.ops.acs import OperationInfo, OperationLookup
from postbus.worker.ops.errors import BadInput, OpsError

__all__ = [
    "PEEK_LIMIT",
    "Sighting",
    "StatusRow",
    "check_event_id",
    "check_operation_id",
    "event_status",
    "find_in_queues",
    "operation_status",
]

#: Messages peeked per queue when looking for an event; a deeper backlog is reported as not searched.
PEEK_LIMIT: Final = 10_000


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


@dataclass(frozen=True, slots=True)
class Sighting:
    """A message of the event found in the queue (waiting, or scheduled as a retry) or its dead-letter queue."""

    place: Literal["queue", "dead-letter queue"]
    queue: str
    message_id: str
    enqueued_at: datetime | None
    reason: str | None = None
    description: str | None = None

    def __str__(self) -> str:
        when = f", enqueued {self.enqueued_at.isoformat(timespec='seconds')}" if self.enqueued_at else ""
        if self.place == "queue":
            return f"queued: message {self.message_id!r} waits in queue {self.queue!r}{when}"
        why = f": {self.reason}" + (f" ({self.description})" if self.description else "")
        return f"dead-lettered: message {self.message_id!r} is in the dead-letter queue of {self.queue!r}{why}{when}"

    def to_json(self) -> dict[str, Any]:
        return {
            "place": self.place,
            "queue": self.queue,
            "message_id": self.message_id,
            "enqueued_at": self.enqueued_at.isoformat() if self.enqueued_at else None,
            "reason": self.reason,
            "description": self.description,
        }


def _is_of_event(message_id: str, event_id: str) -> bool:
    # The first attempt carries the event id; retries and replays append '#<attempt>' or '#r<g>#<attempt>'.
    return message_id == event_id or message_id.startswith(f"{event_id}#")


async def find_in_queues(
    settings: Settings, event_id: str, *, limit: int = PEEK_LIMIT
) -> tuple[list[Sighting], bool]:
    """Peek the queue and its dead-letter queue for the event's messages (nothing is locked).

    Returns the sightings and whether both queues were searched to the end (``False`` when one
    holds more than ``limit`` messages).
    """
    connection = ServiceBusConnection.from_settings(settings, purpose="looking for the event in the queue")
    sightings: list[Sighting] = []
    complete = True
    try:
        for dead_letters in (False, True):
            links = QueueLinks(connection, settings.queue, dead_letters=dead_letters, send=False)
            try:
                await links.open()
                next_seq, seen = 0, 0
                while True:
                    batch = await links.peek(250, from_sequence=next_seq)
                    if not batch:
                        break
                    for delivery in batch:
                        next_seq = max(next_seq, (delivery.sequence_number or 0) + 1)
                        if _is_of_event(delivery.message_id, event_id):
                            sightings.append(
                                Sighting(
                                    "dead-letter queue" if dead_letters else "queue",
                                    settings.queue,
                                    delivery.message_id,
                                    delivery.enqueued_at,
                                    delivery.dead_letter_reason,
                                    delivery.dead_letter_description,
                                )
                            )
                    seen += len(batch)
                    if seen >= limit:
                        complete = False
                        break
            finally:
                await links.close()
    except QueueNotFound as exc:
        raise OpsError(f"queue {settings.queue!r} does not exist in this namespace (POSTBUS_QUEUE)") from exc
    except (AuthenticationFailed, AccessDenied) as exc:
        raise OpsError(f"Service Bus refused the credentials: {exc.detail}") from exc
    except BusError as exc:
        raise OpsError(str(exc)) from exc
    finally:
        await connection.close()
    return sightings, complete
