"""Dead-letter replay against the Service Bus and ACS emulators with the real SDKs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from postbus.bus import delivery_from
from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import PROP_GENERATION
from postbus.settings import Settings
from postbus.worker.mailer import EVENT_ID_HEADER
from postbus.worker.ops import (
    AcsStatusClient,
    DeadLetterQueue,
    ReplayItem,
    ReplayOptions,
    Selection,
    entry_from,
    replay,
    replay_wire,
)
from postbus.worker.runner import Worker

from .conftest import (
    TRACEPARENT,
    DeadLetter,
    event_ids,
    failed,
    fill_dead_letters,
    garbage,
    make_event,
    mark_sent,
    queue_state,
)


def _mixed() -> list[DeadLetter]:
    return [
        failed(make_event("e1"), "RetriesExhausted", attempt=7),
        failed(make_event("e2", tenant="fabrikam"), "RetriesExhausted", attempt=7),
        failed(make_event("e3", type_="appointment.reminder"), "TemplateError"),
        failed(make_event("e4"), "RetriesExhausted", attempt=7),  # ACS has its generation 0
        failed(make_event("e5", type_="return.label"), "Expired"),
        garbage("bad-1"),
        failed(make_event("e6"), "RetriesExhausted", attempt=3, generation=1),
        failed(make_event("e7"), "RetriesExhausted", attempt=7),  # ACS took generation 0 but dropped it
    ]


async def _replay(
    settings: Settings, options: ReplayOptions, **kwargs: object
) -> tuple[list[ReplayItem], bool]:
    async with (
        DeadLetterQueue(settings, wait_time=0.3) as dlq,
        AcsStatusClient.from_settings(settings) as acs,
    ):
        summary = await replay(dlq, acs, options=options, namespace=settings.operation_namespace, **kwargs)  # type: ignore[arg-type]
    return summary.items, summary.interrupted


def _actions(items: Sequence[ReplayItem]) -> dict[str, str]:
    return {item.event_id: item.action for item in items}


async def test_replay_of_a_mixed_dead_letter_queue_respects_filters_skips_sent_and_delivers_once(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, settings: Settings
) -> None:
    # Given a dead-letter queue with several reasons, types, tenants, one undecodable body, a
    # generation-1 event, one event whose generation 0 ACS accepted and one ACS accepted but dropped
    conn = servicebus.connection_string
    await fill_dead_letters(conn, _mixed())
    mark_sent(acs, make_event("e4"))
    mark_sent(acs, make_event("e7"), to="x@bounce.test")
    _, dead = await queue_state(conn)
    before = [(m.sequence_number, m.delivery_count) for m in dead]

    # When a dry run looks at all of them, nothing changes (not even delivery counts)
    items, _ = await _replay(settings, ReplayOptions(dry_run=True))
    actions = _actions(items)
    assert (actions["e4"], actions["bad-1"]) == ("skipped", "skipped")
    assert {actions[e] for e in ("e1", "e2", "e3", "e5", "e6", "e7")} == {"would-replay"}
    main, dead = await queue_state(conn)
    assert ([(m.sequence_number, m.delivery_count) for m in dead], main) == (before, [])

    # When the matching ones are replayed
    selection = Selection.parse(
        reasons=["RetriesExhausted"], types=["order.confirmation"], tenants=["contoso"]
    )
    items, interrupted = await _replay(settings, ReplayOptions(selection=selection))

    # Then e1, e6 and e7 went back as their next generation, e4 was skipped, the others stayed
    assert not interrupted
    assert _actions(items) == {"e1": "replayed", "e4": "skipped", "e6": "replayed", "e7": "replayed"}
    main, dead = await queue_state(conn)
    replayed = {str(m.message_id): m for m in main}
    assert sorted(replayed) == ["e1#r1", "e6#r2", "e7#r1"]
    properties = {
        k.decode() if isinstance(k, bytes) else k: v
        for k, v in replayed["e1#r1"].application_properties.items()
    }
    assert (properties[PROP_GENERATION], properties["postbus-attempt"]) == (1, 0)
    assert "postbus-last-error" not in properties
    trace = properties["traceparent"]
    assert (trace.decode() if isinstance(trace, bytes) else trace) == TRACEPARENT
    assert event_ids(dead) == ["bad-1", "e2", "e3", "e4", "e5"]

    # And a worker delivers each replayed event exactly once, and e4 no second time
    stop = asyncio.Event()
    worker = Worker(settings)
    sent_before = len(acs.mailbox)
    task = asyncio.create_task(worker.run(stop))
    try:
        await acs.mailbox.wait_for(count=sent_before + 3, timeout=20)
        await servicebus.wait_for(
            "notifications", lambda counts: counts.active + counts.locked == 0, timeout=20
        )
    finally:
        stop.set()
        await task
    by_event = sorted(mail.headers.get(EVENT_ID_HEADER) for mail in acs.mailbox.messages())
    assert by_event == ["e1", "e4", "e6", "e7", "e7"]  # e7: the dropped send, then the replay

    # And running the replay again finds nothing new; --force replays e4 all the same
    items, _ = await _replay(settings, ReplayOptions(selection=selection))
    assert _actions(items) == {"e4": "skipped"}
    items, _ = await _replay(settings, ReplayOptions(selection=selection, force=True))
    assert _actions(items) == {"e4": "replayed"}


async def test_replay_respects_the_rate_and_the_limit_and_a_stop_finishes_the_message_in_hand(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, settings: Settings
) -> None:
    conn = servicebus.connection_string
    names = [f"r{i}" for i in range(7)]
    await fill_dead_letters(conn, [failed(make_event(name), "RetriesExhausted") for name in names])
    rate = 10.0

    # When four are replayed at 10/s, each starts at least 1/rate after the previous one
    started = time.monotonic()
    items, _ = await _replay(settings, ReplayOptions(rate=rate, limit=4))
    elapsed = time.monotonic() - started
    assert [item.action for item in items] == ["replayed"] * 4
    assert elapsed >= 3 / rate

    # When a stop arrives (the first SIGINT/SIGTERM) while r4 is in hand, r4 is finished, the rest released
    stop = asyncio.Event()

    def on_item(item: ReplayItem) -> None:
        if item.event_id == "r4":
            stop.set()

    items, interrupted = await _replay(settings, ReplayOptions(), stop=stop, on_item=on_item)
    assert interrupted
    assert [item.event_id for item in items] == ["r4"]
    main, dead = await queue_state(conn)
    assert (event_ids(main), event_ids(dead)) == (names[:5], names[5:])


async def test_a_cancelled_replay_loses_nothing_and_a_rerun_duplicates_nothing(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, settings: Settings
) -> None:
    conn = servicebus.connection_string
    names = [f"c{i}" for i in range(8)]
    await fill_dead_letters(conn, [failed(make_event(name), "RetriesExhausted") for name in names])
    replayed: list[str] = []
    task: asyncio.Task[object] | None = None

    def on_item(item: ReplayItem) -> None:
        replayed.append(item.event_id)
        if len(replayed) == 3 and task is not None:
            task.cancel()  # as a second Ctrl-C does: cancel the coroutine mid-run

    # When a replay is cancelled after three messages
    task = asyncio.create_task(_replay(settings, ReplayOptions(rate=20.0), on_item=on_item))
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()

    # Then every event is in exactly one place: replayed, or still dead-lettered
    main, dead = await queue_state(conn)
    in_main, in_dlq = event_ids(main), event_ids(dead)
    assert len(in_main) == 3
    assert sorted(in_main + in_dlq) == names

    # And a re-run that publishes a replay again (as after a publish whose complete was lost) is
    # dropped by duplicate detection; finishing leaves each event once in the queue
    async with DeadLetterQueue(settings) as dlq:
        await dlq.publish(
            replay_wire(entry_from(delivery_from(main[0])), generation=1, now=datetime.now(UTC))
        )
    await _replay(settings, ReplayOptions())
    main, dead = await queue_state(conn)
    assert event_ids(main) == names
    assert dead == []
