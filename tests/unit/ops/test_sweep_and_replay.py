"""The sweep and the replay steps over an in-memory dead-letter port: what is settled, left or released."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from postbus.bus import Delivery
from postbus.events import WireMessage, encode, parse_event
from postbus.settings import DEFAULT_OPERATION_NAMESPACE
from postbus.worker.mailer import operation_id_for
from postbus.worker.ops import (
    OperationInfo,
    OpsError,
    ReplayItem,
    ReplayOptions,
    Selection,
    entry_from,
    replay,
    sweep,
)
from postbus.worker.ops.deadletters import DeadLetterEntry
from postbus.worker.ops.replay import Pacer


def _message(seq: int, event_id: str, reason: str = "RetriesExhausted") -> Delivery:
    event = parse_event(
        {
            "id": event_id,
            "type": "order.confirmation",
            "to": ["a@example.com"],
            "sender": "orders",
            "data": {},
        }
    )
    wire = encode(event)
    return Delivery(
        body=wire.body,
        content_type=wire.content_type,
        application_properties=dict(wire.application_properties),
        message_id=wire.message_id,
        sequence_number=seq,
        subject="order.confirmation",
        dead_letter_reason=reason,
        dead_letter_description="",
    )


class FakePort:
    """An in-memory dead-letter queue with peek-lock semantics; failures on request."""

    def __init__(self, messages: list[Delivery]) -> None:
        self.available = list(messages)
        self.locked: list[Delivery] = []
        self.completed: list[Delivery] = []
        self.published: list[WireMessage] = []
        self.fail_publish: set[str] = set()
        self.fail_complete: set[str] = set()

    async def browse(
        self, selection: Selection, *, limit: int | None = None
    ) -> AsyncIterator[DeadLetterEntry]:
        for message in list(self.available):
            entry = entry_from(message)
            if selection.matches(entry):
                yield entry

    async def receive(self, max_count: int) -> list[Any]:
        await asyncio.sleep(0)
        batch, self.available = self.available[:max_count], self.available[max_count:]
        self.locked.extend(batch)
        return batch

    async def complete(self, message: Any) -> None:
        await asyncio.sleep(0)
        if message.message_id.split("#")[0] in self.fail_complete:
            raise OpsError("lock lost")
        self.locked.remove(message)
        self.completed.append(message)

    async def abandon(self, message: Any) -> None:
        self.locked.remove(message)
        self.available.append(message)

    async def publish(self, wire: WireMessage) -> None:
        await asyncio.sleep(0)
        if wire.message_id.split("#")[0] in self.fail_publish:
            raise OpsError("server busy")
        self.published.append(wire)


@dataclass
class FakeLookup:
    known: dict[str, OperationInfo] = field(default_factory=dict)
    broken: bool = False
    calls: list[str] = field(default_factory=list)

    async def lookup(self, operation_id: str) -> OperationInfo | None:
        self.calls.append(operation_id)
        if self.broken:
            raise OpsError("ACS throttled the status read (429)")
        return self.known.get(operation_id)


def _op(event_id: str, generation: int = 0) -> str:
    return operation_id_for(event_id, namespace=DEFAULT_OPERATION_NAMESPACE, generation=generation)


async def _replay(port: FakePort, lookup: FakeLookup | None, **options: Any) -> list[ReplayItem]:
    summary = await replay(
        port, lookup, options=ReplayOptions(**options), namespace=DEFAULT_OPERATION_NAMESPACE
    )
    return summary.items


async def test_sweep_settles_only_what_the_handler_takes_and_releases_everything_else() -> None:
    port = FakePort([_message(1, "a"), _message(2, "b", "Expired"), _message(3, "c"), _message(4, "d")])
    seen: list[str] = []

    async def handle(message: Any, entry: DeadLetterEntry) -> bool:
        seen.append(entry.event_id)
        if entry.event_id == "a":
            await port.complete(message)
            return True
        return False

    handled = await sweep(
        port,
        selection=Selection.parse(reasons=["RetriesExhausted"]),
        limit=2,
        stop=asyncio.Event(),
        handle=handle,
    )

    assert (handled, seen) == (2, ["a", "c"])
    assert [m.message_id for m in port.completed] == ["a"]
    assert port.locked == []
    assert sorted(m.message_id for m in port.available) == ["b", "c", "d"]


async def test_a_cancelled_sweep_releases_the_message_in_hand() -> None:
    port = FakePort([_message(1, "a"), _message(2, "b")])
    entered = asyncio.Event()

    async def handle(message: Any, entry: DeadLetterEntry) -> bool:
        entered.set()
        await asyncio.Event().wait()  # hangs until cancelled
        return True

    task = asyncio.create_task(
        sweep(port, selection=Selection(), limit=None, stop=asyncio.Event(), handle=handle)
    )
    await entered.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert port.locked == []
    assert sorted(m.message_id for m in port.available) == ["a", "b"]


async def test_replay_publishes_then_completes_and_leaves_failures_in_the_dead_letter_queue() -> None:
    port = FakePort([_message(1, "ok"), _message(2, "nopub"), _message(3, "nocomplete"), _message(4, "sent")])
    port.fail_publish.add("nopub")
    port.fail_complete.add("nocomplete")
    lookup = FakeLookup(known={_op("sent"): OperationInfo(_op("sent"), "Succeeded")})

    items = await _replay(port, lookup)

    assert [(i.event_id, i.action) for i in items] == [
        ("ok", "replayed"),
        ("nopub", "failed"),
        ("nocomplete", "replayed"),
        ("sent", "skipped"),
    ]
    assert "a re-run is safe" in items[2].detail
    assert [w.message_id for w in port.published] == ["ok#r1", "nocomplete#r1"]
    assert [m.message_id for m in port.completed] == ["ok"]
    assert sorted(m.message_id for m in port.available) == ["nocomplete", "nopub", "sent"]
    assert lookup.calls == [_op(e) for e in ("ok", "nopub", "nocomplete", "sent")]


async def test_a_failed_status_lookup_leaves_the_message_and_force_skips_lookups() -> None:
    port = FakePort([_message(1, "a")])
    items = await _replay(port, FakeLookup(broken=True))
    assert [(i.action, "429" in i.detail) for i in items] == [("failed", True)]
    assert port.published == []

    lookup = FakeLookup(broken=True)
    items = await _replay(port, lookup, force=True)
    assert [i.action for i in items] == ["replayed"]
    assert lookup.calls == []


async def test_a_dry_run_only_browses() -> None:
    port = FakePort([_message(1, "a"), _message(2, "b")])
    items = await _replay(port, FakeLookup(), dry_run=True)
    assert [(i.event_id, i.action, i.message_id) for i in items] == [
        ("a", "would-replay", "a#r1"),
        ("b", "would-replay", "b#r1"),
    ]
    assert (port.published, port.completed, port.locked) == ([], [], [])


async def test_replay_without_acs_needs_force() -> None:
    with pytest.raises(OpsError, match="--force"):
        await _replay(FakePort([]), None)


async def test_the_pacer_spaces_calls_and_a_stop_cuts_the_wait_short() -> None:
    stop = asyncio.Event()
    pacer = Pacer(50.0)
    started = time.monotonic()
    for _ in range(5):
        await pacer.wait(stop)
    assert time.monotonic() - started >= 4 / 50.0

    slow = Pacer(0.001)  # one call every 1000 s
    await slow.wait(stop)
    stop.set()
    await asyncio.wait_for(slow.wait(stop), timeout=5)  # returns at once because stop is set


async def test_an_unpaced_pacer_never_waits() -> None:
    pacer = Pacer(None)
    stop = asyncio.Event()
    await asyncio.wait_for(asyncio.gather(*(pacer.wait(stop) for _ in range(100))), timeout=5)


def test_replay_summary_json_counts() -> None:
    from postbus.worker.ops import ReplaySummary

    summary = ReplaySummary([ReplayItem(1, "a", 0, "replayed"), ReplayItem(2, "b", 0, "skipped")])
    document = summary.to_json()
    assert (document["replayed"], document["skipped"], document["failed"]) == (1, 1, 0)
    assert document["items"][0]["event_id"] == "a"
