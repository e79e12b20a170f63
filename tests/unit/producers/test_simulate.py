"""Traffic shapes: reproducible, valid, shaped like the shipped templates, with the promised outcome mix."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbus.errors import InvalidEvent
from postbus.events import decode, parse_event
from postbus.producers.simulate import (
    EXPECT_SENT,
    SENDER_ALIASES,
    SimulatedEvent,
    bookings,
    broken_bodies,
    checkout_spike,
    holiday_spike,
    permits,
)

START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
TEMPLATES = Path(__file__).resolve().parents[3] / "worker" / "templates"
RESERVED = ("example.com", "example.net", "example.org")
# Keys a generator may leave out because the templates test for them (`is defined` / falsy).
OPTIONAL = {"order.discount", "appointment.instructions"}


def _fingerprint(items: list[SimulatedEvent]) -> list[tuple[str, str | None, str]]:
    return [
        (item.event.model_dump_json(), item.send_at.isoformat() if item.send_at else None, item.expect)
        for item in items
    ]


def _paths(value: Any, prefix: str = "") -> set[str]:
    """Dotted key paths of a JSON document; list items are merged under ``[]``."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= _paths(inner, path)
    elif isinstance(value, list):
        for inner in value:
            paths |= _paths(inner, f"{prefix}[]")
    return paths


SHAPES = {
    "checkout_spike": lambda seed: checkout_spike(60, seed=seed, start=START),
    "bookings": lambda seed: bookings(30, seed=seed, start=START, lead_seconds=3),
    "permits": lambda seed: permits(30, seed=seed, start=START),
    "holiday_spike": lambda seed: holiday_spike(200, seed=seed, start=START, invalid_ratio=0.05),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_same_seed_gives_identical_events_and_another_seed_different_ones(shape: str) -> None:
    make = SHAPES[shape]
    assert _fingerprint(make(7)) == _fingerprint(make(7))
    assert _fingerprint(make(7)) != _fingerprint(make(8))


@pytest.mark.parametrize("shape", SHAPES)
def test_every_generated_event_survives_the_wire_contract(shape: str) -> None:
    items = SHAPES[shape](3)
    for item in items:
        # Strict JSON validation, exactly what the worker applies to the body.
        assert parse_event(item.event.to_json()) == item.event
        for recipient in item.event.recipients():
            domain = recipient.address.rsplit("@", 1)[1]
            assert domain in RESERVED or domain.endswith(".test")
        if item.expect == EXPECT_SENT:
            assert item.event.sender in SENDER_ALIASES
    assert len({item.event.id for item in items}) == len(items)


def test_checkout_spike_mixes_order_confirmations_and_return_labels() -> None:
    types = Counter(item.event.type for item in checkout_spike(200, seed=1, start=START))
    assert set(types) == {"order.confirmation", "return.label"}
    assert types["order.confirmation"] > types["return.label"]


def test_bookings_are_scheduled_lead_seconds_ahead_and_expire_at_the_appointment() -> None:
    for item in bookings(50, seed=2, start=START, lead_seconds=4):
        assert item.event.type == "appointment.reminder"
        assert item.send_at is not None
        assert START + timedelta(seconds=4) <= item.send_at <= START + timedelta(seconds=5)
        starts_at = datetime.fromisoformat(str(item.event.data["appointment"]["starts_at"]))  # type: ignore[index,call-overload]
        assert item.event.not_after == starts_at > START


@pytest.mark.parametrize(
    ("event_type", "make"),
    [
        ("order.confirmation", lambda: checkout_spike(80, seed=4, start=START)),
        ("return.label", lambda: checkout_spike(80, seed=4, start=START)),
        ("appointment.reminder", lambda: bookings(40, seed=4, start=START)),
        ("permit.approved", lambda: permits(40, seed=4, start=START)),
    ],
)
def test_data_has_the_shape_of_the_templates_sample(event_type: str, make: Any) -> None:
    sample = json.loads((TEMPLATES / event_type / "sample.json").read_text(encoding="utf-8"))
    expected = _paths(sample)
    seen: set[str] = set()
    for item in make():
        if item.event.type != event_type:
            continue
        paths = _paths(item.event.data)
        assert paths <= expected, f"keys the template does not know: {sorted(paths - expected)}"
        assert expected - OPTIONAL <= paths, f"keys the template needs: {sorted(expected - paths)}"
        seen |= paths
    assert seen == expected | (seen & OPTIONAL)


def test_amounts_add_up_on_order_confirmations() -> None:
    for item in checkout_spike(100, seed=9, start=START):
        if item.event.type != "order.confirmation":
            continue
        order: Any = item.event.data["order"]
        subtotal = sum(line["unit_price"] * line["quantity"] for line in order["items"])
        assert order["subtotal"] == pytest.approx(subtotal, abs=0.005)
        total = order["subtotal"] - order.get("discount", 0) + order["shipping"]
        if not order["tax_included"]:
            total += order["tax"]
        assert order["total"] == pytest.approx(total, abs=0.011)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=0, max_value=300), ratio=st.floats(min_value=0, max_value=0.2))
