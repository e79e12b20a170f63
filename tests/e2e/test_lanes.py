"""Priority lanes end to end: the publisher routes by lane, one worker consumes all three queues.

Real azure-servicebus and azure-communication-email SDKs against both emulators over sockets.
"""

from __future__ import annotations

from typing import Any

import pytest

from postbus.bus import QueueNotFound
from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.errors import InvalidEvent
from postbus.lanes import LaneNotAllowed
from postbus.producers.publisher import Publisher
from postbus.settings import Settings
from postbus.worker.mailer import EVENT_ID_HEADER
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import eventually, running

_renderer = TemplateRenderer()
QUEUES = ("notifications-critical", "notifications", "notifications-bulk")


def _event(event_id: str, type_: str = "order.confirmation", **overrides: Any) -> dict[str, Any]:
    sender = "care" if type_ == "appointment.reminder" else "orders"
    document: dict[str, Any] = {
        "id": event_id,
        "type": type_,
        "tenant": "contoso",
        "to": ["jane@example.com"],
        "sender": sender,
        "data": _renderer.sample_data(type_),
    }
    document.update(overrides)
    return document


@pytest.fixture
def lanes(settings: Settings) -> Settings:
    return settings.model_copy(update={"lanes": True})


async def test_each_event_travels_on_its_lane_and_one_worker_sends_them_all(
    lanes: Settings, servicebus: ServiceBusEmulator, acs: EmailEmulator
) -> None:
    # Given a reminder (critical by its type), an order (normal) and an order asking for bulk
    async with Publisher.from_settings(lanes) as publisher:
        await publisher.publish_many(
            [_event("reminder-1", "appointment.reminder"), _event("order-1"), _event("order-2", lane="bulk")]
        )
    # Then each waits on its own queue
    assert [servicebus.counts(queue).active for queue in QUEUES] == [1, 1, 1]
    # And one worker receives from all three and sends each once
    async with running(Worker(lanes)) as worker:
        mails = await acs.mailbox.wait_for(count=3, timeout=30)
        for queue in QUEUES:
            await servicebus.wait_until_empty(queue, timeout=20)
    assert sorted(mail.headers[EVENT_ID_HEADER] for mail in mails) == ["order-1", "order-2", "reminder-1"]
    assert {lane.value: count for lane, count in worker.sent_by_lane.items()} == {
        "critical": 1,
        "normal": 1,
        "bulk": 1,
    }


async def test_a_producer_may_lower_a_lane_but_not_raise_it_unless_allowed(lanes: Settings) -> None:
    async with Publisher.from_settings(lanes) as publisher:
        with pytest.raises(LaneNotAllowed, match="'critical' is above the 'normal' lane"):
            await publisher.publish(_event("order-3", lane="critical"))
        with pytest.raises(InvalidEvent, match="lane"):
            await publisher.publish(_event("order-4", lane="urgent"))
        # A per-call policy (an API client allowed to raise lanes) may
        await publisher.publish_many([_event("order-5", lane="critical")], may_raise_lanes=True)


async def test_a_critical_event_overtakes_a_paced_normal_backlog(
    lanes: Settings, servicebus: ServiceBusEmulator, acs: EmailEmulator
) -> None:
    # Given a worker paced at 3 sends/s with 30 order confirmations queued ahead
    paced = lanes.model_copy(update={"quota_per_minute": 180, "quota_per_hour": 0})
    async with Publisher.from_settings(paced) as publisher:
        await publisher.publish_many([_event(f"order-{n}") for n in range(30)])
        async with running(Worker(paced)):
            await acs.mailbox.wait_for(count=2, timeout=30)
            # When a reminder is published behind them
            before = len(acs.mailbox.messages())
            await publisher.publish(_event("reminder-9", "appointment.reminder"))
            mails = await acs.mailbox.wait_for(count=31, timeout=60)
    order = [mail.headers[EVENT_ID_HEADER] for mail in mails]
    # Then it went out within a few sends of arriving, ahead of most of the backlog
    position = order.index("reminder-9")
    assert position <= before + 8, (position, before)
    assert len(order) - position > 10
    assert len(set(order)) == 31


async def test_a_missing_lane_queue_stops_the_worker_at_start_naming_the_lane(lanes: Settings) -> None:
    missing = lanes.model_copy(update={"queue_bulk": "no-such-bulk"})
    with pytest.raises(QueueNotFound, match="bulk lane's queue 'no-such-bulk'"):
        async with running(Worker(missing)):
            pass


async def test_shutdown_settles_or_gives_back_what_every_lane_holds(
    lanes: Settings, servicebus: ServiceBusEmulator, acs: EmailEmulator
) -> None:
    # Given a worker paced at 1 send/s holding messages of all three lanes
    paced = lanes.model_copy(
        update={"quota_per_minute": 60, "quota_per_hour": 0, "shutdown_grace_seconds": 5}
    )
    async with Publisher.from_settings(paced) as publisher:
        await publisher.publish_many(
            [_event(f"r-{n}", "appointment.reminder") for n in range(3)]
            + [_event(f"o-{n}") for n in range(3)]
            + [_event(f"b-{n}", lane="bulk") for n in range(3)]
        )
    async with running(Worker(paced)) as worker:
        await eventually(
            lambda: worker.counts["sent"] >= 1 and sum(servicebus.counts(q).locked for q in QUEUES) > 0
        )
    # When it has stopped: nothing is left locked on any lane, and every event is either sent once
    # or back on its lane's queue for the next worker
    counts = [servicebus.counts(queue) for queue in QUEUES]
    assert [c.locked for c in counts] == [0, 0, 0]
    sent = [mail.headers[EVENT_ID_HEADER] for mail in acs.mailbox.messages()]
    assert len(sent) == len(set(sent))
    assert len(sent) + sum(c.active for c in counts) == 9
    assert worker.counts["sent"] == len(sent)
