"""Filters, rates, the replay wire form and the dead-letter entry view (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbus.bus import Delivery
from postbus.events import (
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_GENERATION,
    encode,
    parse_event,
    retry_message_id,
)
from postbus.worker.ops import (
    BadInput,
    Selection,
    entry_from,
    parse_instant,
    parse_rate,
    replay_message_id,
    replay_wire,
)
from postbus.worker.ops.deadletters import masked_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _event(event_id: str = "order-1", **extra: Any) -> Any:
    document = {
        "id": event_id,
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["Jane Doe <jane.doe@example.com>"],
        "cc": ["bob@example.org"],
        "sender": "orders",
        "data": {"contact": "write to help.desk@example.net", "total": 12},
    }
    document.update(extra)
    return parse_event(document)


def Received(
    *,
    body: bytes,
    message_id: str,
    application_properties: dict[Any, Any] | None = None,
    dead_letter_reason: str | None = "RetriesExhausted",
) -> Delivery:
    """A dead-lettered message as the Service Bus adapter hands it over."""
    return Delivery(
        body=body,
        content_type="application/json",
        application_properties=application_properties or {},
        message_id=message_id,
        subject="order.confirmation",
        sequence_number=7,
        dead_letter_reason=dead_letter_reason,
        dead_letter_description="ACS answered 503",
        delivery_count=1,
        enqueued_at=NOW,
    )


def _received(wire: Any) -> Delivery:
    # Keys arrive as bytes from the SDK; the adapter keeps whatever it is given.
    properties = {key.encode(): value for key, value in wire.application_properties.items()}
    return Received(body=wire.body, message_id=wire.message_id, application_properties=properties)


def test_selection_parses_and_normalises_reasons() -> None:
    selection = Selection.parse(reasons=["retriesexhausted", "Expired"], types=["order.confirmation"])
    assert selection.reasons == ("RetriesExhausted", "Expired")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reasons": ["Nope"]}, "unknown dead-letter reason 'Nope'"),
        ({"types": ["Order Confirmation"]}, "not a valid notification type"),
        ({"tenants": ["a b"]}, "not a valid tenant"),
        ({"event_ids": ["has#hash"]}, "not a valid event id"),
        ({"since": "last tuesday"}, "not an ISO 8601 time"),
        ({"since": "1h", "until": "2h"}, "--until is before --since"),
        ({"time_field": "dead-lettered"}, "--time-field"),
    ],
)
def test_selection_refuses_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        Selection.parse(**kwargs, now=NOW)


def test_instants_are_iso_or_a_duration_ago() -> None:
    assert parse_instant("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_instant("1.5d", now=NOW) == NOW - timedelta(hours=36)
    assert parse_instant("2026-11-28T10:00:00") == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert parse_instant("2026-11-28T10:00:00Z") == datetime(2026, 11, 28, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "per_second"), [("5/s", 5.0), ("5", 5.0), ("120/min", 2.0), ("3600/h", 1.0), ("0.5/s", 0.5)]
)
def test_rates(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["0/s", "fast", "-1", "5/day"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(BadInput, match="--rate"):
        parse_rate(text)


def test_an_entry_reads_the_event_and_the_dead_letter_metadata() -> None:
    first = NOW - timedelta(hours=1)
    wire = encode(_event(), attempt=3, first_enqueued=first, extra_properties={PROP_GENERATION: 1})
    entry = entry_from(_received(wire))
    assert (entry.event_id, entry.type, entry.tenant) == ("order-1", "order.confirmation", "contoso")
    assert (entry.reason, entry.attempt, entry.generation, entry.sequence_number) == (
        "RetriesExhausted",
        3,
        1,
        7,
    )
    assert entry.first_enqueued_at == first
    assert entry.decode_error is None


def test_an_undecodable_entry_falls_back_to_the_envelope() -> None:
    message = Received(
        body=b"{not json",
        message_id="order-9#2",
        application_properties={
            PROP_ATTEMPT.encode(): 2,
            PROP_FIRST_ENQUEUED.encode(): NOW.isoformat().encode(),
        },
        dead_letter_reason="InvalidEvent",
    )
    entry = entry_from(message)
    assert (entry.event_id, entry.type, entry.attempt, entry.first_enqueued_at) == (
        "order-9",
        "order.confirmation",
        2,
        NOW,
    )
    assert entry.decoded is None
    assert entry.decode_error is not None
    assert "JSON" in entry.decode_error
    assert entry.to_json(body=True)["body"] == "{not json"


def test_selection_matches_on_every_field_and_the_chosen_time() -> None:
    wire = encode(_event(), first_enqueued=NOW - timedelta(days=2))
    entry = entry_from(_received(wire))  # enqueued NOW, first enqueued two days ago
    assert Selection.parse(reasons=["RetriesExhausted"], tenants=["contoso"], event_ids=["order-1"]).matches(
        entry
    )
    assert not Selection.parse(types=["return.label"]).matches(entry)
    assert Selection.parse(since="2026-11-28T11:00:00Z").matches(entry)
    assert not Selection.parse(since="2026-11-28T11:00:00Z", time_field="first-enqueued").matches(entry)


def test_bodies_are_shown_with_recipients_masked() -> None:
    shown = masked_event(_event())
    assert shown["to"][0] == {"address": "j***@example.com", "display_name": "Jane Doe"}
    assert shown["cc"][0]["address"] == "b***@example.org"
    assert shown["data"]["contact"] == "write to h***@example.net"
    assert shown["data"]["total"] == 12


def test_a_replay_is_a_fresh_generation_that_keeps_trace_context() -> None:
    wire = encode(
        _event(),
        attempt=7,
        first_enqueued=NOW - timedelta(days=3),
        extra_properties={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "postbus-last-error": "503",
            "postbus-throttled": 2,
            PROP_GENERATION: 1,
        },
    )
    replayed = replay_wire(entry_from(_received(wire)), generation=2, now=NOW)
    properties = replayed.application_properties
    assert replayed.message_id == "order-1#r2"
    assert (properties[PROP_ATTEMPT], properties[PROP_GENERATION]) == (0, 2)
    assert properties[PROP_FIRST_ENQUEUED] == "2026-11-28T12:00:00.000000Z"
    assert properties["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert "postbus-last-error" not in properties
    assert "postbus-throttled" not in properties
    assert replayed.body == wire.body


def test_a_replay_generation_starts_at_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        replay_message_id("order-1", 0)


_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}", fullmatch=True)


@given(event_id=_ids, attempt=st.integers(0, 100), generation=st.integers(1, 100))
def test_replay_ids_never_collide_with_first_attempts_or_retries(
    event_id: str, attempt: int, generation: int
) -> None:
    replay_id = replay_message_id(event_id, generation)
    assert replay_id != retry_message_id(event_id, attempt)
    assert len(replay_id) <= 128  # Service Bus message id limit
    assert replay_id.split("#", 1)[0] == event_id
