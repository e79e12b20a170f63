"""One attachment-store contract, three backends: the in-memory fake, a directory, and Blob (Azurite).

The Blob backend runs the real azure-storage-blob SDK against Azurite's Blob service over a socket.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postbus.attachments import (
    AttachmentStore,
    AttachmentStoreUnavailable,
    AttachmentUnavailable,
    MemoryAttachmentStore,
    check_in,
    check_out,
)
from postbus.attachments.blob import BlobAttachmentStore
from postbus.attachments.local import LocalAttachmentStore
from postbus.attachments.location import ContainerLocation, parse_attachment_store_url
from postbus.events import parse_event
from tests.azurite.server import Azurite
from tests.claimcheck_support import key_of, pdf_bytes


@pytest.fixture(scope="module")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite-blob"), service="blob") as server:
        yield server


def _blob_store(url: str, connection_string: str, **options: int) -> BlobAttachmentStore:
    location = parse_attachment_store_url(url)
    assert isinstance(location, ContainerLocation)
    return BlobAttachmentStore(location, connection_string=connection_string, **options)


@pytest.fixture(params=["memory", "local", "blob"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AttachmentStore]:
    opened: AttachmentStore
    if request.param == "memory":
        opened = MemoryAttachmentStore()
    elif request.param == "local":
        opened = LocalAttachmentStore(tmp_path / "attachments")
    else:
        server: Azurite = request.getfixturevalue("azurite_blob")
        opened = _blob_store(server.container_url(f"c{uuid.uuid4().hex[:20]}"), server.connection_string)
    try:
        yield opened
    finally:
        await opened.close()


async def test_content_is_written_once_and_read_back(store: AttachmentStore) -> None:
    data = pdf_bytes(70_000, seed=1)
    assert await store.put(key_of(data), data, content_type="application/pdf") is True
    assert await store.put(key_of(data), data, content_type="application/pdf") is False
    assert await store.get(key_of(data)) == data
    assert store.uploads == 1


async def test_a_missing_key_is_unavailable_not_a_store_outage(store: AttachmentStore) -> None:
    # Also before anything was ever written (no directory, no container yet)
    with pytest.raises(AttachmentUnavailable, match=r"attachment sha256/0+ is not in"):
        await store.get("sha256/" + "0" * 64)


async def test_prune_deletes_only_what_is_older_than_the_cutoff(store: AttachmentStore) -> None:
    data = pdf_bytes(1000, seed=2)
    await store.put(key_of(data), data, content_type="application/pdf")
    now = datetime.now(UTC)
    assert await store.prune(older_than=now - timedelta(days=1)) == 0
    assert await store.prune(older_than=now + timedelta(days=1), dry_run=True) == 1
    assert await store.get(key_of(data)) == data
    assert await store.prune(older_than=now + timedelta(days=1)) == 1
    with pytest.raises(AttachmentUnavailable):
        await store.get(key_of(data))


async def test_check_in_and_out_round_trip_through_the_store(store: AttachmentStore) -> None:
    label = pdf_bytes(300 * 1024, seed=3)
    event = parse_event(
        {
            "id": "rl-1",
            "type": "return.label",
            "to": ["jane@example.com"],
            "sender": "returns",
            "attachments": [
                {"name": "label.pdf", "content_type": "application/pdf", "content_base64": _b64(label)},
                {"name": "note.txt", "content_type": "text/plain", "content_base64": _b64(b"hello")},
            ],
        }
    )
    claim = await check_in(event, store, inline_max_bytes=64 * 1024, body_budget=250_000)
    moved, kept = claim.event.attachments
    assert moved.content_base64 is None
    assert moved.content_ref is not None
    assert (moved.content_ref.key, moved.content_ref.size) == (key_of(label), len(label))
    assert kept == event.attachments[1]
    assert len(claim.event.to_json()) < 2000
    assert await check_out(claim.event, store) == event


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_container_is_a_store_outage() -> None:
    from tests.azurite.server import ACCOUNT, KEY

    port = _closed_port()
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    store = _blob_store(
        f"{endpoint}/attachments",
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={endpoint};",
        retry_total=0,  # the SDK's retries only delay the answer
    )
    try:
        with pytest.raises(AttachmentStoreUnavailable, match=r"blob sha256/0+ in http://127.0.0.1:\d+/"):
            await store.get("sha256/" + "0" * 64)
        with pytest.raises(AttachmentStoreUnavailable):
            await store.put("sha256/" + "0" * 64, b"x", content_type="application/pdf")
    finally:
        await store.close()


async def test_an_unwritable_directory_is_a_store_outage(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = LocalAttachmentStore(blocker)
    with pytest.raises(AttachmentStoreUnavailable, match="cannot write sha256/"):
        await store.put("sha256/" + "0" * 64, b"x", content_type="application/pdf")
    with pytest.raises(AttachmentStoreUnavailable, match="cannot read sha256/"):
        await store.get("sha256/" + "0" * 64)
