"""The roster in Azure Table Storage: one partition of a table beside the record table.

This module is the only place the roster imports ``azure.data.tables``; its ``azure.core``
exceptions become :class:`~postbus.worker.roster.base.RosterUnavailable` in
:meth:`TableRoster._failed`.

One entity per replica (``PartitionKey`` the deployment's roster group, ``RowKey`` the replica id) with no
properties of its own: its ``Timestamp``, which the service sets on every write, is the heartbeat.
A heartbeat replaces this replica's entity, then reads the partition and counts the entities whose
``Timestamp`` is within ``expiry`` of this replica's own fresh one. Every time compared is the
service's, so the replicas' own clocks may disagree without changing the count. Expired entities are
deleted on the way with ``If-Match`` on the ETag that was read, so a replica that beats again in
between keeps its entity.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableEntity, UpdateMode

from postbus.records.tables import create_table_if_missing, failure_cause, table_client
from postbus.records.url import TableLocation
from postbus.worker.roster.base import RosterUnavailable

__all__ = ["TableRoster"]


class TableRoster:
    """:class:`~postbus.worker.roster.base.Roster` in an Azure Storage table (created if missing).

    ``group``: the deployment the replicas count in (:func:`~postbus.worker.roster.base.roster_group`),
    the partition. ``expiry``: seconds a heartbeat keeps its replica live. ``account_key`` signs with the account's
    shared key (Azurite); without it, ``DefaultAzureCredential`` (a managed identity in Azure).
    ``timeout`` bounds one request: a heartbeat that cannot finish within about one heartbeat is
    better given up and tried again with the next one.
    """

    def __init__(
        self,
        location: TableLocation,
        *,
        expiry: float,
        group: str = "replicas",
        account_key: str | None = None,
        retry_total: int = 1,
        timeout: float = 5.0,
    ) -> None:
        self.location = location
        self.group = group
        self._expiry = timedelta(seconds=expiry)
        self._table, self._credential = table_client(
            location, account_key=account_key, retry_total=retry_total, timeout=timeout
        )
        self._opened = False

    def _failed(self, exc: Exception) -> RosterUnavailable:
        return RosterUnavailable(f"roster table {self.location.url}: {failure_cause(exc)}")

    async def _open(self) -> None:
        if self._opened:
            return
        # The worker's role is scoped to this one table; a missing table shows as the heartbeat's 404.
        await create_table_if_missing(self._table, forbidden_ok=True)
        self._opened = True

    async def _forget(self, entity: TableEntity) -> None:
        # Gone already, or it beat again since it was read: either way not ours to delete.
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            await self._table.delete_entity(
                self.group,
                str(entity["RowKey"]),
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )

    async def beat(self, replica: str) -> int:
        """Replace ``replica``'s entity, then count the partition's entities by the service's clock."""
        try:
            await self._open()
            await self._table.upsert_entity(
                {"PartitionKey": self.group, "RowKey": replica}, mode=UpdateMode.REPLACE
            )
            entities = [
                entity
                async for entity in self._table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": self.group}
                )
            ]
            stamps: dict[str, datetime] = {
                str(e["RowKey"]): stamp for e in entities if (stamp := e.metadata["timestamp"]) is not None
            }
            now = stamps.get(replica) or max(stamps.values(), default=None)
            if now is None:  # the service returned no timestamps: count what is there
                return max(1, len(entities))
            expired = [
                e
                for e in entities
                if str(e["RowKey"]) in stamps and stamps[str(e["RowKey"])] <= now - self._expiry
            ]
            await asyncio.gather(*(self._forget(entity) for entity in expired))
        except AzureError as exc:
            raise self._failed(exc) from exc
        return max(1, len(entities) - len(expired))

    async def leave(self, replica: str) -> None:
        """Delete ``replica``'s entity."""
        try:
            await self._table.delete_entity(self.group, replica)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self._failed(exc) from exc

    async def close(self) -> None:
        """Close the HTTP session and the credential."""
        await self._table.close()
        if self._credential is not None:
            await self._credential.close()
