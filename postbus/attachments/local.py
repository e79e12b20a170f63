"""The local-directory attachment store: the embedded default, used by the demo and local runs.

Blobs are files ``<dir>/sha256/<hex>``. A write goes to a temporary file first and is linked into
place only if the name is free, so a reader never sees half a file and two producers racing on the
same content write it once. A file's modification time is its age for :meth:`prune`; ``put`` of an
existing key refreshes it. File I/O runs in a thread so a 7 MB attachment never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from datetime import datetime
from pathlib import Path

from postbus.attachments.errors import AttachmentStoreUnavailable, AttachmentUnavailable

__all__ = ["LocalAttachmentStore"]


class LocalAttachmentStore:
    """An :class:`~postbus.attachments.store.AttachmentStore` over a directory (created on first write)."""

    def __init__(self, root: Path, *, url: str | None = None) -> None:
        self.root = root
        self._url = url or f"file:{root}"
        #: Blobs this instance wrote (not refreshed): what "uploads once" is measured by.
        self.uploads = 0

    @property
    def location(self) -> str:
        return self._url

    def _path(self, key: str) -> Path:
        return self.root / key

    def _put(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            if path.exists():
                os.utime(path)
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    return False  # another producer wrote the same content first
            finally:
                os.unlink(temporary)
        except OSError as exc:
            raise AttachmentStoreUnavailable(
                f"cannot write {key} to {self._url}: {exc.strerror or exc}"
            ) from exc
        return True

    async def put(self, key: str, data: bytes, *, content_type: str) -> bool:
        written = await asyncio.to_thread(self._put, key, data)
        self.uploads += written
        return written

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise AttachmentUnavailable(f"attachment {key} is not in {self._url}") from None
        except OSError as exc:
            raise AttachmentStoreUnavailable(
                f"cannot read {key} from {self._url}: {exc.strerror or exc}"
            ) from exc

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    def _prune(self, cutoff: float, dry_run: bool) -> int:
        count = 0
        folder = self.root / "sha256"
        if not folder.is_dir():
            return 0
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.name.startswith(".incoming-") or path.stat().st_mtime >= cutoff:
                    continue
                if not dry_run:
                    path.unlink()
                count += 1
        return count

    async def prune(self, *, older_than: datetime, dry_run: bool = False) -> int:
        try:
            return await asyncio.to_thread(self._prune, older_than.timestamp(), dry_run)
        except OSError as exc:
            raise AttachmentStoreUnavailable(f"cannot prune {self._url}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None
