"""The embedded record store: one SQLite file that several local worker processes share.

WAL journaling lets readers run beside the one writer; every write is a short ``BEGIN IMMEDIATE``
transaction (read the row, :func:`~postbus.records.record.merge`, write it back) that takes the
file's write lock up front, so writers from other processes queue on the busy timeout instead of
failing on a lock upgrade, and no merge is lost. ``synchronous=FULL``: a committed write survives a
power cut, which matters because the worker completes its Service Bus message after the write.

Timestamps are stored as fixed-width ISO-8601 UTC text (sortable, readable with the ``sqlite3``
shell). Retention is one indexed ``DELETE`` on ``created_at``. The connection is used from one
thread at a time (a lock) via :func:`asyncio.to_thread`; ``sqlite3`` errors become
:class:`~postbus.records.errors.RecordStoreUnavailable` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from postbus.records.errors import RecordStoreUnavailable
from postbus.records.record import DeliveryRecord, from_fields, merge, to_fields
from postbus.records.store import generation_order
from postbus.records.summary import DEFAULT_SLO, Summary, summarize

__all__ = ["SCHEMA_VERSION", "SqliteConnection", "SqliteRecordStore", "connect_wal"]

SCHEMA_VERSION: Final = 1
_T = TypeVar("_T")

_COLUMNS: Final = (
    ("operation_id", "TEXT PRIMARY KEY"),
    ("event_id", "TEXT"),
    ("generation", "INTEGER"),
    ("tenant", "TEXT"),
    ("type", "TEXT"),
    ("recipient_domains", "TEXT NOT NULL DEFAULT ''"),
    ("first_enqueued", "TEXT"),
    ("accepted_at", "TEXT"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("outcome", "TEXT NOT NULL"),
    ("outcome_at", "TEXT NOT NULL"),
    ("dead_letter_reason", "TEXT"),
    ("dead_letter_description", "TEXT"),
    ("dead_lettered_at", "TEXT"),
    ("status_message", "TEXT"),
    ("smtp_code", "INTEGER"),
    ("smtp_status", "TEXT"),
    ("mail_server", "TEXT"),
    ("report_id", "TEXT"),
    ("delivered_at", "TEXT"),
    ("opened_at", "TEXT"),
    ("clicked_at", "TEXT"),
    ("created_at", "TEXT NOT NULL"),
    ("updated_at", "TEXT NOT NULL"),
)
_NAMES: Final = tuple(name for name, _ in _COLUMNS)
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS delivery_records ("
    + ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
    + ")",
    "CREATE INDEX IF NOT EXISTS delivery_records_by_event ON delivery_records (event_id, generation)",
    "CREATE INDEX IF NOT EXISTS delivery_records_by_created ON delivery_records (created_at)",
)
_SELECT: Final = f"SELECT {', '.join(_NAMES)} FROM delivery_records"  # noqa: S608 - fixed column names
_UPSERT: Final = (
    f"INSERT OR REPLACE INTO delivery_records ({', '.join(_NAMES)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join('?' for _ in _NAMES)})"
)


def _text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _row(record: DeliveryRecord) -> tuple[Any, ...]:
    values = to_fields(record)
    return tuple(_text(v) if isinstance(v, datetime) else v for v in (values[name] for name in _NAMES))


def _record(row: tuple[Any, ...]) -> DeliveryRecord:
    return from_fields(dict(zip(_NAMES, row, strict=True)))


def connect_wal(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection to ``path`` (created with its folder) in WAL mode, usable from any one thread.

    Switching a new file to WAL takes an exclusive lock for which SQLite does not call the busy
    handler, so two processes creating the file at once retry here for up to ``busy_timeout``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        deadline = time.monotonic() + busy_timeout
        while connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteConnection:
    """One SQLite connection in WAL mode, worked by one thread at a time for asyncio callers.

    Opened on the first :meth:`call` with ``initialise`` (pragmas, schema); ``sqlite3`` and OS
    errors become ``error(exc)``. Callers queue on an asyncio lock, not in the thread pool: one
    thread works the connection at a time, and waiting writers do not hold pool threads other code
    needs. :meth:`close` closes it; a later call reopens it.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        initialise: Callable[[sqlite3.Connection], object],
        error: Callable[[Exception], Exception],
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._initialise = initialise
        self._error = error
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._queue = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = connect_wal(self.path, busy_timeout=self._busy_timeout)
            try:
                self._initialise(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                return operation(self._connect())
            except (sqlite3.Error, OSError) as exc:
                raise self._error(exc) from exc

    async def call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` on the connection in a worker thread, after the callers before."""
        async with self._queue:
            return await asyncio.to_thread(self._run, operation)

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""

        def operation() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        await asyncio.to_thread(operation)


class SqliteRecordStore:
    """:class:`~postbus.records.store.RecordStore` in an SQLite file (created with its folder).

    ``busy_timeout`` is how long a write waits for another process's write lock before it fails
    as unavailable.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._db = SqliteConnection(
            self.path,
            busy_timeout=busy_timeout,
            initialise=self._initialise,
            error=lambda exc: RecordStoreUnavailable(f"sqlite {self.path}: {exc}"),
        )

    # --- plumbing ----------------------------------------------------------------------------

    def _initialise(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA synchronous=FULL")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this Postbus knows ({SCHEMA_VERSION})"
            )
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    # --- the protocol ------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file, its folder and the schema if missing."""
        await self._db.call(lambda _: None)

    async def write(self, update: DeliveryRecord) -> DeliveryRecord:
        """Merge ``update`` into its row in one immediate transaction."""

        def operation(db: sqlite3.Connection) -> DeliveryRecord:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(f"{_SELECT} WHERE operation_id = ?", (update.operation_id,)).fetchone()
                merged = update if row is None else merge(_record(row), update)
                db.execute(_UPSERT, _row(merged))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return merged

        return await self._db.call(operation)

    async def get(self, operation_id: str) -> DeliveryRecord | None:
        """The row of ``operation_id``."""

        def operation(db: sqlite3.Connection) -> DeliveryRecord | None:
            row = db.execute(f"{_SELECT} WHERE operation_id = ?", (operation_id,)).fetchone()
            return None if row is None else _record(row)

        return await self._db.call(operation)

    async def by_event(self, event_id: str) -> list[DeliveryRecord]:
        """Every generation of ``event_id`` (indexed)."""

        def operation(db: sqlite3.Connection) -> list[DeliveryRecord]:
            rows = db.execute(f"{_SELECT} WHERE event_id = ?", (event_id,)).fetchall()
            return generation_order(_record(row) for row in rows)

        return await self._db.call(operation)

    async def summary(self, *, since: datetime, until: datetime, slo: timedelta = DEFAULT_SLO) -> Summary:
        """Counts over ``[since, until)`` from an indexed range scan on ``created_at``."""

        def operation(db: sqlite3.Connection) -> Summary:
            rows = db.execute(
                f"{_SELECT} WHERE created_at >= ? AND created_at < ?", (_text(since), _text(until))
            )
            return summarize((_record(row) for row in rows), since=since, until=until, slo=slo)

        return await self._db.call(operation)

    async def prune(self, *, before: datetime) -> int:
        """Delete the rows first written before ``before``."""

        def operation(db: sqlite3.Connection) -> int:
            cursor = db.execute("DELETE FROM delivery_records WHERE created_at < ?", (_text(before),))
            return cursor.rowcount

        return await self._db.call(operation)

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        await self._db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
