"""The worker's delivery-record writes: what it sent or dead-lettered, written before it settles.

After processing, and before settlement, the worker writes one record update for a message it
sent (``sent``: ACS accepted it, or already had it) or dead-lettered (``dead_lettered`` with the
reason). Retries and systemic failures write nothing: the event is still on its way.

The store may be down. A write is tried a few times within a short budget; if it still fails the
worker counts it (``postbus.records.write.failures``), logs one warning line and settles the
message anyway. Sending never waits on the store for longer than the budget, and the Service Bus
message is never held back or lost because of it. The record is not lost either in the common
case: ACS's delivery report creates it (without the worker's details) when it arrives.

Writing before settling is what makes a crash harmless: a worker killed between the ACS send and
this write never completed the message, so Service Bus redelivers it, the pipeline finds the
operation at ACS (``AlreadySent``) and this module writes the same ``sent`` update then. A report
that arrived in between merges with it into one record (see :mod:`postbus.records.record`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from postbus.events import valid_token
from postbus.logs import get_logger, recipient_domain
from postbus.records import DeliveryRecord, RecordStore, RecordStoreUnavailable, dead_lettered, sent
from postbus.telemetry import Telemetry
from postbus.worker.mailer import operation_id_for
from postbus.worker.outcome import AlreadySent, DeadLetter, Sent
from postbus.worker.pipeline import Processed

__all__ = ["WRITE_BUDGET", "WRITE_TRIES", "RecordWriter", "record_update"]

log = get_logger("postbus.worker.records")

#: Tries of one record write, and the pause before each retry.
WRITE_TRIES: Final = 3
_PAUSES: Final = (0.1, 0.4)
#: Seconds one message may spend on its record write in all, tries and pauses included.
WRITE_BUDGET: Final = 5.0


def record_update(
    processed: Processed, *, namespace: UUID, now: datetime, enqueued_at: datetime | None = None
) -> DeliveryRecord | None:
    """The record write for ``processed``, or ``None`` when there is nothing to record.

    ``enqueued_at`` (the message's Service Bus enqueue time) stands in for the first enqueue when
    the message carries none (a first attempt: its own enqueue is the first).

    A dead-lettered body that did not decode is recorded under its best-effort event id (as
    generation 0); without a usable id there is no key to record it under.
    """
    outcome = processed.outcome
    decoded = processed.decoded
    first_enqueued = (decoded.first_enqueued if decoded is not None else None) or enqueued_at
    if isinstance(outcome, Sent | AlreadySent):
        assert decoded is not None  # only a decoded event is sent
        event = decoded.event
        return sent(
            operation_id=outcome.operation_id,
            event_id=event.id,
            generation=decoded.generation,
            tenant=event.tenant or None,
            type=event.type,
            recipient_domains=_domains(processed),
            first_enqueued=first_enqueued,
            attempts=decoded.attempt + 1,
            # For AlreadySent the first acceptance was earlier; merge keeps the earliest we learn.
            accepted_at=now,
            at=now,
        )
    if isinstance(outcome, DeadLetter):
        identity = processed.identity
        if identity is None or not valid_token("id", identity.id):
            return None
        generation = decoded.generation if decoded is not None else 0
        operation_id = processed.operation_id or operation_id_for(
            identity.id, namespace=namespace, generation=generation
        )
        return dead_lettered(
            operation_id=operation_id,
            event_id=identity.id,
            generation=generation,
            tenant=identity.tenant or None,
            type=identity.type or None,
            recipient_domains=_domains(processed),
            first_enqueued=first_enqueued,
            attempts=(decoded.attempt + 1) if decoded is not None else 1,
            reason=outcome.reason.value,
            description=outcome.description,
            at=now,
        )
    return None


def _domains(processed: Processed) -> list[str]:
    event = processed.event
    if event is None:
        return []
    domains = (recipient_domain(a.address) for a in (*event.to, *event.cc, *event.bcc))
    return [domain for domain in domains if domain]


class RecordWriter:
    """Writes the worker's record updates with bounded retries; never raises for the store.

    Example::

        writer = RecordWriter(store, namespace=settings.operation_namespace, telemetry=telemetry)
        written = await writer.write(processed, enqueued_at=delivery.enqueued_at)   # False: counted and logged, settle anyway
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        namespace: UUID,
        telemetry: Telemetry,
        tries: int = WRITE_TRIES,
        budget: float = WRITE_BUDGET,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._namespace = namespace
        self._telemetry = telemetry
        self._tries = tries
        self._budget = budget
        self._now = now
        #: Writes that failed after every try (also the ``postbus.records.write.failures`` counter).
        self.failures = 0

    async def write(self, processed: Processed, *, enqueued_at: datetime | None = None) -> bool:
        """Write the update of ``processed`` (if any); ``False`` if the store did not take it."""
        update = record_update(processed, namespace=self._namespace, now=self._now(), enqueued_at=enqueued_at)
        if update is None:
            return True
        error = "timed out"
        try:
            async with asyncio.timeout(self._budget):
                for attempt in range(self._tries):
                    try:
                        await self.store.write(update)
                    except RecordStoreUnavailable as exc:
                        error = str(exc)
                        if attempt + 1 < self._tries:
                            await asyncio.sleep(_PAUSES[min(attempt, len(_PAUSES) - 1)])
                        continue
                    self._telemetry.record_write(update.outcome.value, ok=True)
                    return True
        except TimeoutError:
            error = f"{error} (gave up after {self._budget:g} s)"
        self.failures += 1
        self._telemetry.record_write(update.outcome.value, ok=False)
        log.warning(
            "record write failed",
            operation_id=update.operation_id,
            record_outcome=update.outcome.value,
            error=error,
            failures=self.failures,
        )
        return False
