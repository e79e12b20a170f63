"""Below the SDK: what the emulator puts on the wire when it closes a connection, and what it
tolerates because Azure does. A raw socket speaks AMQP so the test can break the protocol."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.emulators.servicebus.codec import encode_str
from tests.amqp_frames import (
    AMQP_HEADER,
    ATTACH,
    BEGIN,
    CLOSE,
    DETACH,
    DISPOSITION,
    END,
    FALSE,
    NULL,
    OPEN,
    SASL_HEADER,
    TRANSFER,
    described_list,
    frame,
    parse,
    sasl_init,
    uint,
)

pytestmark = pytest.mark.timeout(30)

UBYTE_0 = b"\x50\x00"


def _open_session(sb: ServiceBusEmulator) -> socket.socket:
    sock = socket.create_connection((sb.host, sb.port), timeout=10)
    sock.sendall(
        SASL_HEADER
        + sasl_init()
        + AMQP_HEADER
        + frame(OPEN, encode_str("raw-client"), encode_str("localhost"))
        + frame(BEGIN, NULL, uint(0), uint(100), uint(100), channel=1)
    )
    _read_until(sock, BEGIN)  # as the SDK does: nothing more before the session is mapped
    return sock


def _read_until(sock: socket.socket, code: int) -> list[tuple[int, int, list[Any]]]:
    """Frames received until one with performative ``code`` (the connection must stay open)."""
    received = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed: {parse(received)}"
        received += chunk
        frames = parse(received)
        if any(frame_code == code for _, frame_code, _ in frames):
            return frames


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _attach_sender(handle: int, queue: str) -> bytes:
    """A sending link from the client to ``queue``, unsettled."""
    source = described_list(0x28, encode_str(f"sender-link-{handle}"))
    target = described_list(0x29, encode_str(queue))
    name = encode_str(f"link-{handle}")
    return frame(ATTACH, name, uint(handle), FALSE, UBYTE_0, UBYTE_0, source, target, channel=1)


def _message_transfer(handle: int, delivery_id: int) -> bytes:
    tag = b"\xa0\x01" + bytes([delivery_id])
    body = b"\x00\x53\x77\xa1\x02hi"  # amqp-value "hi"
    return frame(
        TRANSFER, uint(handle), uint(delivery_id), tag, uint(0), FALSE, FALSE, channel=1, payload=body
    )


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def test_a_protocol_error_closes_with_a_complete_error_and_one_log_line(
    emulator: ServiceBusEmulator, logs: list[dict[str, Any]]
) -> None:
    # Given a session, when the client transfers on a handle it never attached
    sock = _open_session(emulator)
    with sock:
        transfer = frame(TRANSFER, uint(7), uint(0), b"\xa0\x01\x00", uint(0), FALSE, FALSE, channel=1)
        sock.sendall(transfer)
        received = _read_until_closed(sock)
    # Then the close carries condition, description and an info map (the SDK reads error[2])
    (close,) = [fields for _, code, fields in parse(received) if code == CLOSE]
    condition, description, info = close[0]
    assert condition == "amqp:invalid-field"
    assert description == "no such handle: 7"
    assert isinstance(info, dict)
    assert "com.microsoft:tracking-id" in info
    # And the emulator says once which connection it closed and why
    lines = [line for line in logs if line["event"] == "servicebus.connection_closed"]
    assert len(lines) == 1
    assert lines[0]["reason"] == "amqp:invalid-field"
    assert lines[0]["description"] == "no such handle: 7"
    assert lines[0]["client"] == "raw-client"
    assert lines[0]["peer"].startswith("127.0.0.1:")


def test_a_detach_after_the_session_ended_is_ignored_as_azure_ignores_it(
    emulator: ServiceBusEmulator, logs: list[dict[str, Any]]
) -> None:
    sock = _open_session(emulator)
    with sock:
        # The sync SDK's close: end the session, then detach a link that was on it
        sock.sendall(
            _attach_sender(4, "orders") + frame(END, channel=1) + frame(DETACH, uint(4), FALSE, channel=1)
        )
        sock.sendall(frame(CLOSE))
        received = _read_until_closed(sock)
    closes = [fields for _, code, fields in parse(received) if code == CLOSE]
    assert closes == [[]]  # our close answered without an error
    assert [line for line in logs if line["event"] == "servicebus.connection_closed"] == []


def test_a_client_that_vanishes_is_logged_as_lost_not_closed(
    emulator: ServiceBusEmulator, logs: list[dict[str, Any]], wait_until: Callable[..., None]
) -> None:
    sock = _open_session(emulator)
    sock.sendall(_attach_sender(1, "orders"))
    _read_until(sock, ATTACH)
    sock.close()
    wait_until(
        lambda: any(line["event"] == "servicebus.connection_lost" for line in logs), what="the log line"
    )
    assert [line for line in logs if line["event"] == "servicebus.connection_closed"] == []


def test_transfers_out_of_order_are_accepted_and_settled_by_the_clients_ids(
    emulator: ServiceBusEmulator, logs: list[dict[str, Any]]
) -> None:
    sock = _open_session(emulator)
    with sock:
        sock.sendall(_attach_sender(1, "orders"))
        _read_until(sock, ATTACH)
        # delivery-ids 2, 0, 1: proton alone closes the connection at the second transfer
        sock.sendall(b"".join(_message_transfer(1, delivery_id) for delivery_id in (2, 0, 1)))
        received, settled = b"", set()
        while settled != {0, 1, 2}:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed: {parse(received)}"
            received += chunk
            for _, code, fields in parse(received):
                if code == DISPOSITION and fields[0] is True:  # role=receiver: settles what we sent
                    last = fields[2] if len(fields) > 2 and fields[2] is not None else fields[1]
                    settled |= set(range(fields[1], last + 1))
        sock.sendall(frame(CLOSE))
        _read_until_closed(sock)
    assert emulator.counts("orders").active == 3
    assert [line for line in logs if line["event"] == "servicebus.connection_closed"] == []
