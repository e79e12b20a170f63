"""Settlement is one match on the outcome: each outcome makes exactly the right queue calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postbus.events import (
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_LAST_ERROR,
    WireMessage,
    decode,
    encode,
    parse_event,
)
from postbus.worker.bus import SettlementFailed
from postbus.worker.outcome import AlreadySent, DeadLetter, Outcome, RetryLater, Sent, Systemic
from postbus.worker.pipeline import PROP_THROTTLED, Processed
from postbus.worker.settlement import retry_copy, settle

FIRST = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class RecordingPort:
    def __init__(self, *, fail_schedule: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_schedule = fail_schedule

    async def complete(self, message: Any) -> None:
        self.calls.append(("complete", message))

    async def abandon(self, message: Any) -> None:
        self.calls.append(("abandon", message))

    async def dead_letter(self, message: Any, *, reason: str, description: str) -> None:
        self.calls.append(("dead_letter", (message, reason, description)))

    async def schedule(self, wire: WireMessage, *, at: datetime) -> None:
        if self.fail_schedule:
            raise SettlementFailed("namespace busy", lock_lost=False)
        self.calls.append(("schedule", (wire, at)))


def _processed(outcome: Outcome, *, attempt: int = 0, **props: Any) -> Processed:
    event = parse_event(
        {"id": "evt-7", "type": "order.confirmation", "to": ["a@example.com"], "sender": "orders"}
    )
    wire = encode(
        event, attempt=attempt, first_enqueued=FIRST, extra_properties={"traceparent": "00-t-s-01", **props}
    )
    decoded = decode(
        wire.body, content_type=wire.content_type, application_properties=wire.application_properties
    )
    return Processed(outcome, decoded, "op-1")


@pytest.mark.parametrize("outcome", [Sent("op-1"), AlreadySent("op-1")])
async def test_sent_and_already_sent_complete(outcome: Outcome) -> None:
    port = RecordingPort()
    await settle(port, "msg", _processed(outcome))
    assert port.calls == [("complete", "msg")]


async def test_dead_letter_carries_reason_and_description() -> None:
    port = RecordingPort()
    await settle(port, "msg", _processed(DeadLetter("Expired", "too late")))
    assert port.calls == [("dead_letter", ("msg", "Expired", "too late"))]


async def test_systemic_abandons() -> None:
    port = RecordingPort()
    await settle(port, "msg", _processed(Systemic("401")))
    assert port.calls == [("abandon", "msg")]


async def test_a_long_outage_parks_the_message_instead_of_burning_delivery_attempts() -> None:
    # Given a message already abandoned twice for a systemic failure
    port = RecordingPort()
    processed = _processed(Systemic("401"))
    processed = Processed(processed.outcome, processed.decoded, processed.operation_id, delivery_count=2)
    # When it fails systemically again
    await settle(port, "msg", processed)
    # Then it becomes a scheduled copy that spends no attempt, so MaxDeliveryCount never dead-letters it
    (kind, (wire, _at)), second = port.calls
    assert kind == "schedule"
    assert second == ("complete", "msg")
    assert wire.application_properties[PROP_THROTTLED] == 1


async def test_retry_schedules_a_copy_then_completes_the_original() -> None:
    port = RecordingPort()
    before = datetime.now(UTC)
    await settle(port, "msg", _processed(RetryLater(30.0, "Transient", "503 from ACS"), attempt=1))
    (kind, (wire, at)), second = port.calls
    assert kind == "schedule"
    assert second == ("complete", "msg")
    assert before + timedelta(seconds=30) <= at <= datetime.now(UTC) + timedelta(seconds=30)
    assert wire.message_id == "evt-7#2"
    assert wire.application_properties[PROP_ATTEMPT] == 2
    assert wire.application_properties[PROP_FIRST_ENQUEUED] == "2026-11-27T09:00:00.000000Z"
    assert wire.application_properties[PROP_LAST_ERROR] == "503 from ACS"
    assert wire.application_properties["traceparent"] == "00-t-s-01"  # the retry stays in the trace
    assert wire.application_properties[PROP_THROTTLED] == 0


async def test_a_throttled_retry_is_counted_apart_from_the_budget() -> None:
    copy = retry_copy(
        _processed(
            RetryLater(5.0, "Throttled", "429", spend_attempt=False), attempt=3, **{PROP_THROTTLED: 2}
        ),
        RetryLater(5.0, "Throttled", "429", spend_attempt=False),
        now=FIRST,
    )
    assert copy.application_properties[PROP_THROTTLED] == 3
    assert copy.message_id == "evt-7#4"  # still unique, so duplicate detection keeps it


async def test_a_replayed_generation_retries_under_its_own_message_ids() -> None:
    retry = RetryLater(1.0, "Transient", "503")
    copy = retry_copy(_processed(retry, attempt=0, **{"postbus-replay": 2}), retry, now=FIRST)
    assert copy.message_id == "evt-7#r2#1"
    assert copy.application_properties["postbus-replay"] == 2


async def test_a_retry_that_cannot_be_scheduled_abandons_the_original() -> None:
    port = RecordingPort(fail_schedule=True)
    with pytest.raises(SettlementFailed):
        await settle(port, "msg", _processed(RetryLater(1.0, "Transient", "reset")))
    assert port.calls == [("abandon", "msg")]
