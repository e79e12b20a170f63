"""What only the SQLite backend promises: a file shared by processes, WAL, one error class."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from postbus.records.errors import RecordStoreUnavailable
from postbus.records.record import DeliveryRecord, merge_all
from postbus.records.reports import DeliveryStatus
from postbus.records.sqlite import SqliteRecordStore
from postbus.records.store import record_store
from postbus.settings import load_settings
from tests.contract.records.writes import T0, op, report, sent_write

ROOT = Path(__file__).resolve().parents[3]
EVENTS = [f"order-proc-{n}" for n in range(4)]
ROUNDS = 60

# One writer process: its share of the writes, all racing the other process on the same records.
WRITER = """
import asyncio, sys
from pathlib import Path
from postbus.records.sqlite import SqliteRecordStore
from tests.contract.records.test_sqlite_store import writes_of

async def main(path, writer):
    store = SqliteRecordStore(Path(path))
    await store.open()
    writes = writes_of(writer)
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other writer
    for write in writes:
        await store.write(write)
    await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def writes_of(writer: int) -> list[DeliveryRecord]:
    writes = []
    for n in range(ROUNDS):
        for event_id in EVENTS:
            at = T0 + timedelta(seconds=n)
            if writer == 0:
                writes.append(sent_write(event_id, at=at, attempts=n))
            else:
                status = DeliveryStatus.DELIVERED if n % 2 else DeliveryStatus.BOUNCED
                writes.append(report(op(event_id), status, attempted=at, report_id=f"eg-{n}"))
    return writes


def test_two_processes_share_one_file_without_losing_a_write(tmp_path: Path) -> None:
    path = tmp_path / "records.db"

    async def create() -> None:
        async with SqliteRecordStore(path):  # both processes then race on an existing file
            pass

    asyncio.run(create())
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(writer)],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": ""},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for writer in (0, 1)
    ]
    for writer in writers:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.close()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    for writer in writers:
        assert writer.stdout is not None
        writer.stdout.close()

    async def stored() -> list[DeliveryRecord | None]:
        async with SqliteRecordStore(path) as store:
            return [await store.get(op(event_id)) for event_id in EVENTS]

    everything = writes_of(0) + writes_of(1)
    expected = [merge_all(w for w in everything if w.operation_id == op(event_id)) for event_id in EVENTS]
    assert asyncio.run(stored()) == expected


async def test_the_file_uses_wal_and_its_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "records.db"
    async with SqliteRecordStore(path) as store:
        await store.write(sent_write("order-1"))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM delivery_records").fetchone()[0] == 1


async def test_an_unusable_file_raises_one_error_class(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    store = SqliteRecordStore(blocker / "records.db")
    with pytest.raises(RecordStoreUnavailable, match=r"^sqlite .*records\.db: "):
        await store.write(sent_write("order-1"))
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an SQLite database" * 100)
    broken = SqliteRecordStore(corrupt)
    with pytest.raises(RecordStoreUnavailable, match="not a database"):
        await broken.get(op("order-1"))
    await broken.close()


async def test_a_held_write_lock_times_out_as_unavailable_and_a_retry_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    async with SqliteRecordStore(path):
        pass
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    store = SqliteRecordStore(path, busy_timeout=0.2)
    with pytest.raises(RecordStoreUnavailable, match="database is locked"):
        await store.write(sent_write("order-2"))
    holder.execute("ROLLBACK")
    holder.close()
    assert (await store.write(sent_write("order-2"))).event_id == "order-2"
    await store.close()


async def test_the_factory_opens_the_default_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBUS_RECORD_URL")  # the suite points it at a temporary file
    store = record_store(load_settings())
    assert isinstance(store, SqliteRecordStore)
    async with store:
        await store.write(sent_write("order-3"))
    assert (tmp_path / ".postbus" / "records.db").exists()


async def test_concurrent_tasks_in_one_process_serialise(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "records.db")
    writes = [sent_write(f"order-{n % 5}", attempts=n) for n in range(100)]
    await asyncio.gather(*(store.write(w) for w in writes))
    for n in range(5):
        assert (await store.get(op(f"order-{n}"))) == merge_all(
            w for w in writes if w.event_id == f"order-{n}"
        )
    await store.close()
