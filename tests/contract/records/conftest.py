"""One record-store contract, three backends: the in-memory fake, SQLite and Azure Table (Azurite).

``backend`` hands out store handles on one shared storage (a dict, a file, a fresh table), so a
test can open a second writer on the same records; every handle is closed at the end. Azurite runs
once per session, installed by ``make azurite``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postbus.records.sqlite import SqliteRecordStore
from postbus.records.store import MemoryRecordStore, RecordStore
from postbus.records.tables import TableRecordStore
from postbus.records.url import TableLocation, parse_record_url
from tests.azurite.server import KEY, Azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@dataclass
class Backend:
    """Opens store handles on one storage of one kind."""

    kind: str
    path: Path | None = None
    table_url: str = ""
    memory: MemoryRecordStore = field(default_factory=MemoryRecordStore)
    handles: list[RecordStore] = field(default_factory=list)

    def open(self) -> RecordStore:
        store: RecordStore
        if self.kind == "memory":
            store = self.memory  # one dict is the storage: every handle is the same store
        elif self.kind == "sqlite":
            assert self.path is not None
            store = SqliteRecordStore(self.path)
        else:
            location = parse_record_url(self.table_url)
            assert isinstance(location, TableLocation)
            store = TableRecordStore(location, account_key=KEY)
        self.handles.append(store)
        return store


@pytest.fixture(params=["memory", "sqlite", "table"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "table":
        server: Azurite = request.getfixturevalue("azurite")
        backend = Backend(kind, table_url=server.table_url(f"records{uuid.uuid4().hex[:16]}"))
    else:
        backend = Backend(kind, path=tmp_path / "state" / "records.db")
    yield backend
    for handle in backend.handles:
        await handle.close()


@pytest.fixture
def store(backend: Backend) -> RecordStore:
    return backend.open()
