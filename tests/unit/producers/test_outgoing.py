"""Preparing messages: everything validated first, contract properties, the telemetry seam, send_at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from postbus.bus import delivery_from
from postbus.errors import InvalidEvent
from postbus.events import (
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_SCHEMA,
    SCHEMA,
    parse_event,
)
from postbus.producers.outgoing import ScheduledEvent, prepare, prepare_raw
from postbus.producers.simulate import SimulatedEvent, broken_bodies

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def doc(event_id: str = "order-1", **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": event_id,
        "type": "order.confirmation",
        "to": ["Jane Doe <jane@example.com>"],
        "sender": "orders",
        "data": {"order": {"number": "CO-1"}},
    }
    document.update(overrides)
    return document


def test_each_message_carries_the_contract_properties() -> None:
    [item] = prepare([doc("order-1")], now=NOW)
    message = item.message
    assert (item.message_id, item.label, item.scheduled) == ("order-1", "order-1", False)
    assert message.message_id == "order-1"
    assert message.subject == "order.confirmation"
    assert message.content_type == "application/json"
    assert message.application_properties == {
        PROP_SCHEMA: SCHEMA,
        PROP_ATTEMPT: 0,
        PROP_FIRST_ENQUEUED: "2026-11-27T09:30:00.000000Z",
    }
    assert message.scheduled_enqueue_time_utc is None
    assert delivery_from(message).decode().event.id == "order-1"


def test_an_invalid_item_names_its_index_and_field_and_nothing_is_prepared() -> None:
    items = [doc("order-1"), doc("order-2"), doc("order-3", to=["not-an-address"])]
    with pytest.raises(InvalidEvent) as caught:
        prepare(items)
    assert str(caught.value) == "events[2]: to.0.address: not a valid email address: 'not-an-address'"
    assert caught.value.field == "to.0.address"


def test_items_may_be_events_documents_or_events_with_send_at() -> None:
    later = NOW + timedelta(minutes=5)
    items = [
        parse_event(doc("a")),
        doc("b"),
        ScheduledEvent(parse_event(doc("c")), send_at=later),
        SimulatedEvent(parse_event(doc("d")), send_at=later, expect="sent"),
    ]
    prepared = prepare(items)
    assert [item.message_id for item in prepared] == ["a", "b", "c", "d"]
    assert [item.scheduled for item in prepared] == [False, False, True, True]
    assert prepared[2].message.scheduled_enqueue_time_utc == later


def test_send_at_for_the_call_applies_where_an_item_has_none() -> None:
    default, own = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    prepared = prepare([doc("a"), ScheduledEvent(parse_event(doc("b")), send_at=own)], send_at=default)
    assert [item.message.scheduled_enqueue_time_utc for item in prepared] == [default, own]


def test_send_at_keeps_the_instant_whatever_the_offset() -> None:
    berlin = datetime(2026, 12, 24, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    [item] = prepare([doc()], send_at=berlin)
    assert item.message.scheduled_enqueue_time_utc == datetime(2026, 12, 24, 8, 0, tzinfo=UTC)


def test_a_naive_send_at_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="send_at: must be timezone-aware"):
        prepare([doc()], send_at=datetime(2026, 12, 24, 9, 0))
    with pytest.raises(InvalidEvent, match=r"events\[0\]: send_at"):
        prepare([ScheduledEvent(parse_event(doc()), send_at=datetime(2026, 12, 24))])


def test_something_that_is_not_an_event_is_refused_with_its_index() -> None:
    with pytest.raises(InvalidEvent, match=r"events\[1\]: expected an event"):
        prepare([doc("a"), 42])  # type: ignore[list-item]


def test_the_properties_hook_adds_application_properties_per_event() -> None:
    def hook(event: Any) -> dict[str, str]:
        return {"traceparent": f"00-{event.id:0>32}-00f067aa0ba902b7-01"}

    [item] = prepare([doc("abc")], properties_hook=hook)
    assert item.message.application_properties is not None
    assert item.message.application_properties["traceparent"] == f"00-{'abc':0>32}-00f067aa0ba902b7-01"
    assert item.message.application_properties[PROP_SCHEMA] == SCHEMA


def test_raw_wire_messages_go_through_untouched() -> None:
    wires = broken_bodies(3, seed=1)
    prepared = prepare_raw(wires)
    for wire, item in zip(wires, prepared, strict=True):
        assert item.message_id == wire.message_id
        assert b"".join(item.message.body) == wire.body
