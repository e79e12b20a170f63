"""The attachment store seam: content-addressed bytes, written once, read by key, pruned by age.

A store holds blobs under keys ``sha256/<hex>``. :meth:`AttachmentStore.put` writes a blob only if
its key is absent and otherwise refreshes its age, so publishing the same content twice uploads it
once and a re-published attachment is not pruned under the newer event. Nothing but retention
deletes a blob: a send never does, so delayed retries and dead-letter replays find it.

Backends: :class:`~postbus.attachments.local.LocalAttachmentStore` (a directory, the default),
:class:`~postbus.attachments.blob.BlobAttachmentStore` (Azure Blob Storage) and the in-memory
:class:`MemoryAttachmentStore` for tests. :func:`attachment_store` picks one from the settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from postbus.attachments.errors import AttachmentStoreUnavailable, AttachmentUnavailable
from postbus.attachments.location import ContainerLocation, parse_attachment_store_url

if TYPE_CHECKING:
    from postbus.settings import Settings

__all__ = ["AttachmentStore", "MemoryAttachmentStore", "attachment_store"]


class AttachmentStore(Protocol):
    """Where claim-checked attachments live (async; one instance per process, closed at the end).

    ``uploads`` counts the blobs this instance wrote (a refresh of an existing one is not counted).
    """

    uploads: int

    @property
    def location(self) -> str:
        """The configured URL, for log lines and errors."""
        ...

    async def put(self, key: str, data: bytes, *, content_type: str) -> bool:
        """Store ``data`` under ``key`` unless it is there; ``True`` if this call wrote it.

        Raises :class:`AttachmentStoreUnavailable` when the store cannot be written.
        """
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``: :class:`AttachmentUnavailable` if absent, or ``...StoreUnavailable``."""
        ...

    async def prune(self, *, older_than: datetime, dry_run: bool = False) -> int:
        """Delete (or with ``dry_run`` count) the blobs last written or refreshed before ``older_than``."""
        ...

    async def close(self) -> None:
        """Release connections and credentials."""
        ...


class MemoryAttachmentStore:
    """An in-memory :class:`AttachmentStore` for tests; ``uploads`` counts the writes it did.

    ``unavailable`` makes every call fail as if the store were unreachable.
    """

    def __init__(self, *, now: datetime | None = None) -> None:
        self.blobs: dict[str, tuple[bytes, str, datetime]] = {}
        self.uploads = 0
        self.unavailable = False
        self._now = now

    @property
    def location(self) -> str:
        return "memory:"

    def _clock(self) -> datetime:
        return self._now or datetime.now(UTC)

    def _check(self) -> None:
        if self.unavailable:
            raise AttachmentStoreUnavailable("attachment store memory: is unavailable")

    async def put(self, key: str, data: bytes, *, content_type: str) -> bool:
        self._check()
        if key in self.blobs:
            stored, ctype, _ = self.blobs[key]
            self.blobs[key] = (stored, ctype, self._clock())
            return False
        self.blobs[key] = (data, content_type, self._clock())
        self.uploads += 1
        return True

    async def get(self, key: str) -> bytes:
        self._check()
        try:
            return self.blobs[key][0]
        except KeyError:
            raise AttachmentUnavailable(f"attachment {key} is not in the attachment store") from None

    async def prune(self, *, older_than: datetime, dry_run: bool = False) -> int:
        self._check()
        old = [key for key, (_, _, at) in self.blobs.items() if at < older_than]
        if not dry_run:
            for key in old:
                del self.blobs[key]
        return len(old)

    async def close(self) -> None:
        return None


def attachment_store(settings: Settings) -> AttachmentStore:
    """The store ``POSTBUS_ATTACHMENT_STORE_URL`` names (backends are imported lazily)."""
    location = parse_attachment_store_url(settings.attachment_store_url)
    if isinstance(location, ContainerLocation):
        from postbus.attachments.blob import BlobAttachmentStore

        secret = settings.attachment_store_connection_string
        return BlobAttachmentStore(
            location, connection_string=None if secret is None else secret.get_secret_value()
        )
    from postbus.attachments.local import LocalAttachmentStore

    return LocalAttachmentStore(location.path, url=settings.attachment_store_url)
