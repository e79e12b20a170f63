"""The record-store contract, run against the fake, SQLite and Azure Table Storage (Azurite).

Each test names the behaviour a surface relies on: idempotent upserts, early and duplicate reports,
out-of-order reports, final-state precedence, the lookups, the summary, prune and concurrent
writers. The expected record is always computed with the pure ``merge`` of the same writes, so the
stores are held to exactly the semantics the property tests pin down.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest

from postbus.records.record import Outcome, dead_lettered, merge_all, queued
from postbus.records.reports import DeliveryStatus, EngagementReport
from postbus.records.store import RecordStore
from tests.contract.records.conftest import Backend
from tests.contract.records.writes import T0, op, report, sent_write


async def test_a_write_is_an_idempotent_upsert(store: RecordStore) -> None:
    write = sent_write("order-1001")
    first = await store.write(write)
    assert first == write
    assert await store.write(write) == write  # the same write again changes nothing
    assert await store.get(write.operation_id) == write


async def test_every_field_survives_the_round_trip(store: RecordStore) -> None:
    write = merge_all(
        [
            sent_write("order-1002", attempts=3),
            dead_lettered(
                operation_id=op("order-1002"),
                event_id="order-1002",
                generation=0,
                tenant="shop",
                type="order.confirmation",
                recipient_domains=["fabrikam.com"],
                first_enqueued=T0 - timedelta(minutes=1),
                attempts=3,
                reason="RetriesExhausted",
                description="ACS answered 503 three times",
                at=T0 + timedelta(seconds=5),
            ),
            report(
                op("order-1002"),
                DeliveryStatus.BOUNCED,
                attempted=T0 + timedelta(seconds=9),
                message="550 5.1.1 unknown",
            ),
            EngagementReport(
                report_id="eg-open",
                operation_id=op("order-1002"),
                engagement="view",
                acted_at=T0 + timedelta(minutes=3),
                event_time=T0 + timedelta(minutes=3),
            ).as_write(at=T0 + timedelta(minutes=3)),
        ]
    )
    await store.write(write)
    stored = await store.get(write.operation_id)
    assert stored == write
    assert stored is not None
    assert stored.recipient_domains == ("contoso.com", "fabrikam.com")
    assert (stored.outcome, stored.smtp_code, stored.smtp_status) == (Outcome.BOUNCED, 550, "5.1.1")
    assert stored.dead_letter_reason == "RetriesExhausted"
    assert stored.opened_at == T0 + timedelta(minutes=3)


async def test_a_report_before_the_send_record_is_kept_and_joined(store: RecordStore) -> None:
    # Given the worker crashed between the send and its record write
    operation_id = op("reminder-7")
    delivered = report(operation_id, DeliveryStatus.DELIVERED, attempted=T0 + timedelta(seconds=40))
    early = await store.write(delivered)
    assert early.outcome is Outcome.DELIVERED
    assert early.event_id is None
    assert await store.by_event("reminder-7") == []  # not findable by event id yet
    # When the redelivered message is processed and the worker writes its record
    worker = sent_write("reminder-7", type_="appointment.reminder", at=T0 + timedelta(seconds=60))
    joined = await store.write(worker)
    # Then one record tells the whole story
    assert joined == merge_all([delivered, worker])
    assert (joined.outcome, joined.event_id, joined.type) == (
        Outcome.DELIVERED,
        "reminder-7",
        "appointment.reminder",
    )
    assert joined.delivered_at == T0 + timedelta(seconds=40)
    assert await store.by_event("reminder-7") == [joined]


async def test_duplicate_reports_change_nothing(store: RecordStore) -> None:
    operation_id = op("order-1003")
    await store.write(sent_write("order-1003"))
    bounce = report(
        operation_id,
        DeliveryStatus.BOUNCED,
        attempted=T0 + timedelta(seconds=30),
        message="550 5.1.1 no such user",
    )
    once = await store.write(bounce)
    twice = await store.write(bounce)
    assert once == twice == await store.get(operation_id)
    assert once.outcome is Outcome.BOUNCED


async def test_out_of_order_reports_end_in_the_same_record(store: RecordStore) -> None:
    writes_for = [
        lambda e: sent_write(e, at=T0),
        lambda e: report(op(e), DeliveryStatus.DELIVERED, attempted=T0 + timedelta(seconds=20)),
        lambda e: report(
            op(e),
            DeliveryStatus.BOUNCED,
            attempted=T0 + timedelta(hours=2),
            message="550 5.7.1 rejected later",
        ),
    ]
    results = []
    for n, order in enumerate(itertools.permutations(range(3))):
        event_id = f"order-perm-{n}"
        for index in order:
            await store.write(writes_for[index](event_id))
        stored = await store.get(op(event_id))
        assert stored is not None
        results.append(stored)
        assert stored == merge_all(writes_for[i](event_id) for i in range(3))
    # the later bounce wins everywhere, and the first delivery time is kept
    assert {r.outcome for r in results} == {Outcome.BOUNCED}
    assert {r.delivered_at for r in results} == {T0 + timedelta(seconds=20)}


async def test_a_later_final_state_is_never_overwritten(store: RecordStore) -> None:
    operation_id = op("order-1004")
    await store.write(report(operation_id, DeliveryStatus.DELIVERED, attempted=T0 + timedelta(minutes=2)))
    # an earlier final report arriving late
    await store.write(report(operation_id, DeliveryStatus.FAILED, attempted=T0 + timedelta(minutes=1)))
    # the worker's own (non-final) write arriving last
    await store.write(sent_write("order-1004", at=T0 + timedelta(minutes=5)))
    # and its dead-letter after an ambiguous resend: ACS's report still outranks it
    await store.write(
        dead_lettered(
            operation_id=operation_id,
            event_id="order-1004",
            generation=0,
            tenant="shop",
            type="order.confirmation",
            recipient_domains=["contoso.com"],
            first_enqueued=T0,
            attempts=8,
            reason="RetriesExhausted",
            description="gave up",
            at=T0 + timedelta(minutes=9),
        )
    )
    stored = await store.get(operation_id)
    assert stored is not None
    assert stored.outcome is Outcome.DELIVERED
    assert stored.outcome_at == T0 + timedelta(minutes=2)
    assert stored.dead_letter_reason == "RetriesExhausted"  # kept beside the outcome
    assert stored.accepted_at == T0 + timedelta(minutes=5)


async def test_lookups_by_event_and_operation(store: RecordStore) -> None:
    first = await store.write(sent_write("permit-42", type_="permit.notice"))
    replay = await store.write(sent_write("permit-42", generation=1, at=T0 + timedelta(hours=1)))
    await store.write(sent_write("permit-43"))
    assert await store.by_event("permit-42") == [first, replay]
    assert await store.get(op("permit-42", 1)) == replay
    assert await store.get(op("never-sent")) is None
    assert await store.by_event("never-sent") == []


async def test_summary_counts_outcomes_by_tenant_and_type_in_range(store: RecordStore) -> None:
    start = T0
    # in range: 3 delivered reminders (2 within 5 minutes), 1 bounced order, 1 dead letter
    for n, delay in enumerate((timedelta(seconds=30), timedelta(minutes=4), timedelta(minutes=11))):
        event_id = f"reminder-{n}"
        enqueued = start + timedelta(minutes=n)
        await store.write(
            sent_write(
                event_id, tenant="clinic", type_="appointment.reminder", at=enqueued, enqueued=enqueued
            )
        )
        await store.write(
            report(op(event_id), DeliveryStatus.DELIVERED, attempted=enqueued + delay, at=enqueued + delay)
        )
    await store.write(sent_write("order-9", at=start + timedelta(minutes=5)))
    await store.write(
        report(
            op("order-9"),
            DeliveryStatus.BOUNCED,
            attempted=start + timedelta(minutes=6),
            message="550 5.1.1 gone",
        )
    )
    await store.write(
        dead_lettered(
            operation_id=op("order-bad"),
            event_id="order-bad",
            generation=0,
            tenant="shop",
            type=None,
            recipient_domains=[],
            first_enqueued=None,
            attempts=1,
            reason="InvalidEvent",
            description="to.0.address: not a valid email address",
            at=start + timedelta(minutes=7),
        )
    )
    # out of range: before and at the end boundary
    await store.write(sent_write("order-old", at=start - timedelta(seconds=1)))
    await store.write(sent_write("order-late", at=start + timedelta(hours=1)))

    summary = await store.summary(since=start, until=start + timedelta(hours=1))
    assert summary.total == 5
    assert summary.by_outcome() == {Outcome.DELIVERED: 3, Outcome.BOUNCED: 1, Outcome.DEAD_LETTERED: 1}
    assert summary.count(Outcome.DELIVERED, tenant="clinic", type="appointment.reminder") == 3
    assert summary.count(tenant="shop") == 2
    assert summary.delivered_within_slo == 2
    assert summary.delivered_within_slo_share == pytest.approx(2 / 5)
    assert summary.share(Outcome.BOUNCED, Outcome.FAILED) == pytest.approx(1 / 5)
    tighter = await store.summary(since=start, until=start + timedelta(hours=1), slo=timedelta(minutes=1))
    assert tighter.delivered_within_slo == 1
    empty = await store.summary(since=start + timedelta(days=3), until=start + timedelta(days=4))
    assert (empty.total, empty.delivered_within_slo_share) == (0, None)


async def test_prune_removes_only_expired_records(store: RecordStore) -> None:
    now = T0 + timedelta(days=31)
    old = [sent_write(f"order-old-{n}", at=T0 + timedelta(minutes=n)) for n in range(3)]
    for write in old:
        await store.write(write)
    await store.write(
        report(op("order-old-0"), DeliveryStatus.DELIVERED, attempted=T0 + timedelta(minutes=1))
    )
    fresh = await store.write(sent_write("order-new", at=now - timedelta(days=1)))
    removed = await store.prune(before=now - timedelta(days=30))
    assert removed == 3
    for write in old:
        assert await store.get(write.operation_id) is None
        assert await store.by_event(write.event_id or "") == []
    assert await store.get(fresh.operation_id) == fresh
    assert await store.by_event("order-new") == [fresh]
    assert await store.prune(before=now - timedelta(days=30)) == 0
    # a pruned operation can be written again from scratch
    again = await store.write(sent_write("order-old-1", at=now))
    assert await store.get(again.operation_id) == again


async def test_concurrent_writers_lose_no_update(backend: Backend) -> None:
    # Given two writers (two connections, two table clients) on the same records
    first, second = backend.open(), backend.open()
    operations = [f"order-race-{n}" for n in range(3)]
    writes = []
    for event_id in operations:
        writes.append(sent_write(event_id, at=T0, attempts=1))
        writes.append(sent_write(event_id, at=T0 + timedelta(seconds=1), attempts=2))
        writes.append(report(op(event_id), DeliveryStatus.DELIVERED, attempted=T0 + timedelta(seconds=30)))
        writes.append(report(op(event_id), DeliveryStatus.QUARANTINED, attempted=T0 + timedelta(seconds=31)))
        writes.extend(
            EngagementReport(
                report_id=f"eg-{n}",
                operation_id=op(event_id),
                engagement="click",
                acted_at=T0 + timedelta(minutes=n + 1),
                event_time=T0 + timedelta(minutes=n + 1),
            ).as_write(at=T0 + timedelta(minutes=n + 1))
            for n in range(3)
        )
    # When they write all at once, each write racing others on the same record
    await asyncio.gather(*(writer.write(w) for w in writes for writer in (first, second)))
    # Then every record is the merge of all its writes
    for event_id in operations:
        expected = merge_all(w for w in writes if w.operation_id == op(event_id))
        assert await first.get(op(event_id)) == expected
        assert await second.get(op(event_id)) == expected
        assert expected.attempts == 2
        assert expected.outcome is Outcome.QUARANTINED
        assert expected.clicked_at == T0 + timedelta(minutes=1)


async def test_queued_then_sent_moves_forward(store: RecordStore) -> None:
    operation_id = op("order-1005")
    await store.write(
        queued(
            operation_id=operation_id,
            event_id="order-1005",
            generation=0,
            tenant="shop",
            type="order.confirmation",
            recipient_domains=["contoso.com"],
            first_enqueued=T0,
            at=T0,
        )
    )
    stored = await store.write(sent_write("order-1005", at=T0 + timedelta(seconds=3), enqueued=T0))
    assert stored.outcome is Outcome.SENT
    assert stored.first_enqueued == T0
    assert stored.created_at == T0
    assert stored.updated_at == T0 + timedelta(seconds=3)
