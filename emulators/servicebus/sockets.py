"""The reactor's socket I/O, with a :class:`~emulators.servicebus.frames.FrameRewriter` per client.

proton's python reactor moves bytes between sockets and transports in its global ``IOHandler``
(``recv`` -> ``Transport.push``, ``Transport.peek``/``pop`` -> ``send``). This subclass does the same
for the connections the emulator accepts, passing each direction through that connection's
rewriter. Two buffers make that safe: ``inbox`` holds rewritten input the transport has no room
for yet, and ``outbox`` holds rewritten output the socket did not take. A transport whose outbox
is not empty when proton closes it keeps its socket until the last frame (typically the
``close`` that says why) has left, or for at most :data:`_LINGER_SECONDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from proton import ProtonException
from proton.handlers import IOHandler

from postbus.emulators.servicebus.frames import FrameRewriter

__all__ = ["RewritingIO"]

log = structlog.get_logger(__name__)

_READ_SIZE = 64 * 1024
_INBOX_LIMIT = 4 * 1024 * 1024  # stop reading from a client proton is not keeping up with
_LINGER_SECONDS = 5.0


@dataclass(eq=False, slots=True)
class _Wire:
    rewriter: FrameRewriter
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    lingering: bool = False


class RewritingIO(IOHandler):
    """proton's ``IOHandler``, rewriting the frames of every accepted connection.

    Install it before the container runs: ``container.global_handler = RewritingIO(max_frame_size=...)``.
    """

    def __init__(self, *, max_frame_size: int) -> None:
        super().__init__()
        self._max_frame_size = max_frame_size
        self._wires: dict[Any, _Wire] = {}  # by selectable

    # ------------------------------------------------------------------ lifecycle

    def on_connection_bound(self, event: Any) -> None:
        super().on_connection_bound(event)
        selectable = getattr(event.transport, "_selectable", None)
        if event.connection._acceptor is not None and selectable is not None:
            self._wires[selectable] = _Wire(FrameRewriter(max_frame_size=self._max_frame_size))

    def on_selectable_final(self, event: Any) -> None:
        self._wires.pop(event.selectable, None)
        super().on_selectable_final(event)

    def on_transport_closed(self, event: Any) -> None:
        transport = event.transport
        selectable: Any = getattr(transport, "_selectable", None)
        wire = self._wires.get(selectable)
        if selectable is not None and wire is not None and wire.outbox and not selectable.is_terminal:
            self._send(selectable, wire)
            if wire.outbox:  # the socket is full: keep it until the rest (the close frame) is out
                wire.lingering = True
                selectable._transport = None
                transport._selectable = None
                selectable.reading = False
                selectable.writing = True
                selectable.deadline = selectable._reactor.now + _LINGER_SECONDS
                selectable.update()
                transport.unbind()
                return
        super().on_transport_closed(event)

    # ------------------------------------------------------------------ I/O

    def on_selectable_readable(self, event: Any) -> None:
        selectable = event.selectable
        wire = self._wires.get(selectable)
        transport = selectable._transport
        if wire is None or transport is None:
            super().on_selectable_readable(event)
            return
        try:
            data = selectable.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError as exc:
            if not isinstance(exc, ConnectionResetError):  # a vanished client is logged as lost
                log.info("servicebus.socket_error", operation="recv", error=str(exc))
            transport.close_tail()
            self.update(transport, selectable, selectable._reactor.now)
            return
        if data == b"":  # end of stream: proton reports an abort, and the client may still read
            self._feed(transport, wire)
            transport.close_tail()
            self.update(transport, selectable, selectable._reactor.now)
            return
        if data:
            self._feed(transport, wire, wire.rewriter.inbound(data))
        self.update(transport, selectable, selectable._reactor.now)

    def on_selectable_writable(self, event: Any) -> None:
        selectable = event.selectable
        wire = self._wires.get(selectable)
        if wire is None:
            super().on_selectable_writable(event)
            return
        transport = selectable._transport
        if transport is not None:
            pending = transport.pending()
            if pending > 0:
                rewritten = wire.rewriter.outbound(transport.peek(pending) or b"")
                transport.pop(pending)
                if wire.outbox:
                    wire.outbox += rewritten
                else:  # the usual case: send it straight away, keep only what the socket refuses
                    wire.outbox += rewritten[self._send_now(selectable, wire, rewritten) :]
        self._send(selectable, wire)
        if wire.lingering:
            if not wire.outbox:
                self._terminate(selectable)
            return
        if transport is not None:
            self.update(transport, selectable, selectable._reactor.now)

    def on_selectable_expired(self, event: Any) -> None:
        selectable = event.selectable
        wire = self._wires.get(selectable)
        if wire is not None and wire.lingering:
            self._terminate(selectable)
            return
        if selectable._transport is not None:
            super().on_selectable_expired(event)

    def update(self, transport: Any, selectable: Any, now: float) -> None:  # type: ignore[override]
        wire = self._wires.get(selectable)
        if wire is not None and not selectable.is_terminal:
            self._feed(transport, wire)
        IOHandler.update(transport, selectable, now)
        if wire is not None and not selectable.is_terminal:
            writing = selectable.writing or bool(wire.outbox)
            reading = selectable.reading and len(wire.inbox) <= _INBOX_LIMIT
            if (writing, reading) != (selectable.writing, selectable.reading):
                selectable.writing, selectable.reading = writing, reading
                selectable.update()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _feed(transport: Any, wire: _Wire, data: bytes = b"") -> None:
        """Push held and new rewritten input into the transport as far as it has room."""
        inbox = wire.inbox
        try:
            while inbox:
                capacity = transport.capacity()
                if capacity <= 0:
                    inbox += data
                    return
                chunk = bytes(inbox[:capacity])
                transport.push(chunk)
                del inbox[: len(chunk)]
            if data:  # the usual case: nothing held back, so no copy into the inbox
                capacity = transport.capacity()
                if capacity >= len(data):
                    transport.push(data)
                else:
                    transport.push(data[: max(capacity, 0)])
                    inbox += data[max(capacity, 0) :]
        except ProtonException:
            inbox.clear()  # the transport is closed for input; proton has said why

    @classmethod
    def _send(cls, selectable: Any, wire: _Wire) -> None:
        if wire.outbox:
            del wire.outbox[: cls._send_now(selectable, wire, wire.outbox)]

    @staticmethod
    def _send_now(selectable: Any, wire: _Wire, data: bytes | bytearray) -> int:
        """Bytes of ``data`` the socket took; on a socket error, all of them (they cannot go)."""
        try:
            return int(selectable.send(data))
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            if not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                log.info("servicebus.socket_error", operation="send", error=str(exc))
            wire.outbox.clear()
            transport = selectable._transport
            if transport is not None:
                transport.close_head()
            return len(data)

    @staticmethod
    def _terminate(selectable: Any) -> None:
        selectable.terminate()
        selectable.update()
