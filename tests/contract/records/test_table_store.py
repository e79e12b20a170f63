"""What only the Table backend promises, against Azurite through the real azure-data-tables SDK."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import timedelta
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables.aio import TableClient

from postbus.records.errors import RecordStoreUnavailable
from postbus.records.record import merge_all
from postbus.records.reports import DeliveryStatus
from postbus.records.store import record_store
from postbus.records.tables import TableRecordStore
from postbus.records.url import TableLocation, parse_record_url
from postbus.settings import load_settings
from tests.azurite.server import ACCOUNT, KEY, Azurite
from tests.contract.records.writes import T0, op, report, sent_write


def location(azurite: Azurite) -> TableLocation:
    parsed = parse_record_url(azurite.table_url(f"records{uuid.uuid4().hex[:16]}"))
    assert isinstance(parsed, TableLocation)
    return parsed


async def entities(where: TableLocation) -> list[dict[str, Any]]:
    async with TableClient(
        where.endpoint, where.table, credential=AzureNamedKeyCredential(ACCOUNT, KEY)
    ) as client:
        return [dict(e) async for e in client.list_entities()]


async def test_a_writer_that_lost_the_etag_race_merges_again(azurite: Azurite) -> None:
    where = location(azurite)
    first = TableRecordStore(where, account_key=KEY)
    second = TableRecordStore(where, account_key=KEY)
    await first.write(sent_write("order-1", attempts=1))
    rival = report(op("order-1"), DeliveryStatus.DELIVERED, attempted=T0 + timedelta(seconds=20))
    mine = sent_write("order-1", at=T0 + timedelta(seconds=5), attempts=2)
    read = first._get
    interfered = False

    async def read_then_let_the_rival_write(partition: str, row: str) -> Any:
        # Given the second writer replaces the record between the first writer's read and replace
        nonlocal interfered
        entity = await read(partition, row)
        if partition.startswith("d:") and not interfered:
            interfered = True
            await second.write(rival)
        return entity

    first._get = read_then_let_the_rival_write  # type: ignore[method-assign]
    stored = await first.write(mine)
    # Then its If-Match replace failed once, it merged again, and nothing was lost
    assert first.conflicts == 1
    expected = merge_all([sent_write("order-1", attempts=1), rival, mine])
    assert stored == expected
    assert await second.get(op("order-1")) == expected
    await first.close()
    await second.close()


async def test_layout_is_day_partitions_with_pointer_and_event_index(azurite: Azurite) -> None:
    where = location(azurite)
    async with TableRecordStore(where, account_key=KEY) as store:
        await store.write(sent_write("order-2"))
        await store.write(report(op("orphan"), DeliveryStatus.BOUNCED, attempted=T0))
    keys = sorted((e["PartitionKey"], e["RowKey"]) for e in await entities(where))
    assert keys == sorted(
        [
            ("d:20260302", op("order-2")),
            ("d:20260302", op("orphan")),
            (f"o:{op('order-2')}", "-"),
            (f"o:{op('orphan')}", "-"),
            ("e:order-2", op("order-2")),
        ]
    )


async def test_prune_deletes_more_than_one_batch_and_leaves_nothing_behind(azurite: Azurite) -> None:
    where = location(azurite)
    async with TableRecordStore(where, account_key=KEY) as store:
        for n in range(130):  # more than one 100-entity transaction in one day partition
            await store.write(sent_write(f"order-{n}", at=T0 + timedelta(seconds=n)))
        keep = await store.write(sent_write("order-new", at=T0 + timedelta(days=40)))
        assert await store.prune(before=T0 + timedelta(days=30)) == 130
    remaining = sorted((e["PartitionKey"], e["RowKey"]) for e in await entities(where))
    assert remaining == sorted(
        [
            ("d:20260411", keep.operation_id),
            (f"o:{keep.operation_id}", "-"),
            ("e:order-new", keep.operation_id),
        ]
    )


async def test_an_unreachable_table_raises_one_error_class() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    where = parse_record_url(f"http://127.0.0.1:{port}/{ACCOUNT}/records")
    assert isinstance(where, TableLocation)
    store = TableRecordStore(where, account_key=KEY, retry_total=0)
    with pytest.raises(RecordStoreUnavailable, match=rf"^table http://127.0.0.1:{port}/{ACCOUNT}/records: "):
        await store.write(sent_write("order-3"))
    await store.close()


async def test_a_wrong_key_raises_one_error_class(azurite: Azurite) -> None:
    wrong = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk="
    store = TableRecordStore(location(azurite), account_key=wrong, retry_total=0)
    with pytest.raises(RecordStoreUnavailable, match="403"):
        await store.get(op("order-4"))
    await store.close()


async def test_the_factory_reaches_azurite_from_settings(azurite: Azurite) -> None:
    settings = load_settings(record_url=azurite.table_url("factory"), record_account_key=KEY)
    store = record_store(settings)
    assert isinstance(store, TableRecordStore)
    async with store:
        written = await store.write(sent_write("order-5"))
        assert await store.by_event("order-5") == [written]


async def test_two_prunes_at_once_both_succeed(azurite: Azurite) -> None:
    where = location(azurite)
    first = TableRecordStore(where, account_key=KEY)
    second = TableRecordStore(where, account_key=KEY)
    for n in range(30):
        await first.write(sent_write(f"order-{n}", at=T0 + timedelta(seconds=n)))
    removed = await asyncio.gather(
        first.prune(before=T0 + timedelta(days=1)), second.prune(before=T0 + timedelta(days=1))
    )
    assert max(removed) == 30
    assert await entities(where) == []
    await first.close()
    await second.close()
