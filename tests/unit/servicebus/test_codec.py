"""Message bytes: sections kept byte-exact, batches unpacked, annotations produced."""

from __future__ import annotations

import uuid

import pytest
from proton import Message, symbol

from postbus.emulators.servicebus.codec import (
    CodecError,
    decode_value,
    encode_delivery,
    parse_message,
    split_batch,
)


def _batch(*messages: Message, envelope_id: str | None = None) -> bytes:
    """What the SDK sends for a list: an envelope whose data sections are whole encoded messages."""
    envelope = Message(id=envelope_id if envelope_id is not None else messages[0].id)
    envelope.body = b""
    raw = Message(id=envelope.id).encode()
    # proton cannot emit several data sections, so append them by hand like pyamqp does.
    raw = raw.split(b"\x00Sw")[0].split(b"\x00Su")[0]
    for message in messages:
        inner = message.encode()
        raw += b"\x00Su" + (b"\xb0" + len(inner).to_bytes(4, "big")) + inner
    return raw


def test_parse_keeps_properties_application_properties_and_body_byte_exact() -> None:
    message = Message(id="m-1", subject="s", properties={"k": "v", "n": 3}, body=b"payload", ttl=5)
    raw = message.encode()
    parsed = parse_message(raw)
    assert parsed.message_id == "m-1"
    assert parsed.ttl_ms == 5000
    assert raw.endswith(parsed.body)
    assert parsed.body.startswith(b"\x00Ss")


def test_broker_annotations_from_the_sender_are_dropped_and_others_kept() -> None:
    message = Message(
        id="m",
        annotations={
            symbol("x-opt-sequence-number"): 99,
            symbol("x-opt-scheduled-enqueue-time"): 1234,
            symbol("x-opt-partition-key"): "p",
        },
        body="b",
    )
    parsed = parse_message(message.encode())
    assert parsed.scheduled_enqueue_ms == 1234
    out = Message()
    out.decode(
        encode_delivery(
            body=parsed.body,
            annotations=parsed.annotations,
            seq=7,
            enqueued_ms=1000,
            delivery_count=0,
            ttl_ms=None,
        )
    )
    assert out.annotations == {
        "x-opt-scheduled-enqueue-time": 1234,
        "x-opt-partition-key": "p",
        "x-opt-sequence-number": 7,
        "x-opt-enqueued-time": 1000,
    }


def test_encode_delivery_header_annotations_and_dead_letter_properties() -> None:
    parsed = parse_message(Message(id="m", properties={"k": "v"}, body=b"x").encode())
    out = Message()
    out.decode(
        encode_delivery(
            body=parsed.body,
            annotations=parsed.annotations,
            seq=300,
            enqueued_ms=1,
            delivery_count=4,
            ttl_ms=60_000,
            locked_until_ms=2,
            state=1,
            dead_letter_source="q1",
            dead_letter_reason="why",
            dead_letter_description="because",
        )
    )
    assert out.delivery_count == 4
    assert out.ttl == 60
    assert out.durable
    assert out.annotations["x-opt-locked-until"] == 2
    assert out.annotations["x-opt-message-state"] == 1
    assert out.annotations["x-opt-deadletter-source"] == "q1"
    assert out.properties == {"k": "v", "DeadLetterReason": "why", "DeadLetterErrorDescription": "because"}
    assert bytes(out.body) == b"x"


def test_dead_letter_properties_are_added_when_there_were_none_and_replaced_when_repeated() -> None:
    parsed = parse_message(Message(id="m", body=b"x").encode())
    once = encode_delivery(
        body=parsed.body,
        annotations=b"",
        seq=1,
        enqueued_ms=1,
        delivery_count=0,
        ttl_ms=None,
        dead_letter_reason="a",
    )
    again = parse_message(once)
    twice = encode_delivery(
        body=again.body,
        annotations=b"",
        seq=1,
        enqueued_ms=1,
        delivery_count=0,
        ttl_ms=None,
        dead_letter_reason="b",
    )
    out = Message()
    out.decode(twice)
    assert out.properties == {"DeadLetterReason": "b"}
    assert out.id == "m"


def test_batches_are_split_into_their_messages() -> None:
    inner = [Message(id=f"id-{i}", body=f"m{i}".encode(), properties={"i": i}) for i in range(3)]
    parsed = parse_message(_batch(*inner))
    messages = split_batch(parsed)
    assert messages is not None
    assert [m.message_id for m in messages] == ["id-0", "id-1", "id-2"]


def test_a_single_message_is_not_mistaken_for_a_batch() -> None:
    plain = parse_message(Message(id="x", body=b"just bytes").encode())
    assert split_batch(plain) is None
    with_app_props = parse_message(
        Message(id="x", properties={"a": 1}, body=Message(id="x").encode()).encode()
    )
    assert split_batch(with_app_props) is None
    # a body that happens to be an encoded message, but whose id differs from the envelope's
    nested = parse_message(_batch(Message(id="inner", body=b"x"), envelope_id="outer"))
    assert split_batch(nested) is None


def test_decode_value_covers_the_types_the_sdk_sends() -> None:
    token = uuid.uuid4()
    raw = Message(
        body={"s": "x", "n": -5, "big": 2**40, "f": 1.5, "u": token, "b": b"\x00", "l": [1, None, True]}
    ).encode()
    # skip to the amqp-value section and decode it
    value, _ = decode_value(raw, raw.index(b"\x00Sw") + 3)
    assert value == {
        "s": "x",
        "n": -5,
        "big": 2**40,
        "f": 1.5,
        "u": token,
        "b": b"\x00",
        "l": [1, None, True],
    }


@pytest.mark.parametrize("raw", [b"\x01\x02", b"\x00Sp\xc0\x05", b"\x00S\x99\x40"])
def test_malformed_messages_raise_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        parse_message(raw)
