"""Each failure class end to end, through the real SDKs and the emulators' fault injection."""

from __future__ import annotations

from typing import Any

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import parse_event
from postbus.producers.publisher import Publisher
from postbus.settings import Settings
from postbus.worker.mailer import EVENT_ID_HEADER
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import eventually, running

_data = TemplateRenderer().sample_data("order.confirmation")


def _event(event_id: str) -> Any:
    return parse_event(
        {
            "id": event_id,
            "type": "order.confirmation",
            "to": ["jane@example.com"],
            "sender": "orders",
            "data": _data,
        }
    )


async def test_throttling_pauses_sends_and_every_event_is_sent_once(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    acs.faults.throttle_next(4, retry_after=1)
    await publisher.publish_many([_event(f"order-t{i}") for i in range(6)])
    await acs.mailbox.wait_for(count=6, timeout=30)
    await servicebus.wait_until_empty("notifications", timeout=20)
    assert acs.stats()["throttled"] == 4
    assert sorted(m.headers[EVENT_ID_HEADER] for m in acs.mailbox.messages()) == [
        f"order-t{i}" for i in range(6)
    ]
    assert worker.counts["dead_lettered"] == 0


async def test_an_ambiguous_timeout_is_resent_with_the_same_operation_and_stored_once(
    settings: Settings, publisher: Publisher, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    async with running(Worker(settings.model_copy(update={"send_timeout_seconds": 0.5}))) as worker:
        acs.faults.stall_next(1)
        await publisher.publish(_event("order-stall"))
        await servicebus.wait_until_empty("notifications", timeout=30)
    (mail,) = acs.mailbox.messages()
    assert mail.headers[EVENT_ID_HEADER] == "order-stall"
    assert worker.counts["sent"] + worker.counts["already_sent"] == 1


async def test_systemic_failures_open_the_breaker_and_never_dead_letter(
    settings: Settings, publisher: Publisher, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    # Given a worker whose ACS key is wrong
    broken = settings.model_copy(
        update={
            "acs_access_key": type(settings.acs_access_key)("d3Jvbmcta2V5"),
            "breaker_cooldown_seconds": 30.0,
        }
    )
    async with running(Worker(broken)) as worker:
        await publisher.publish(_event("order-key"))
        # Then the message is abandoned, the breaker opens and the worker reports not ready
        await eventually(lambda: worker.counts["abandoned"] >= 1)
        assert not worker.ready
        status = worker.health()
        assert status.detail["breaker"] == "open"
        assert "401" in status.detail["last_error"]
        counts = servicebus.counts("notifications")
        assert counts.dead_lettered == 0
        assert counts.total == 1
    # When a correctly configured worker takes over, the event is sent once
    async with running(Worker(settings)) as healthy:
        (mail,) = await acs.mailbox.wait_for(count=1, timeout=30)
        assert mail.headers[EVENT_ID_HEADER] == "order-key"
        assert healthy.ready
