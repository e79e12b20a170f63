"""The Azure Table Storage record store (azure-data-tables, async).

This module is the only place that imports ``azure.data.tables``; its ``azure.core`` exceptions
become :class:`~postbus.records.errors.RecordStoreUnavailable` in :meth:`TableRecordStore._failed`.

Layout, one table, three kinds of entity told apart by their partition key::

    d:<YYYYMMDD> / <operation id>   the record, in the partition of the UTC day it was first stored
    o:<operation id> / -            pointer: which day partition holds the operation's record
    e:<event id> / <operation id>   index: the operations (generations) of an event, with their day

Why day partitions: expiry and reports are range queries over a few partitions instead of scans
of the whole table. Table Storage has no TTL or lifecycle policy, so :meth:`prune` reads only
the expired partitions and deletes their records in batch transactions (up to 100 entities in
one request), plus one pointer and one index entity per record: its cost grows with what expires,
never with what stays. Reports carry only the operation id, so the pointer finds the day; the
first write of an operation creates it with an insert-if-absent, which settles races between
writers.

Writes are read-merge-replace with ``If-Match`` on the record's ETag: a writer whose record changed
since it read it gets 412, reads again and merges again, so two writers never lose an update.
Pointer and index entities are written before the record and removed before it on prune, so a
crash leaves at worst an entity that points at nothing, which lookups skip.

A record's day is that of the first write stored; a write made earlier but stored later can make
its ``created_at`` earlier than its partition's day, so summaries and prune read one extra day of
partitions after the range.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from postbus.records.errors import RecordStoreUnavailable
from postbus.records.record import DeliveryRecord, from_fields, merge, to_fields
from postbus.records.store import generation_order
from postbus.records.summary import DEFAULT_SLO, Summary, summarize
from postbus.records.url import TableLocation

__all__ = ["TableRecordStore", "create_table_if_missing", "failure_cause", "table_client"]

#: Read-merge-replace rounds before a write gives up as unavailable (each loses only to a writer
#: that got through, so this bounds contention, not progress).
WRITE_ATTEMPTS: Final = 16
#: Partitions of days after a range that a record stored late may sit in (module docstring).
LATE_DAYS: Final = 1
#: Entities per batch transaction (the service's limit).
BATCH: Final = 100
_POINTER_ROW: Final = "-"


def _day(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d")


def _record_key(day: str) -> str:
    return f"d:{day}"


def _pointer_key(operation_id: str) -> str:
    return f"o:{operation_id}"


def _event_key(event_id: str) -> str:
    return f"e:{event_id}"


def _entity(day: str, record: DeliveryRecord) -> dict[str, Any]:
    values = {name: value for name, value in to_fields(record).items() if value is not None}
    values["PartitionKey"] = _record_key(day)
    values["RowKey"] = record.operation_id
    return values


def _decode(entity: TableEntity) -> DeliveryRecord:
    return from_fields(entity)


def failure_cause(exc: Exception) -> str:
    """One line on why a Table Storage call failed: the status and error code, else the exception."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code = getattr(exc, "error_code", None) or (exc.reason or "")
        return f"{exc.status_code} {code}".strip()
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def table_client(
    location: TableLocation, *, account_key: str | None, retry_total: int, timeout: float
) -> tuple[TableClient, Any]:
    """An async client of ``location``'s table, and the credential to close with it (``None``: none).

    ``account_key`` signs with the account's shared key (Azurite); without it,
    ``DefaultAzureCredential`` (a managed identity in Azure). ``timeout`` bounds one request.
    """
    credential: Any
    owned: Any = None
    if account_key is not None:
        credential = AzureNamedKeyCredential(location.account, account_key)
    else:
        from azure.identity.aio import DefaultAzureCredential

        credential = owned = DefaultAzureCredential()
    client = TableClient(
        location.endpoint,
        location.table,
        credential=credential,
        retry_total=retry_total,
        connection_timeout=min(5.0, timeout),
        read_timeout=timeout,
        # Otherwise every request looks up proxy variables and ~/.netrc (see worker/mailer.py).
        use_env_settings=False,
        logging_enable=False,
    )
    return client, owned


