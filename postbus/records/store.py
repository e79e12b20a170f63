"""The record store seam: one small protocol, an in-memory fake, and the factory from settings.

Backends: :class:`~postbus.records.sqlite.SqliteRecordStore` (embedded default, one file shared by
the local worker processes) and :class:`~postbus.records.tables.TableRecordStore` (Azure Table
Storage). :class:`MemoryRecordStore` is the fake for unit tests of code that writes records; all
three keep the same :func:`~postbus.records.record.merge` semantics, and one contract suite runs
against each.

Writers:

- the worker, when it sends (``sent``) or dead-letters (``dead_lettered``) an event; later maybe the
  producer (``queued``);
- the report consumer, with ``parse_report(body).as_write()`` for every report on ``email-events``.

Every write is an idempotent upsert that returns the stored record after the merge. A store that
cannot be reached raises :class:`~postbus.records.errors.RecordStoreUnavailable` (and nothing else
from its driver); the write can simply be retried. Stores open lazily on first use, so a worker
starts even while its store is down.

Example::

    store = record_store(settings)
    async with store:
        await store.write(sent(operation_id=op, event_id=event.id, ...))
        record = await store.get(op)                   # by ACS operation id
        history = await store.by_event(event.id)       # every generation, oldest first
        summary = await store.summary(since=start, until=end)
        removed = await store.prune(before=now - timedelta(days=settings.record_retention_days))
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from postbus.records.record import DeliveryRecord, merge
from postbus.records.summary import DEFAULT_SLO, Summary, summarize
from postbus.records.url import SqliteLocation, TableLocation, parse_record_url

if TYPE_CHECKING:
    from postbus.settings import Settings

__all__ = ["MemoryRecordStore", "RecordStore", "generation_order", "record_store"]


class RecordStore(Protocol):
    """Where delivery records live. Methods raise ``RecordStoreUnavailable``, never driver errors."""

    async def open(self) -> None:
        """Create what the store needs (file, schema, table) if missing; idempotent."""
        ...

    async def write(self, update: DeliveryRecord) -> DeliveryRecord:
        """Merge ``update`` into the record of its operation id (creating it) and return the result."""
        ...

    async def get(self, operation_id: str) -> DeliveryRecord | None:
        """The record of one ACS operation id, or ``None``."""
        ...

    async def by_event(self, event_id: str) -> list[DeliveryRecord]:
        """Every record of an event id (one per send generation), by generation.

        Records known only from reports (no worker write yet) have no event id and are not found
        here; look them up by operation id.
        """
        ...

    async def summary(self, *, since: datetime, until: datetime, slo: timedelta = DEFAULT_SLO) -> Summary:
        """Counts of the records first written in ``[since, until)`` (see :mod:`~postbus.records.summary`)."""
        ...

    async def prune(self, *, before: datetime) -> int:
        """Delete the records first written before ``before``; returns how many went."""
        ...

    async def close(self) -> None:
        """Release connections and credentials."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def generation_order(records: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """Records sorted by generation (unknown last), then creation time."""
    return sorted(
        records,
        key=lambda r: (r.generation is None, r.generation or 0, r.created_at, r.operation_id),
    )


class MemoryRecordStore:
    """A :class:`RecordStore` in a dict: the fake for unit tests, with the real merge semantics.

    ``fail_with`` makes every call raise it (e.g. ``RecordStoreUnavailable("down")``) to test a
    caller's handling of an unreachable store; ``writes`` counts the writes that got through.
    """

    def __init__(self) -> None:
        self.records: dict[str, DeliveryRecord] = {}
        self.writes = 0
        self.fail_with: Exception | None = None
        self._lock = asyncio.Lock()

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def open(self) -> None:
        """Nothing to create."""
        self._check()

    async def write(self, update: DeliveryRecord) -> DeliveryRecord:
        """Merge ``update`` into its record."""
        self._check()
        async with self._lock:
            current = self.records.get(update.operation_id)
            merged = update if current is None else merge(current, update)
            self.records[update.operation_id] = merged
            self.writes += 1
            return merged

    async def get(self, operation_id: str) -> DeliveryRecord | None:
        """The record of ``operation_id``."""
        self._check()
        return self.records.get(operation_id)

    async def by_event(self, event_id: str) -> list[DeliveryRecord]:
        """Every generation of ``event_id``."""
        self._check()
        return generation_order(r for r in self.records.values() if r.event_id == event_id)

    async def summary(self, *, since: datetime, until: datetime, slo: timedelta = DEFAULT_SLO) -> Summary:
        """Counts over ``[since, until)``."""
        self._check()
        return summarize(self.records.values(), since=since, until=until, slo=slo)

    async def prune(self, *, before: datetime) -> int:
        """Drop records first written before ``before``."""
        self._check()
        old = [op for op, record in self.records.items() if record.created_at < before]
        for op in old:
            del self.records[op]
        return len(old)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def record_store(settings: Settings) -> RecordStore:
    """The store ``POSTBUS_RECORD_URL`` names (already validated by the settings); not yet opened."""
    location = parse_record_url(settings.record_url)
    if isinstance(location, SqliteLocation):
        from postbus.records.sqlite import SqliteRecordStore

        return SqliteRecordStore(location.path)
    assert isinstance(location, TableLocation)
    from postbus.records.tables import TableRecordStore

    key = settings.record_account_key
    return TableRecordStore(location, account_key=key.get_secret_value() if key is not None else None)