def test_the_holiday_spike_holds_round_n_times_ratio_events_the_worker_must_refuse(
    n: int, ratio: float
) -> None:
    items = holiday_spike(n, seed=5, start=START, invalid_ratio=ratio)
    assert len(items) == n
    refused = [item for item in items if item.expect != EXPECT_SENT]
    assert len(refused) == round(n * ratio)


def test_each_refusal_is_spoiled_the_way_its_reason_says() -> None:
    items = holiday_spike(600, seed=11, start=START, invalid_ratio=0.05)
    reasons = Counter(item.expect for item in items)
    assert reasons[EXPECT_SENT] == 570
    assert {reason: count for reason, count in reasons.items() if reason != EXPECT_SENT} == {
        "UnknownTemplate": 10,
        "SenderNotAllowed": 10,
        "Expired": 10,
    }
    for item in items:
        event = item.event
        if item.expect == "UnknownTemplate":
            assert not (TEMPLATES / event.type).exists()
        elif item.expect == "SenderNotAllowed":
            assert event.sender not in SENDER_ALIASES
        elif item.expect == "Expired":
            assert event.not_after is not None
            assert event.not_after < START
        else:
            assert (TEMPLATES / event.type).is_dir()
            assert event.not_after is None or event.not_after > START
    assert {item.event.type for item in items if item.expect == EXPECT_SENT} == {
        "order.confirmation",
        "return.label",
        "appointment.reminder",
        "permit.approved",
    }
    assert all(item.send_at is not None for item in items if item.event.type == "appointment.reminder")


def test_a_bad_invalid_ratio_or_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid_ratio"):
        holiday_spike(10, seed=1, start=START, invalid_ratio=1.5)
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        checkout_spike(1, seed=1, start=START.replace(tzinfo=None))


def test_broken_bodies_are_reproducible_and_every_one_fails_the_contract() -> None:
    first, again = broken_bodies(16, seed=3), broken_bodies(16, seed=3)
    assert first == again
    assert first != broken_bodies(16, seed=4)
    assert len({wire.message_id for wire in first}) == 16
    for wire in first:
        with pytest.raises(InvalidEvent):
            decode(
                wire.body, content_type=wire.content_type, application_properties=wire.application_properties
            )


def test_label_pdfs_attach_realistic_pdfs_without_changing_the_event_stream() -> None:
    import base64

    start = datetime(2026, 12, 1, tzinfo=UTC)
    plain = holiday_spike(600, seed=3, start=start)
    with_pdfs = holiday_spike(600, seed=3, start=start, label_pdfs=True)
    assert [i.event.id for i in plain] == [i.event.id for i in with_pdfs]
    pdfs = [
        base64.b64decode(a.content_base64 or "")
        for item in with_pdfs
        for a in item.event.attachments
        if item.event.type == "return.label"
    ]
    assert pdfs
    assert all(p.startswith(b"%PDF-1.7") and p.endswith(b"%%EOF\n") for p in pdfs)
    assert any(len(p) > 256 * 1024 for p in pdfs)
    assert any(len(p) < 64 * 1024 for p in pdfs)
    assert not any(item.event.attachments for item in plain)