async def create_table_if_missing(table: TableClient, *, forbidden_ok: bool = False) -> None:
    """Create ``table``'s table unless it exists; raises the SDK's ``AzureError`` otherwise.

    ``forbidden_ok``: a 403 passes too. A role scoped to one table (the roster's, in Azure) may not
    be allowed to create it; the deployment does, and if it is really missing the next write says so.
    """
    try:
        await table.create_table()
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        if not (forbidden_ok and exc.status_code == 403):
            raise


class TableRecordStore:
    """:class:`~postbus.records.store.RecordStore` in one Azure Storage table (created if missing).

    ``account_key`` signs with the account's shared key (Azurite, or an account that allows keys);
    without it, ``DefaultAzureCredential`` (a managed identity in Azure). ``retry_total`` is the
    SDK's own retries of one request before the store reports itself unavailable.
    """

    def __init__(
        self,
        location: TableLocation,
        *,
        account_key: str | None = None,
        retry_total: int = 2,
        timeout: float = 15.0,
    ) -> None:
        self.location = location
        #: Writes that lost an If-Match race and were merged again (for tests and telemetry).
        self.conflicts = 0
        self._table, self._credential = table_client(
            location, account_key=account_key, retry_total=retry_total, timeout=timeout
        )
        self._opened = False
        self._open_lock = asyncio.Lock()

    def _failed(self, exc: Exception) -> RecordStoreUnavailable:
        return RecordStoreUnavailable(f"table {self.location.url}: {failure_cause(exc)}")

    # --- plumbing ----------------------------------------------------------------------------

    async def _get(self, partition: str, row: str) -> TableEntity | None:
        try:
            return await self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    async def _day_of(self, operation_id: str) -> str | None:
        """The day partition of ``operation_id``, or ``None`` if it has none yet."""
        pointer = await self._get(_pointer_key(operation_id), _POINTER_ROW)
        return None if pointer is None else str(pointer["day"])

    async def _claim_day(self, operation_id: str, created_at: datetime) -> tuple[str, bool]:
        """The operation's day partition, claimed from ``created_at`` if it has none; and whether
        this call claimed it (then no record can exist yet, barring a crash or a prune)."""
        day = await self._day_of(operation_id)
        if day is not None:
            return day, False
        day = _day(created_at)
        try:
            await self._table.create_entity(
                {"PartitionKey": _pointer_key(operation_id), "RowKey": _POINTER_ROW, "day": day}
            )
        except ResourceExistsError:
            claimed = await self._day_of(operation_id)
            if claimed is None:  # pruned in between: claim again on the caller's retry
                raise ResourceModifiedError("pointer vanished") from None
            return claimed, False
        return day, True

    async def _index(self, day: str, record: DeliveryRecord) -> None:
        assert record.event_id is not None
        await self._table.upsert_entity(
            {
                "PartitionKey": _event_key(record.event_id),
                "RowKey": record.operation_id,
                "day": day,
            },
            mode=UpdateMode.REPLACE,
        )

    async def _write_once(self, update: DeliveryRecord) -> DeliveryRecord | None:
        """One read-merge-replace round; ``None`` when another writer got in between."""
        day, claimed = await self._claim_day(update.operation_id, update.created_at)
        entity = None if claimed else await self._get(_record_key(day), update.operation_id)
        current = None if entity is None else _decode(entity)
        merged = update if current is None else merge(current, update)
        if merged.event_id is not None and (current is None or current.event_id is None):
            await self._index(day, merged)
        if entity is None:
            try:
                await self._table.create_entity(_entity(day, merged))
            except ResourceExistsError:
                return None
            return merged
        if merged == current:
            return merged
        try:
            await self._table.update_entity(
                _entity(day, merged),
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return merged

    async def _records(self, query: str, parameters: dict[str, Any]) -> AsyncIterator[TableEntity]:
        async for entity in self._table.query_entities(query, parameters=parameters):
            yield entity

    # --- the protocol ------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the table if missing (once per store)."""
        async with self._open_lock:
            if self._opened:
                return
            try:
                await create_table_if_missing(self._table)
            except AzureError as exc:
                raise self._failed(exc) from exc
            self._opened = True

    async def write(self, update: DeliveryRecord) -> DeliveryRecord:
        """Merge ``update`` into its record with conditional replaces until one sticks."""
        await self.open()
        try:
            for _ in range(WRITE_ATTEMPTS):
                try:
                    merged = await self._write_once(update)
                except ResourceModifiedError:
                    merged = None
                if merged is not None:
                    return merged
                self.conflicts += 1
        except AzureError as exc:
            raise self._failed(exc) from exc
        raise RecordStoreUnavailable(
            f"table {self.location.url}: record {update.operation_id} kept changing; "
            f"gave up after {WRITE_ATTEMPTS} attempts"
        )

    async def get(self, operation_id: str) -> DeliveryRecord | None:
        """Pointer, then record: two point reads."""
        await self.open()
        try:
            day = await self._day_of(operation_id)
            if day is None:
                return None
            entity = await self._get(_record_key(day), operation_id)
        except AzureError as exc:
            raise self._failed(exc) from exc
        return None if entity is None else _decode(entity)

    async def by_event(self, event_id: str) -> list[DeliveryRecord]:
        """The event's index partition, then a point read per generation."""
        await self.open()
        try:
            index = [
                entity async for entity in self._records("PartitionKey eq @pk", {"pk": _event_key(event_id)})
            ]
            entities = await asyncio.gather(
                *(self._get(_record_key(str(e["day"])), str(e["RowKey"])) for e in index)
            )
        except AzureError as exc:
            raise self._failed(exc) from exc
        return generation_order(_decode(e) for e in entities if e is not None)

    async def summary(self, *, since: datetime, until: datetime, slo: timedelta = DEFAULT_SLO) -> Summary:
        """A range query over the day partitions of ``[since, until)`` (plus :data:`LATE_DAYS`)."""
        await self.open()
        parameters = {
            "lo": _record_key(_day(since)),
            "hi": _record_key(_day(until + timedelta(days=LATE_DAYS))),
            "since": since,
            "until": until,
        }
        query = (
            "PartitionKey ge @lo and PartitionKey le @hi and created_at ge @since and created_at lt @until"
        )
        try:
            records = [_decode(entity) async for entity in self._records(query, parameters)]
        except AzureError as exc:
            raise self._failed(exc) from exc
        return summarize(records, since=since, until=until, slo=slo)

    async def prune(self, *, before: datetime) -> int:
        """Delete expired records: pointers and index entries first, then the records in batches."""
        await self.open()
        parameters = {
            "lo": "d:",
            "hi": _record_key(_day(before + timedelta(days=LATE_DAYS))),
            "before": before,
        }
        query = "PartitionKey ge @lo and PartitionKey le @hi and created_at lt @before"
        try:
            expired = [
                entity
                async for entity in self._table.query_entities(
                    query, parameters=parameters, select=["PartitionKey", "RowKey", "event_id"]
                )
            ]
            gate = asyncio.Semaphore(16)

            async def delete(partition: str, row: str) -> None:
                async with gate:
                    await self._table.delete_entity(partition, row)

            await asyncio.gather(
                *(delete(_pointer_key(str(e["RowKey"])), _POINTER_ROW) for e in expired),
                *(
                    delete(_event_key(str(e["event_id"])), str(e["RowKey"]))
                    for e in expired
                    if e.get("event_id")
                ),
            )
            by_partition: dict[str, list[str]] = defaultdict(list)
            for entity in expired:
                by_partition[str(entity["PartitionKey"])].append(str(entity["RowKey"]))
            for partition, rows in by_partition.items():
                for start in range(0, len(rows), BATCH):
                    chunk = rows[start : start + BATCH]
                    try:
                        await self._table.submit_transaction(
                            [("delete", {"PartitionKey": partition, "RowKey": row}) for row in chunk]
                        )
                    except TableTransactionError:
                        # One of them went meanwhile (another prune): delete one by one, which
                        # ignores what is already gone.
                        await asyncio.gather(*(delete(partition, row) for row in chunk))
        except AzureError as exc:
            raise self._failed(exc) from exc
        return len(expired)

    async def close(self) -> None:
        """Close the HTTP session and the credential."""
        await self._table.close()
        if self._credential is not None:
            await self._credential.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
