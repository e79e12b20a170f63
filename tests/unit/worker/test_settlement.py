"""Settlement is one match on the outcome: each outcome makes exactly the right queue calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postbus.bus import BusBusy, Delivery
from postbus.events import (
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_LAST_ERROR,
    PROP_THROTTLED,
    WireMessage,
    decode,
    encode,
    parse_event,
    retry_wire,
)
from postbus.reasons import DeadLetterReason, RetryReason
from postbus.settings import load_settings
from postbus.worker.outcome import AlreadySent, DeadLetter, Outcome, RetryLater, Sent, Systemic
from postbus.worker.pipeline import Processed
from postbus.worker.retry import RetryPolicy
from postbus.worker.settlement import give_back, settle

FIRST = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy.from_settings(load_settings())
MSG = Delivery(body=b"{}", content_type="application/json", application_properties={}, message_id="evt-7")


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
            raise BusBusy("schedule evt-7", "namespace busy")
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
    await settle(port, MSG, _processed(outcome), policy=POLICY)
    assert port.calls == [("complete", MSG)]


async def test_dead_letter_carries_reason_and_description() -> None:
    port = RecordingPort()
    await settle(port, MSG, _processed(DeadLetter(DeadLetterReason.EXPIRED, "too late")), policy=POLICY)
    assert port.calls == [("dead_letter", (MSG, "Expired", "too late"))]


async def test_systemic_abandons() -> None:
    port = RecordingPort()
    await settle(port, MSG, _processed(Systemic("401")), policy=POLICY)
    assert port.calls == [("abandon", MSG)]


async def test_a_long_outage_parks_the_message_instead_of_burning_delivery_attempts() -> None:
    # Given a message already abandoned twice for a systemic failure
    port = RecordingPort()
    processed = _processed(Systemic("401"))
    processed = Processed(processed.outcome, processed.decoded, processed.operation_id, delivery_count=2)
    # When it fails systemically again
    await settle(port, MSG, processed, policy=POLICY)
    # Then it becomes a scheduled copy that spends no attempt, so MaxDeliveryCount never dead-letters it
    (kind, (wire, _at)), second = port.calls
    assert kind == "schedule"
    assert second == ("complete", MSG)
    assert wire.application_properties[PROP_THROTTLED] == 1


async def test_retry_schedules_a_copy_then_completes_the_original() -> None:
    port = RecordingPort()
    before = datetime.now(UTC)
    await settle(
        port,
        MSG,
        _processed(RetryLater(30.0, RetryReason.TRANSIENT, "503 from ACS"), attempt=1),
        policy=POLICY,
    )
    (kind, (wire, at)), second = port.calls
    assert kind == "schedule"
    assert second == ("complete", MSG)
    assert before + timedelta(seconds=30) <= at <= datetime.now(UTC) + timedelta(seconds=30)
    assert wire.message_id == "evt-7#2"
    assert wire.application_properties[PROP_ATTEMPT] == 2
    assert wire.application_properties[PROP_FIRST_ENQUEUED] == "2026-11-27T09:00:00.000000Z"
    assert wire.application_properties[PROP_LAST_ERROR] == "503 from ACS"
    assert wire.application_properties["traceparent"] == "00-t-s-01"  # the retry stays in the trace
    assert wire.application_properties[PROP_THROTTLED] == 0


async def test_a_throttled_retry_is_counted_apart_from_the_budget() -> None:
    retry = RetryLater(5.0, RetryReason.THROTTLED, "429", spend_attempt=False)
    decoded = _processed(retry, attempt=3, **{PROP_THROTTLED: 2}).decoded
    assert decoded is not None
    copy = retry_wire(decoded, error=retry.error, spend_attempt=retry.spend_attempt, now=FIRST)
    assert copy.application_properties[PROP_THROTTLED] == 3
    assert copy.message_id == "evt-7#4"  # still unique, so duplicate detection keeps it


async def test_a_replayed_generation_retries_under_its_own_message_ids() -> None:
    decoded = _processed(RetryLater(1.0, RetryReason.TRANSIENT, "503"), **{"postbus-replay": 2}).decoded
    assert decoded is not None
    copy = retry_wire(decoded, error="503", spend_attempt=True, now=FIRST)
    assert copy.message_id == "evt-7#r2#1"
    assert copy.application_properties["postbus-replay"] == 2


async def test_a_retry_that_cannot_be_scheduled_abandons_the_original() -> None:
    port = RecordingPort(fail_schedule=True)
    with pytest.raises(BusBusy):
        await settle(port, MSG, _processed(RetryLater(1.0, RetryReason.TRANSIENT, "reset")), policy=POLICY)
    assert port.calls == [("abandon", MSG)]


async def test_a_cancelled_handler_gives_the_message_back() -> None:
    port = RecordingPort()
    await give_back(port, MSG)
    assert port.calls == [("abandon", MSG)]
