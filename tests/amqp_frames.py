"""Hand-built AMQP 1.0 frames, for tests that speak to the Service Bus emulator below the SDK."""

from __future__ import annotations

import struct
from typing import Any

from postbus.emulators.servicebus.codec import decode_value

__all__ = [
    "AMQP_HEADER",
    "ATTACH",
    "BEGIN",
    "CLOSE",
    "DETACH",
    "DISPOSITION",
    "END",
    "FALSE",
    "FLOW",
    "NULL",
    "OPEN",
    "SASL_HEADER",
    "TRANSFER",
    "TRUE",
    "described_list",
    "frame",
    "parse",
    "sasl_init",
    "uint",
    "ushort",
]

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
NULL, TRUE, FALSE = b"\x40", b"\x41", b"\x42"


def uint(value: int) -> bytes:
    return b"\x70" + struct.pack(">I", value) if value > 255 else b"\x52" + bytes([value])


def ushort(value: int) -> bytes:
    return b"\x60" + struct.pack(">H", value)


def described_list(code: int, *fields: bytes) -> bytes:
    body = b"".join(fields)
    return b"\x00\x53" + bytes([code]) + b"\xc0" + bytes([len(body) + 1, len(fields)]) + body


def frame(code: int, *fields: bytes, channel: int = 0, payload: bytes = b"", frame_type: int = 0) -> bytes:
    body = described_list(code, *fields) + payload
    return struct.pack(">IBBH", 8 + len(body), 2, frame_type, channel) + body


def sasl_init() -> bytes:
    """sasl-init for ANONYMOUS, the only mechanism the SDK uses."""
    return frame(0x41, b"\xa3\x09ANONYMOUS", b"\xa0\x00", frame_type=1)


def parse(stream: bytes) -> list[tuple[int, int, list[Any]]]:
    """(channel, performative code, fields) of every frame; headers and empty frames are skipped."""
    frames, pos = [], 0
    while pos < len(stream):
        if stream[pos : pos + 4] == b"AMQP":
            pos += 8
            continue
        size, doff, _, channel = struct.unpack_from(">IBBH", stream, pos)
        body = pos + doff * 4
        if size > doff * 4:
            assert stream[body : body + 2] == b"\x00\x53", "a described performative"
            fields, _ = decode_value(stream, body + 3)
            frames.append((channel, stream[body + 2], fields))
        pos += size
    return frames
