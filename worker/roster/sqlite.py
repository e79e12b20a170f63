"""The roster in SQLite: a ``roster`` table in the record store's file, shared by local processes.

Rows are keyed by the deployment's roster group and the replica, so two pipelines that keep records
in one file (a benchmark beside a local worker) never count each other.

The file is the one ``POSTBUS_RECORD_URL`` names, in WAL mode as the record store keeps it, so
heartbeats never wait behind a record reader. A heartbeat is one short ``BEGIN IMMEDIATE``
transaction: stamp this replica, delete the expired rows, count the rest. Stamps are wall-clock
seconds (``time.time``): every process on the machine reads the same clock. The connection is used
from one thread at a time via :func:`asyncio.to_thread`; ``sqlite3`` errors become
:class:`~postbus.worker.roster.base.RosterUnavailable` here and nowhere else.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from postbus.records.sqlite import SqliteConnection
from postbus.worker.roster.base import RosterUnavailable

__all__ = ["SqliteRoster"]

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS roster "
    "(grp TEXT NOT NULL, replica TEXT NOT NULL, seen REAL NOT NULL, PRIMARY KEY (grp, replica))"
)


class SqliteRoster:
    """:class:`~postbus.worker.roster.base.Roster` in an SQLite file (created with its folder).

    ``group``: the deployment the replicas count in (:func:`~postbus.worker.roster.base.roster_group`).
    ``expiry``: seconds a heartbeat keeps its replica live. ``busy_timeout``: how long a heartbeat
    waits for another process's write lock before it fails as unavailable.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        expiry: float,
        group: str = "replicas",
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.group = group
        self._expiry = expiry
        self._clock = clock
        self._db = SqliteConnection(
            self.path,
            busy_timeout=busy_timeout,
            initialise=lambda connection: connection.execute(_SCHEMA),
            error=lambda exc: RosterUnavailable(f"roster sqlite {self.path}: {exc}"),
        )

    async def beat(self, replica: str) -> int:
        """Stamp ``replica``, delete expired rows and count the live ones, in one transaction."""
        now = self._clock()

        def operation(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO roster (grp, replica, seen) VALUES (?, ?, ?)",
                    (self.group, replica, now),
                )
                db.execute("DELETE FROM roster WHERE seen <= ?", (now - self._expiry,))
                (count,) = db.execute("SELECT COUNT(*) FROM roster WHERE grp = ?", (self.group,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return int(count)

        return await self._db.call(operation)

    async def leave(self, replica: str) -> None:
        """Delete ``replica``'s row."""
        await self._db.call(
            lambda db: db.execute("DELETE FROM roster WHERE grp = ? AND replica = ?", (self.group, replica))
        )

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        await self._db.close()
