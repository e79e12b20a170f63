"""The notification contract: any valid event survives the wire, every invalid field is named."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbus.bus import delivery_from, to_servicebus_message
from postbus.errors import InvalidEvent
from postbus.events import (
    CONTENT_TYPE,
    MAX_RECIPIENTS,
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_SCHEMA,
    SCHEMA,
    NotificationEvent,
    decode,
    encode,
    parse_event,
    retry_message_id,
)

# --- strategies ---------------------------------------------------------------------------------

_atom = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}", fullmatch=True)
_local = st.lists(_atom, min_size=1, max_size=3).map(".".join).filter(lambda s: len(s) <= 64)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domain = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "test", "example", "org", "de", "xn--p1ai"]),
)
_email = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)
_display = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(
    lambda s: s.strip() == s
)
_address = st.one_of(
    _email,
    st.builds(lambda a, n: {"address": a, "display_name": n}, _email, _display),
)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_offset = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_offset)
_attachment = st.builds(
    lambda name, ctype, content: {
        "name": name,
        "content_type": ctype,
        "content_base64": base64.b64encode(content).decode(),
    },
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,30}", fullmatch=True),
    st.sampled_from(["application/pdf", "image/png", "text/calendar", "text/plain"]),
    st.binary(max_size=64),
)
_header_value = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)

valid_events = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}", fullmatch=True),
        "type": st.from_regex(r"[a-z][a-z0-9_-]{0,10}(\.[a-z][a-z0-9_-]{0,10}){0,2}", fullmatch=True),
        "to": st.lists(_address, min_size=1, max_size=3),
        "sender": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True),
    },
    optional={
        "tenant": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
        "cc": st.lists(_address, max_size=3),
        "bcc": st.lists(_address, max_size=3),
        "reply_to": st.lists(_address, max_size=2),
        "locale": st.sampled_from(["en", "de", "de-DE", "fr-CA", "zh-Hant-TW"]),
        "data": st.dictionaries(st.text(max_size=10), _json, max_size=5),
        "not_after": _aware.map(lambda d: d.isoformat()),
        "attachments": st.lists(_attachment, max_size=2),
        "headers": st.dictionaries(
            st.from_regex(r"X-Custom-[A-Za-z0-9-]{1,12}", fullmatch=True), _header_value, max_size=3
        ),
    },
)


def _valid(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "order-1001",
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["Jane Doe <jane@example.com>"],
        "sender": "orders",
        "data": {"order": {"number": "1001"}},
    }
    document.update(overrides)
    return document


# --- round trip -----------------------------------------------------------------------------------


@given(valid_events)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_any_valid_event_survives_encode_and_decode_unchanged(document: dict[str, Any]) -> None:
    # Given a valid event built from arbitrary input
    event = parse_event(document)
    # When it travels as a wire message and as an SDK message
    wire = encode(event)
    decoded = decode(
        wire.body, content_type=wire.content_type, application_properties=wire.application_properties
    )
    via_sdk = delivery_from(to_servicebus_message(wire)).decode()
    # Then it comes back equal, and so does its JSON form
    assert decoded.event == event
    assert via_sdk.event == event
    assert parse_event(json.loads(wire.body)) == event
    assert decoded.attempt == 0


def test_wire_message_carries_the_contract_properties() -> None:
    event = parse_event(_valid())
    first = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    wire = encode(event, attempt=3, first_enqueued=first, extra_properties={"traceparent": "00-abc"})
    assert wire.message_id == "order-1001#3"
    assert wire.subject == "order.confirmation"
    assert wire.content_type == CONTENT_TYPE
    assert wire.application_properties[PROP_SCHEMA] == SCHEMA
    assert wire.application_properties[PROP_ATTEMPT] == 3
    assert wire.application_properties["traceparent"] == "00-abc"
    sdk = to_servicebus_message(wire, send_at=first)
    assert sdk.message_id == "order-1001#3"
    assert sdk.scheduled_enqueue_time_utc == first
    decoded = delivery_from(sdk).decode()
    assert decoded.attempt == 3
    assert decoded.first_enqueued == first
    assert decoded.application_properties[PROP_FIRST_ENQUEUED] == "2026-11-27T10:00:00.000000Z"


def test_first_attempt_uses_the_event_id_so_duplicate_detection_drops_resends() -> None:
    assert retry_message_id("order-1", 0) == "order-1"
    assert retry_message_id("order-1", 2) == "order-1#2"
    # a replayed generation's retries never collide with the first generation's
    assert retry_message_id("order-1", 0, 1) == "order-1#r1"
    assert retry_message_id("order-1", 1, 1) == "order-1#r1#1"
    ids = {
        retry_message_id("order-1", attempt, generation) for attempt in range(5) for generation in range(3)
    }
    assert len(ids) == 15
    assert encode(parse_event(_valid())).message_id == "order-1001"


def test_display_name_forms_are_equivalent() -> None:
    as_text = parse_event(_valid(to=['"Doe, Jane" <jane@example.com>']))
    as_object = parse_event(_valid(to=[{"address": "jane@example.com", "display_name": "Doe, Jane"}]))
    assert as_text == as_object
    assert as_text.to[0].formatted() == '"Doe, Jane" <jane@example.com>'


def test_received_properties_with_bytes_keys_decode() -> None:
    wire = encode(parse_event(_valid()), attempt=1)
    raw = {
        k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in wire.application_properties.items()
    }
    assert (
        decode(
            [wire.body], content_type="application/json; charset=utf-8", application_properties=raw
        ).attempt
        == 1
    )


# --- rejection ------------------------------------------------------------------------------------

_INVALID: list[tuple[str, dict[str, Any]]] = [
    ("id", {"id": ""}),
    ("id", {"id": "has space"}),
    ("id", {"id": "a#1"}),
    ("id", {"id": "x" * 101}),
    ("type", {"type": "Order.Confirmation"}),
    ("type", {"type": "order..confirmation"}),
    ("tenant", {"tenant": "-bad"}),
    ("to", {"to": []}),
    ("to.0.address", {"to": ["not-an-address"]}),
    ("to.0.address", {"to": ["jane@localhost"]}),
    ("to.0.address", {"to": ["jane@exa mple.com"]}),
    ("to.0.address", {"to": ["a" * 65 + "@example.com"]}),
    ("to.0.display_name", {"to": [{"address": "a@example.com", "display_name": "Evil\r\nBcc: x@y.com"}]}),
    ("cc.1.address", {"cc": ["a@example.com", "b@"]}),
    ("bcc.0.address", {"bcc": ["@example.com"]}),
    ("reply_to.0.address", {"reply_to": ["nobody"]}),
    ("sender", {"sender": "Orders@contoso.com"}),
    ("locale", {"locale": "english"}),
    ("not_after", {"not_after": "2026-12-01T00:00:00"}),
    (
        "attachments.0.content_base64",
        {
            "attachments": [
                {"name": "a.pdf", "content_type": "application/pdf", "content_base64": "not base64!"}
            ]
        },
    ),
    (
        "attachments.0.content_type",
        {"attachments": [{"name": "a.pdf", "content_type": "pdf", "content_base64": "AA=="}]},
    ),
    (
        "attachments.0.name",
        {"attachments": [{"name": "../etc/passwd", "content_type": "text/plain", "content_base64": "AA=="}]},
    ),
    ("headers", {"headers": {"Subject": "override"}}),
    ("headers", {"headers": {"X-Custom": "line\r\nBcc: evil@example.com"}}),
    ("headers", {"headers": {"x-ms-acsemail-validate-message-id": "true"}}),
    ("headers", {"headers": {"Bad Name": "v"}}),
    ("data", {"data": []}),
    ("schema", {"schema": "postbus.notification/2"}),
    ("surprise", {"surprise": 1}),
]


@pytest.mark.parametrize(
    ("field", "overrides"), _INVALID, ids=[f"{f}-{i}" for i, (f, _) in enumerate(_INVALID)]
)
def test_every_invalid_field_is_rejected_with_its_name(field: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_valid(**overrides))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}:")


@pytest.mark.parametrize(("field", "overrides"), _INVALID[:10])
def test_invalid_fields_are_rejected_on_the_wire_too(field: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(json.dumps(_valid(**overrides)))
    assert caught.value.field == field


def test_recipient_limit_counts_to_cc_and_bcc_together() -> None:
    many = [f"user{i}@example.com" for i in range(MAX_RECIPIENTS)]
    parse_event(_valid(to=many[:30], cc=many[30:40], bcc=many[40:]))
    with pytest.raises(InvalidEvent, match=r"to/cc/bcc: 51 recipients"):
        parse_event(_valid(to=many[:30], cc=many[30:40], bcc=[*many[40:], "one.more@example.com"]))


def test_attachments_over_the_request_limit_are_rejected() -> None:
    big = "A" * (10 * 1024 * 1024 + 4)
    with pytest.raises(InvalidEvent, match=r"^attachments: .* ACS accepts at most"):
        parse_event(
            _valid(
                attachments=[{"name": "big.pdf", "content_type": "application/pdf", "content_base64": big}]
            )
        )


def test_duplicate_content_ids_are_rejected() -> None:
    inline = {"name": "logo.png", "content_type": "image/png", "content_base64": "AA==", "content_id": "logo"}
    with pytest.raises(InvalidEvent, match="content_id values must be unique"):
        parse_event(_valid(attachments=[inline, {**inline, "name": "logo2.png"}]))


def test_wire_is_strict_about_types() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(json.dumps(_valid(tenant=7)))
    assert caught.value.field == "tenant"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"{not json", "application/json", "body is not valid JSON"),
        (b"\xff\xfe", "application/json", "body is not valid JSON"),
        (b"[]", "application/json", "Input should be"),
        (b"{}", "text/plain", "content_type: expected application/json"),
        (b"{}", None, "content_type: expected application/json"),
    ],
)
def test_undecodable_messages_raise_invalid_event(
    body: bytes, content_type: str | None, expected: str
) -> None:
    with pytest.raises(InvalidEvent, match=expected):
        decode(body, content_type=content_type, application_properties={})


def test_malformed_delivery_metadata_is_invalid() -> None:
    wire = encode(parse_event(_valid()))
    with pytest.raises(InvalidEvent, match=PROP_ATTEMPT):
        decode(wire.body, content_type=CONTENT_TYPE, application_properties={PROP_ATTEMPT: "three"})


def test_events_are_immutable() -> None:
    event = parse_event(_valid())
    with pytest.raises(ValueError, match="frozen"):
        event.id = "other"  # type: ignore[misc]
    assert isinstance(event, NotificationEvent)
