"""Shared by the claim-check tests: the two store backends, realistic PDFs, and a way to tamper.

``StoreBackend`` gives the settings that point producers and workers at one store (a directory,
or a container on Azurite's Blob service), and reaches around Postbus to damage a blob the way an
operator or a bug could: overwrite it, or delete it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from tests.azurite.server import Azurite


def pdf_bytes(size: int, *, seed: int = 0) -> bytes:
    """``size`` bytes that start and end like a PDF, with incompressible content in between."""
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    tail = b"\n%%EOF\n"
    body = random.Random(seed).randbytes(max(0, size - len(head) - len(tail)))
    return (head + body + tail)[:size]


def key_of(data: bytes) -> str:
    return f"sha256/{hashlib.sha256(data).hexdigest()}"


@dataclass
class StoreBackend:
    """One attachment store backend as the settings name it, with a back door for tests."""

    kind: str
    url: str
    connection_string: str | None = None
    root: Path | None = None
    container: str = ""

    def settings_update(self) -> dict[str, Any]:
        update: dict[str, Any] = {"attachment_store_url": self.url}
        if self.connection_string is not None:
            from pydantic import SecretStr

            update["attachment_store_connection_string"] = SecretStr(self.connection_string)
        return update

    def _service(self) -> BlobServiceClient:
        assert self.connection_string is not None
        return BlobServiceClient.from_connection_string(self.connection_string)

    def keys(self) -> list[str]:
        if self.kind == "local":
            assert self.root is not None
            folder = self.root / "sha256"
            return sorted(f"sha256/{p.name}" for p in folder.iterdir()) if folder.is_dir() else []
        with self._service() as service:
            container = service.get_container_client(self.container)
            if not container.exists():
                return []
            return sorted(blob.name for blob in container.list_blobs())

    def overwrite(self, key: str, data: bytes) -> None:
        if self.kind == "local":
            assert self.root is not None
            (self.root / key).write_bytes(data)
            return
        with self._service() as service:
            service.get_blob_client(self.container, key).upload_blob(data, overwrite=True)

    def delete(self, key: str) -> None:
        if self.kind == "local":
            assert self.root is not None
            (self.root / key).unlink()
            return
        with self._service() as service:
            service.get_blob_client(self.container, key).delete_blob()


def make_backend(kind: str, tmp_path: Path, azurite: Azurite | None, name: str) -> StoreBackend:
    if kind == "local":
        root = tmp_path / "attachments"
        return StoreBackend(kind, f"file://{root}", root=root)
    assert azurite is not None
    return StoreBackend(
        kind, azurite.container_url(name), connection_string=azurite.connection_string, container=name
    )
