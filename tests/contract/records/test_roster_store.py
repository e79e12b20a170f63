"""The replica roster's backends in the record store: the fake, SQLite, and Azure Table on Azurite.

One contract for all three (join, count, leave, age-out), then what each real store adds: SQLite
shared by two processes through one file, the Table roster beside the record table counting by the
service's clock, and one error class for an unreachable store. The Table tests use the real
azure-data-tables SDK against Azurite.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postbus.records.url import TableLocation, parse_record_url
from postbus.settings import load_settings
from postbus.worker.roster import (
    MemoryRoster,
    Roster,
    RosterUnavailable,
    roster_for,
    roster_group,
    roster_table_name,
)
from postbus.worker.roster.sqlite import SqliteRoster
from postbus.worker.roster.tables import TableRoster
from tests.azurite.server import ACCOUNT, KEY, Azurite


@dataclass
class Clock:
    """A clock the test moves (the fake and SQLite take an injected clock)."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Storage:
    """Hands out roster handles on one shared storage of one kind, each as a separate replica would."""

    kind: str
    expiry: float
    path: Path | None = None
    location: TableLocation | None = None
    clock: Clock = field(default_factory=Clock)
    memory: MemoryRoster | None = None
    handles: list[Roster] = field(default_factory=list)

    def open(self) -> Roster:
        roster: Roster
        if self.kind == "memory":
            if self.memory is None:
                self.memory = MemoryRoster(clock=self.clock, expiry=self.expiry)
            roster = self.memory
        elif self.kind == "sqlite":
            assert self.path is not None
            roster = SqliteRoster(self.path, expiry=self.expiry, clock=self.clock)
        else:
            assert self.location is not None
            roster = TableRoster(self.location, expiry=self.expiry, account_key=KEY)
        self.handles.append(roster)
        return roster

    async def age(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store: the test's clock, or real time for the service's."""
        if self.kind == "table":
            await asyncio.sleep(seconds)  # the service stamps heartbeats with its own clock
        else:
            self.clock.now += seconds


def table_location(azurite: Azurite) -> TableLocation:
    parsed = parse_record_url(azurite.table_url(f"roster{uuid.uuid4().hex[:16]}"))
    assert isinstance(parsed, TableLocation)
    return parsed


@pytest.fixture(params=["memory", "sqlite", "table"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    kind = request.param
    if kind == "table":
        # Real time passes for the service's clock: a short expiry keeps the age-out test quick.
        found = Storage(kind, expiry=1.0, location=table_location(request.getfixturevalue("azurite")))
    else:
        found = Storage(kind, expiry=15.0, path=tmp_path / "state" / "records.db")
    yield found
    for handle in found.handles:
        await handle.close()


async def test_replicas_joining_one_store_count_each_other(storage: Storage) -> None:
    a, b, c = storage.open(), storage.open(), storage.open()
    # Given three replicas joining one after the other, each counts those before it and itself
    assert [await a.beat("a"), await b.beat("b"), await c.beat("c")] == [1, 2, 3]
    # And a repeated heartbeat is the same replica, not another one
    assert await a.beat("a") == 3


async def test_a_replica_that_leaves_is_not_counted_any_more(storage: Storage) -> None:
    a, b = storage.open(), storage.open()
    await a.beat("a")
    await b.beat("b")
    await b.leave("b")
    assert await a.beat("a") == 1
    await b.leave("never-joined")  # an unknown id is no error


async def test_a_replica_that_stopped_beating_ages_out(storage: Storage) -> None:
    a, b = storage.open(), storage.open()
    await a.beat("a")
    await b.beat("b")
    # When b is killed (no leave) and more than the expiry passes while a keeps beating
    await storage.age(storage.expiry * 0.6)
    assert await a.beat("a") == 2  # still within its expiry
    await storage.age(storage.expiry * 0.6)
    # Then a counts itself alone
    assert await a.beat("a") == 1
    assert await b.beat("b") == 2  # b back from a long pause: it simply joins again


async def test_sqlite_roster_lives_in_the_record_file_and_is_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    settings = load_settings(record_url=f"sqlite:///{path}")
    roster = roster_for(settings)
    assert isinstance(roster, SqliteRoster)
    assert roster.path == path
    # Given another worker process that beat into the same file and was killed without leaving
    other = (
        "import asyncio, sys\n"
        "from postbus.worker.roster.sqlite import SqliteRoster\n"
        "async def main():\n"
        "    roster = SqliteRoster(sys.argv[1], expiry=15.0, group=sys.argv[2])\n"
        "    print(await roster.beat('other-process'))\n"
        "    await roster.close()\n"
        "asyncio.run(main())\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", other, str(path), roster_group(settings), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert (process.returncode, out.decode().strip()) == (0, "1")
    # Then this process counts it, in WAL mode like the record store, in a `roster` table
    try:
        assert await roster.beat("this-process") == 2
    finally:
        await roster.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = sorted(row[0] for row in db.execute("SELECT replica FROM roster"))
    assert rows == ["other-process", "this-process"]


async def test_pipelines_sharing_a_record_file_count_only_their_own_replicas(tmp_path: Path) -> None:
    # Given a benchmark's workers and a local worker on another queue, records in one file
    path = tmp_path / "records.db"
    orders = load_settings(record_url=f"sqlite:///{path}", queue="orders")
    returns = load_settings(record_url=f"sqlite:///{path}", queue="returns")
    assert roster_group(orders) != roster_group(returns)
    a, b, c = roster_for(orders), roster_for(orders), roster_for(returns)
    try:
        assert await a.beat("orders-1") == 1
        assert await b.beat("orders-2") == 2
        # Then the other pipeline's replica counts alone, and leaving touches only its own group
        assert await c.beat("returns-1") == 1
        await c.leave("orders-1")
        assert await a.beat("orders-1") == 2
    finally:
        for roster in (a, b, c):
            await roster.close()


async def test_an_unusable_sqlite_file_raises_one_error_class(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    roster = SqliteRoster(folder, expiry=15.0)  # a directory where the database file should be
    with pytest.raises(RosterUnavailable, match=r"^roster sqlite .*a-folder: "):
        await roster.beat("a")
    await roster.close()


async def test_the_table_roster_sits_beside_the_record_table(azurite: Azurite) -> None:
    record_table = f"records{uuid.uuid4().hex[:12]}"
    settings = load_settings(record_url=azurite.table_url(record_table), record_account_key=KEY)
    roster = roster_for(settings)
    assert isinstance(roster, TableRoster)
    assert roster.location.table == f"{record_table}replicas"
    assert roster.location.endpoint == azurite.endpoint
    # The table does not exist yet: the first heartbeat creates it
    try:
        assert await roster.beat("first") == 1
        assert await roster.beat("second") == 2
    finally:
        await roster.close()


async def test_pipelines_sharing_a_table_count_only_their_own_replicas(azurite: Azurite) -> None:
    where = table_location(azurite)
    a = TableRoster(where, expiry=15.0, group="qorders", account_key=KEY)
    b = TableRoster(where, expiry=15.0, group="qreturns", account_key=KEY)
    try:
        assert await a.beat("orders-1") == 1
        assert await b.beat("returns-1") == 1
        assert await a.beat("orders-2") == 2
    finally:
        await a.close()
        await b.close()


def test_the_roster_table_name_stays_a_valid_table_name() -> None:
    assert roster_table_name("deliveryrecords") == "deliveryrecordsreplicas"
    longest = roster_table_name("r" * 63)
    assert len(longest) == 63
    assert longest.endswith("replicas")


async def test_an_unreachable_table_raises_one_error_class() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    where = parse_record_url(f"http://127.0.0.1:{port}/{ACCOUNT}/recordsreplicas")
    assert isinstance(where, TableLocation)
    roster = TableRoster(where, expiry=15.0, account_key=KEY, retry_total=0)
    with pytest.raises(
        RosterUnavailable, match=rf"^roster table http://127.0.0.1:{port}/{ACCOUNT}/recordsreplicas: "
    ):
        await roster.beat("a")
    with pytest.raises(RosterUnavailable):
        await roster.leave("a")
    await roster.close()


async def test_a_refused_key_raises_one_error_class(azurite: Azurite) -> None:
    wrong = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk="
    roster = TableRoster(table_location(azurite), expiry=15.0, account_key=wrong, retry_total=0)
    with pytest.raises(RosterUnavailable, match="403"):
        await roster.beat("a")
    await roster.close()
