"""The Azure Blob Storage attachment store (azure-storage-blob, async).

This module is the only place that imports ``azure.storage.blob``; what the SDK raises becomes
:class:`~postbus.attachments.errors.AttachmentUnavailable` (the blob is not there) or
:class:`~postbus.attachments.errors.AttachmentStoreUnavailable` (anything else: try again) in
:meth:`BlobAttachmentStore._failed`.

A blob is ``<container>/sha256/<hex>``. ``put`` first refreshes the blob's metadata: when the blob
exists that one small request is all (it moves Last-Modified, which the lifecycle rule ages by, and
uploads nothing); only a 404 leads to the upload, made with ``If-None-Match: *`` so two producers
racing on one content write it once. The container is private and created by the deployment
(on an emulator, on first write: only a ``ContainerNotFound`` answer creates it). The SDK's own retries are few: the worker retries later as a delayed
retry, it does not wait out an outage inside one message.
"""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from typing import Any, Final

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient, ExponentialRetry

from postbus.attachments.errors import AttachmentStoreUnavailable, AttachmentUnavailable
from postbus.attachments.location import ContainerLocation, parse_connection_string

__all__ = ["BlobAttachmentStore"]

#: Metadata key whose write refreshes an existing blob's Last-Modified.
_SEEN: Final = "postbus_seen"
_PREFIX: Final = "sha256/"
#: SDK retries of one call (about 1 s apart) before the store counts as unavailable.
RETRY_TOTAL: Final = 2


class BlobAttachmentStore:
    """An :class:`~postbus.attachments.store.AttachmentStore` over one Blob Storage container.

    ``connection_string`` (with AccountKey or SharedAccessSignature) signs requests; without it,
    ``DefaultAzureCredential`` (a managed identity in Azure). ``client_options`` go to the SDK client.
    """

    def __init__(
        self,
        location: ContainerLocation,
        *,
        connection_string: str | None = None,
        retry_total: int = RETRY_TOTAL,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self._location = location
        self._credential: Any = None
        credential: Any
        if connection_string is not None:
            parsed = parse_connection_string(connection_string)
            if parsed.key is not None:
                credential = AzureNamedKeyCredential(parsed.account, parsed.key)
            else:
                assert parsed.sas is not None
                credential = AzureSasCredential(parsed.sas)
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = self._credential = DefaultAzureCredential()
        self._container = ContainerClient(
            location.endpoint,
            location.container,
            credential=credential,
            # The SDK's default backoff starts at 15 s (about 80 s before a refused connection is
            # reported); a worker turns an outage into a delayed retry instead of holding the lock.
            retry_policy=ExponentialRetry(
                initial_backoff=0, increment_base=1, retry_total=retry_total, random_jitter_range=1
            ),
            **(client_options or {}),
        )
        #: Blobs this instance uploaded (not refreshed).
        self.uploads = 0

    @property
    def location(self) -> str:
        return self._location.url

    def _failed(self, exc: Exception, key: str) -> AttachmentStoreUnavailable:
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            code = getattr(exc, "error_code", None) or (exc.reason or "")
            cause = f"{exc.status_code} {code}".strip()
        else:
            cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return AttachmentStoreUnavailable(f"blob {key} in {self.location}: {cause}")

    async def put(self, key: str, data: bytes, *, content_type: str) -> bool:
        blob = self._container.get_blob_client(key)
        seen = {_SEEN: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            try:
                await blob.set_blob_metadata(seen)
                return False
            except ResourceNotFoundError as missing:
                if getattr(missing, "error_code", None) == "ContainerNotFound":
                    await self._ensure_container()
            try:
                # A stream, not bytes: aiohttp copies a large bytes body in one go on the event loop.
                await blob.upload_blob(
                    io.BytesIO(data),
                    length=len(data),
                    overwrite=False,
                    content_settings=ContentSettings(content_type=content_type),
                    metadata=seen,
                )
            except ResourceExistsError:
                return False  # another producer uploaded the same content first
        except AzureError as exc:
            raise self._failed(exc, key) from exc
        self.uploads += 1
        return True

    async def _ensure_container(self) -> None:
        # Deployed containers exist already; an emulator's (or a fresh dev account's) may not.
        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()

    async def get(self, key: str) -> bytes:
        try:
            downloader = await self._container.download_blob(key)
            return await downloader.readall()
        except ResourceNotFoundError:
            raise AttachmentUnavailable(f"attachment {key} is not in {self.location}") from None
        except AzureError as exc:
            raise self._failed(exc, key) from exc

    async def prune(self, *, older_than: datetime, dry_run: bool = False) -> int:
        count = 0
        try:
            async for item in self._container.list_blobs(name_starts_with=_PREFIX):
                modified = item.last_modified
                if modified is None or modified >= older_than:
                    continue
                if not dry_run:
                    try:
                        await self._container.delete_blob(item.name)
                    except ResourceNotFoundError:
                        continue
                count += 1
        except ResourceNotFoundError:
            return count  # no container, nothing to prune
        except AzureError as exc:
            raise self._failed(exc, _PREFIX + "*") from exc
        return count

    async def close(self) -> None:
        try:
            await self._container.close()
        finally:
            if self._credential is not None:
                await self._credential.close()
