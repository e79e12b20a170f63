"""AMQP 1.0 message bytes: split into sections, unpack batches, build what receivers get.

The hot path never re-encodes what the sender wrote: properties, application-properties, body and
footer are kept as one raw byte string and sent back byte-exact. Only the header (delivery count,
ttl) and the message-annotations (sequence number, enqueued time, locked-until ...) are produced
per delivery, by hand, which is much cheaper than a round trip through ``proton.Message``.

Batches: proton 0.40 does not expose a delivery's message-format, so a Service Bus batch
(format 0x80013700) is recognised by its shape: an envelope of only properties/annotations and
data sections, each of which is itself a complete AMQP message, where the envelope's message-id
is the first inner message's (``set_batch_envelope_properties`` in the SDK).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CodecError",
    "ParsedMessage",
    "decode_value",
    "encode_delivery",
    "encode_str",
    "encode_symbol",
    "parse_message",
    "skip_value",
    "split_batch",
]

_HEADER = 0x70
_DELIVERY_ANNOTATIONS = 0x71
_MESSAGE_ANNOTATIONS = 0x72
_PROPERTIES = 0x73
_APPLICATION_PROPERTIES = 0x74
_DATA = 0x75
_FOOTER = 0x78

# Annotations the broker owns: a sender's (or a re-sent received message's) copies are dropped.
_BROKER_ANNOTATIONS = frozenset(
    {
        "x-opt-sequence-number",
        "x-opt-enqueued-time",
        "x-opt-locked-until",
        "x-opt-message-state",
        "x-opt-deadletter-source",
        "x-opt-enqueue-sequence-number",
        "x-opt-lock-token",
    }
)
_SCHEDULED_ENQUEUE_TIME = "x-opt-scheduled-enqueue-time"

_FIXED_WIDTH = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}
_u8 = struct.Struct(">B")
_u32 = struct.Struct(">I")
_i64 = struct.Struct(">q")


class CodecError(ValueError):
    """The bytes are not a well-formed AMQP message."""


def skip_value(buf: bytes, pos: int) -> int:
    """Position just after the AMQP value starting at ``pos``."""
    code = buf[pos]
    pos += 1
    if code == 0x00:  # described: descriptor, then the value
        return skip_value(buf, skip_value(buf, pos))
    width = _FIXED_WIDTH.get(code >> 4)
    if width is not None:
        return pos + width
    if code >> 4 in (0xA, 0xC, 0xE):
        return pos + 1 + buf[pos]
    if code >> 4 in (0xB, 0xD, 0xF):
        return pos + 4 + int(_u32.unpack_from(buf, pos)[0])
    raise CodecError(f"unknown AMQP format code 0x{code:02x}")


def _compound(buf: bytes, pos: int, code: int) -> tuple[int, int, int]:
    """(count, first element position, end) of a list/map."""
    if code in (0xC0, 0xC1):
        size, count = buf[pos], buf[pos + 1]
        return count, pos + 2, pos + 1 + size
    size, count = _u32.unpack_from(buf, pos)[0], _u32.unpack_from(buf, pos + 4)[0]
    return count, pos + 8, pos + 4 + size


def decode_value(buf: bytes, pos: int = 0) -> tuple[Any, int]:  # noqa: C901 - one branch per type
    """Decode one AMQP value; symbols decode to ``str``, timestamps to int milliseconds."""
    code = buf[pos]
    pos += 1
    if code == 0x40:
        return None, pos
    if code in (0x41, 0x42):
        return code == 0x41, pos
    if code in (0x43, 0x44):
        return 0, pos
    if code == 0x45:
        return [], pos
    if code == 0x56:
        return buf[pos] == 1, pos + 1
    if code in (0x50, 0x52, 0x53):
        return buf[pos], pos + 1
    if code in (0x51, 0x54, 0x55):
        return struct.unpack_from(">b", buf, pos)[0], pos + 1
    if code in (0x60, 0x61):
        return struct.unpack_from(">H" if code == 0x60 else ">h", buf, pos)[0], pos + 2
    if code in (0x70, 0x71):
        return struct.unpack_from(">I" if code == 0x70 else ">i", buf, pos)[0], pos + 4
    if code in (0x80, 0x81, 0x83):
        return struct.unpack_from(">Q" if code == 0x80 else ">q", buf, pos)[0], pos + 8
    if code == 0x72:
        return struct.unpack_from(">f", buf, pos)[0], pos + 4
    if code == 0x82:
        return struct.unpack_from(">d", buf, pos)[0], pos + 8
    if code == 0x98:
        return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16
    if code in (0xA0, 0xA1, 0xA3, 0xB0, 0xB1, 0xB3):
        if code >> 4 == 0xA:
            size, pos = buf[pos], pos + 1
        else:
            size, pos = _u32.unpack_from(buf, pos)[0], pos + 4
        raw = bytes(buf[pos : pos + size])
        return (raw if code in (0xA0, 0xB0) else raw.decode("utf-8")), pos + size
    if code in (0xC0, 0xD0, 0xC1, 0xD1):
        count, item, end = _compound(buf, pos, code)
        items = []
        for _ in range(count):
            value, item = decode_value(buf, item)
            items.append(value)
        if code in (0xC0, 0xD0):
            return items, end
        return dict(zip(items[::2], items[1::2], strict=True)), end
    if code == 0x00:
        _, pos = decode_value(buf, pos)
        return decode_value(buf, pos)
    end = skip_value(buf, pos - 1)
    return None, end  # arrays and exotic types are never needed by the broker


# ---------------------------------------------------------------------------- encoding helpers


def encode_symbol(value: str) -> bytes:
    raw = value.encode("ascii")
    return b"\xa3" + _u8.pack(len(raw)) + raw if len(raw) < 256 else b"\xb3" + _u32.pack(len(raw)) + raw


def encode_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"\xa1" + _u8.pack(len(raw)) + raw if len(raw) < 256 else b"\xb1" + _u32.pack(len(raw)) + raw


def _encode_map(count: int, body: bytes) -> bytes:
    """A map of ``count`` keys+values (so 2x elements) whose encoded pairs are ``body``."""
    if len(body) + 1 < 256 and count * 2 < 256:
        return b"\xc1" + _u8.pack(len(body) + 1) + _u8.pack(count * 2) + body
    return b"\xd1" + _u32.pack(len(body) + 4) + _u32.pack(count * 2) + body


def _encode_uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return b"\x52" + _u8.pack(value)
    return b"\x70" + _u32.pack(value)


_SEQ_KEY = encode_symbol("x-opt-sequence-number") + b"\x81"
_ENQ_KEY = encode_symbol("x-opt-enqueued-time") + b"\x83"
_LOCK_KEY = encode_symbol("x-opt-locked-until") + b"\x83"
_STATE_KEY = encode_symbol("x-opt-message-state") + b"\x71"
_DLQ_SOURCE_KEY = encode_symbol("x-opt-deadletter-source")
_DLQ_REASON_KEY = encode_str("DeadLetterReason")
_DLQ_DESCRIPTION_KEY = encode_str("DeadLetterErrorDescription")


# ---------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class ParsedMessage:
    """What the broker needs from an incoming message; ``body`` is the raw tail from properties on."""

    body: bytes
    annotations: bytes  # count byte + the kept raw key/value pairs (b"" when none)
    message_id: str | None
    ttl_ms: int | None
    scheduled_enqueue_ms: int | None
    data_sections: list[bytes]
    has_application_properties: bool
    has_header: bool


def parse_message(buf: bytes) -> ParsedMessage:
    """Split an encoded message into what the queue stores (raises :class:`CodecError`)."""
    try:
        return _parse(buf)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed AMQP message: {exc}") from exc


def _parse(buf: bytes) -> ParsedMessage:
    pos, n = 0, len(buf)
    ttl_ms: int | None = None
    scheduled: int | None = None
    message_id: str | None = None
    annotations = b""
    body_start = -1
    data_sections: list[bytes] = []
    has_app = has_header = False
    while pos < n:
        if buf[pos] != 0x00:
            raise CodecError("expected a section descriptor")
        descriptor, value_pos = decode_value(buf, pos + 1)
        end = skip_value(buf, value_pos)
        if end > n:
            raise CodecError("truncated section")
        if descriptor == _HEADER:
            has_header = True
            fields, _ = decode_value(buf, value_pos)
            # ttl 0 is "not set" for the SDK (it truncates sub-second TTLs to 0), not "already expired".
            if isinstance(fields, list) and len(fields) > 2 and fields[2]:
                ttl_ms = int(fields[2])
        elif descriptor == _MESSAGE_ANNOTATIONS:
            annotations, scheduled = _filter_annotations(buf, value_pos)
        elif descriptor == _DELIVERY_ANNOTATIONS:
            pass  # hop-by-hop: never stored
        elif _PROPERTIES <= descriptor <= _FOOTER:
            if body_start < 0:
                body_start = pos
            if descriptor == _PROPERTIES:
                fields, _ = decode_value(buf, value_pos)
                if isinstance(fields, list) and fields and fields[0] is not None:
                    message_id = str(fields[0])
            elif descriptor == _APPLICATION_PROPERTIES:
                has_app = True
            elif descriptor == _DATA:
                data_sections.append(bytes(decode_value(buf, value_pos)[0]))
        else:
            raise CodecError(f"unknown section descriptor {descriptor!r}")
        pos = end
    body = bytes(buf[body_start:]) if body_start >= 0 else b""
    return ParsedMessage(
        body=body,
        annotations=annotations,
        message_id=message_id,
        ttl_ms=ttl_ms,
        scheduled_enqueue_ms=scheduled,
        data_sections=data_sections,
        has_application_properties=has_app,
        has_header=has_header,
    )


def _filter_annotations(buf: bytes, pos: int) -> tuple[bytes, int | None]:
    """Keep the sender's annotation pairs raw (after a count byte), minus the broker-owned keys."""
    code = buf[pos]
    if code not in (0xC1, 0xD1):
        return b"", None
    count, item, _ = _compound(buf, pos + 1, code)
    kept: list[bytes] = []
    scheduled: int | None = None
    for _ in range(count // 2):
        key, value_pos = decode_value(buf, item)
        value_end = skip_value(buf, value_pos)
        if key == _SCHEDULED_ENQUEUE_TIME:
            value, _ = decode_value(buf, value_pos)
            scheduled = int(value) if isinstance(value, int) else None
        if key not in _BROKER_ANNOTATIONS:
            kept.append(bytes(buf[item:value_end]))
        item = value_end
    if not kept:
        return b"", scheduled
    if len(kept) > 255:
        raise CodecError("too many message annotations")
    return _u8.pack(len(kept)) + b"".join(kept), scheduled


def split_batch(parsed: ParsedMessage) -> list[ParsedMessage] | None:
    """The inner messages if ``parsed`` looks like a Service Bus batch envelope, else ``None``."""
    if parsed.has_application_properties or not parsed.data_sections:
        return None
    inner: list[ParsedMessage] = []
    for section in parsed.data_sections:
        if len(section) < 3 or section[0] != 0x00 or section[1] != 0x53 or not 0x70 <= section[2] <= 0x78:
            return None
        try:
            inner.append(_parse(section))
        except (CodecError, IndexError, struct.error, UnicodeDecodeError):
            return None
    if inner[0].message_id != parsed.message_id:
        return None
    return inner


# ---------------------------------------------------------------------------- delivery encoding


def encode_delivery(
    *,
    body: bytes,
    annotations: bytes,
    seq: int,
    enqueued_ms: int,
    delivery_count: int,
    ttl_ms: int | None,
    locked_until_ms: int | None = None,
    state: int = 0,
    dead_letter_source: str | None = None,
    dead_letter_reason: str | None = None,
    dead_letter_description: str | None = None,
) -> bytes:
    """Header + message-annotations produced now, then the stored tail byte-exact."""
    header_fields = b"\x41\x40" + (b"\x40" if ttl_ms is None else b"\x70" + _u32.pack(ttl_ms))
    header_fields += b"\x42" + _encode_uint(delivery_count)
    header = b"\x00\x53\x70\xc0" + _u8.pack(len(header_fields) + 1) + b"\x05" + header_fields
    pairs = [annotations[1:], _SEQ_KEY, _i64.pack(seq), _ENQ_KEY, _i64.pack(enqueued_ms)]
    count = (annotations[0] if annotations else 0) + 2
    if locked_until_ms is not None:
        pairs += (_LOCK_KEY, _i64.pack(locked_until_ms))
        count += 1
    if state:
        pairs += (_STATE_KEY, struct.pack(">i", state))
        count += 1
    if dead_letter_source is not None:
        pairs += (_DLQ_SOURCE_KEY, encode_str(dead_letter_source))
        count += 1
    message_annotations = b"\x00\x53\x72" + _encode_map(count, b"".join(pairs))
    if dead_letter_reason is not None or dead_letter_description is not None:
        body = _with_dead_letter_properties(body, dead_letter_reason, dead_letter_description)
    return header + message_annotations + body


def _with_dead_letter_properties(body: bytes, reason: str | None, description: str | None) -> bytes:
    """Merge DeadLetterReason/DeadLetterErrorDescription into the application-properties section."""
    extra = [(_DLQ_REASON_KEY, reason), (_DLQ_DESCRIPTION_KEY, description)]
    new_pairs = b"".join(key + encode_str(value) for key, value in extra if value is not None)
    new_count = sum(1 for _, value in extra if value is not None)
    pos, insert_at = 0, 0
    while pos < len(body):
        descriptor, value_pos = decode_value(body, pos + 1)
        end = skip_value(body, value_pos)
        if descriptor == _APPLICATION_PROPERTIES and body[value_pos] in (0xC1, 0xD1):
            count, item, map_end = _compound(body, value_pos + 1, body[value_pos])
            old_pairs = bytearray()
            for _ in range(count // 2):  # drop earlier dead-letter keys, keep the rest raw
                key, key_end = decode_value(body, item)
                value_end = skip_value(body, key_end)
                if key not in ("DeadLetterReason", "DeadLetterErrorDescription"):
                    old_pairs += body[item:value_end]
                else:
                    count -= 2
                item = value_end
            section = b"\x00\x53\x74" + _encode_map(count // 2 + new_count, bytes(old_pairs) + new_pairs)
            return body[:pos] + section + body[map_end:]
        if descriptor == _PROPERTIES:
            insert_at = end
        pos = end
    section = b"\x00\x53\x74" + _encode_map(new_count, new_pairs)
    return body[:insert_at] + section + body[insert_at:]
