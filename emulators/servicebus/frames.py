"""AMQP frames between a client and proton: delivery-id resequencing and complete errors.

Two things Azure's AMQP stack does that proton 0.40's engine does not:

* **Out-of-order delivery-ids.** azure-servicebus's pyamqp client stamps a transfer with its
  session's next delivery-id *before* it awaits the socket (``_outgoing_transfer`` in its session
  module), so two coroutines or threads that send on one connection at once (lock renewals,
  schedule and peek on the ``$management`` link, concurrent ``send_messages``) can put the same id
  on two transfers, or write them out of order. Azure accepts that. proton's engine
  (``pn_do_transfer`` in ``c/src/core/transport.c``) pushes every new incoming delivery onto the
  session's delivery map with the next id in sequence and closes the connection with
  ``amqp:session:invalid-field`` "sequencing error, expected delivery-id N, got M" when a frame's
  id differs; nothing in its API relaxes that check.
* **Complete errors.** proton drops trailing null fields, so an error it generates itself (a
  protocol violation, an idle time-out) goes out as ``[condition, description]``. The SDK reads
  ``error[2]`` of a ``close`` unconditionally and fails with ``IndexError``.

:class:`FrameRewriter` sits on the byte streams between one client socket and its proton
transport. Inbound, it renumbers each new transfer's delivery-id to the next one proton expects
and remembers which client id it replaced (only where the two differ). Outbound, it rewrites the
broker's dispositions back to the ids the client used, splitting a range where the client's ids
are not contiguous, and completes the error of every ``close``, ``end`` and ``detach`` with a
``description`` and an ``info`` map. Everything else passes through byte for byte, and a stream
it cannot parse is passed through unchanged from then on, so proton still judges it.
"""

from __future__ import annotations

import contextlib
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from postbus.emulators.servicebus.codec import CodecError, decode_value, encode_str, encode_symbol, skip_value

__all__ = ["FrameRewriter"]

_HEADER = struct.Struct(">IBBH")  # size, data offset (in 4-byte words), type, channel
_u8 = struct.Struct(">B")
_u32 = struct.Struct(">I")
_PROTOCOL_HEADER = b"AMQP"
_AMQP_FRAME = 0x00
_BEGIN, _ATTACH, _TRANSFER, _DISPOSITION, _DETACH, _END, _CLOSE = 0x11, 0x12, 0x14, 0x15, 0x16, 0x17, 0x18
_ERROR = 0x1D
_INBOUND = frozenset({_BEGIN, _ATTACH, _TRANSFER, _DISPOSITION, _DETACH, _END})  # what each direction
_OUTBOUND = frozenset({_BEGIN, _DISPOSITION, _DETACH, _END, _CLOSE})  # looks at; the rest passes
_NULL = b"\x40"
_ID_MASK = 0xFFFFFFFF  # delivery-ids are RFC-1982 serial numbers
_TRACKING_ID = encode_symbol("com.microsoft:tracking-id")
_MALFORMED = (IndexError, struct.error, CodecError, UnicodeDecodeError, TypeError, ValueError)


@dataclass(slots=True)
class _Session:
    """Delivery-id bookkeeping for one session, keyed by the client's channel."""

    next_id: int | None = None  # the id proton expects next; set by the first transfer
    client_ids: dict[int, int] = field(default_factory=dict)  # our id -> the client's, where they differ
    our_ids: dict[int, int] = field(default_factory=dict)  # the client's id -> ours, where they differ
    partial: dict[int, tuple[int, int]] = field(default_factory=dict)  # handle -> (client id, our id)
    handles: set[int] = field(default_factory=set)  # the client's attached link handles


@dataclass(slots=True)
class _Stream:
    buffer: bytearray = field(default_factory=bytearray)
    passthrough: bool = False


class FrameRewriter:
    """Rewrites one connection's frames in both directions; pure bytes in, bytes out.

    Example::

        rewriter = FrameRewriter(max_frame_size=1024 * 1024)
        transport.push(rewriter.inbound(sock.recv(65536)))  # whole frames only
        sock.sendall(rewriter.outbound(transport.peek(n)))

    A partial frame is held back until the rest arrives.
    """

    def __init__(self, *, max_frame_size: int) -> None:
        self._max_frame_size = max_frame_size
        self._in = _Stream()
        self._out = _Stream()
        self._sessions: dict[int, _Session] = {}  # by the client's channel
        self._client_channel: dict[int, int] = {}  # our channel -> the client's (from our begin)
        self.resequenced = 0  # transfers whose delivery-id was rewritten
        self.ignored = 0  # frames dropped because Azure ignores them

    @property
    def pending_inbound(self) -> int:
        """Bytes of an incomplete inbound frame held back."""
        return len(self._in.buffer)

    def inbound(self, data: bytes) -> bytes:
        """Client to proton: renumber transfers, map sender-role dispositions to our ids."""
        return self._process(self._in, data, self._inbound_wanted, self._inbound_frame)

    def outbound(self, data: bytes) -> bytes:
        """proton to client: map dispositions back to the client's ids, complete errors."""
        return self._process(self._out, data, self._outbound_wanted, self._outbound_frame)

    # ------------------------------------------------------------------ framing

    def _process(
        self,
        stream: _Stream,
        data: bytes,
        wanted: Callable[[int | None, int], bool],
        rewrite: Callable[[bytes, int, int], bytes],
    ) -> bytes:
        if stream.passthrough:
            return data
        if stream.buffer:  # the rest of a frame held back last time comes first
            stream.buffer += data
            data = bytes(stream.buffer)
            stream.buffer.clear()
        view = memoryview(data)
        out: list[bytes | memoryview] = []
        pos, end = 0, len(data)
        while end - pos >= 8:
            if data[pos : pos + 4] == _PROTOCOL_HEADER:
                out.append(view[pos : pos + 8])
                pos += 8
                continue
            size, doff, frame_type, channel = _HEADER.unpack_from(data, pos)
            if size < 8 or doff < 2 or doff * 4 > size or size > self._max_frame_size:
                stream.passthrough = True  # not ours to judge: proton closes with a framing error
                out.append(view[pos:end])
                pos = end
                break
            if end - pos < size:
                break
            if frame_type == _AMQP_FRAME and wanted(_code(data, pos + doff * 4, pos + size), channel):
                frame = bytes(view[pos : pos + size])
                # A malformed frame is left as it came: proton reports what is wrong with it.
                with contextlib.suppress(*_MALFORMED):
                    frame = rewrite(frame, doff * 4, channel)
                out.append(frame)
            else:  # most frames: passed on without a copy of their own
                out.append(view[pos : pos + size])
            pos += size
        stream.buffer += view[pos:end]
        if len(out) == 1 and isinstance(out[0], memoryview) and len(out[0]) == end:
            return data  # one whole frame, passed on unchanged
        return b"".join(out)

    # ------------------------------------------------------------------ inbound

    def _inbound_wanted(self, code: int | None, channel: int) -> bool:
        """Whether a frame needs looking at; most dispositions do not (cheap: no parsing)."""
        if code == _DISPOSITION:
            session = self._sessions.get(channel)
            return session is not None and bool(session.our_ids)
        return code in _INBOUND

    def _inbound_frame(self, frame: bytes, body: int, channel: int) -> bytes:
        performative = _Performative.parse(frame, body)
        if performative is None:
            return frame
        code = performative.code
        session = self._sessions.get(channel)
        if code == _TRANSFER:
            return self._inbound_transfer(performative, channel)
        if code == _DISPOSITION and not performative.flag(0):  # role=sender
            if session is not None and session.our_ids:
                return performative.remap_range(session.our_ids)
        elif code == _BEGIN:
            self._sessions[channel] = _Session()
        elif code == _ATTACH:
            handle = performative.uint(1)
            if session is not None and handle is not None:
                session.handles.add(handle)
        elif code in (_END, _DETACH):
            # Azure ignores an end or detach for a session or link that is already gone (the sync
            # SDK detaches its $management link after ending the session); proton closes the
            # connection for it.
            handle = performative.uint(0) if code == _DETACH else None
            if session is None or (handle is not None and handle not in session.handles):
                self.ignored += 1
                return b""
            if code == _END:
                del self._sessions[channel]
            else:  # detached, closed or not, the handle is free for a new attach
                session.handles.discard(handle)
        return frame

    def _inbound_transfer(self, transfer: _Performative, channel: int) -> bytes:
        handle, sent_id = transfer.uint(0), transfer.uint(1)
        if handle is None:
            return transfer.frame  # proton: "no such handle"
        session = self._sessions.setdefault(channel, _Session())
        ongoing = session.partial.get(handle)
        if ongoing is not None:  # continuation of a multi-frame delivery; its id is optional
            if sent_id is not None and sent_id != ongoing[0]:
                return transfer.frame  # proton rejects a new id mid-delivery; let it
            client_id, our_id = ongoing
        elif sent_id is None:
            return transfer.frame  # proton: "delivery-id required"
        else:
            client_id = sent_id
            our_id = client_id if session.next_id is None else session.next_id
            session.next_id = (our_id + 1) & _ID_MASK
            if our_id != client_id and not transfer.flag(4):  # unsettled: a disposition will follow
                session.client_ids[our_id] = client_id
                session.our_ids[client_id] = our_id
        if transfer.flag(5) and not transfer.flag(8):  # more, and not aborted
            session.partial[handle] = (client_id, our_id)
        else:
            session.partial.pop(handle, None)
        if sent_id is None or sent_id == our_id:
            return transfer.frame
        self.resequenced += 1
        return transfer.replace({1: _encode_uint(our_id)})

    # ------------------------------------------------------------------ outbound

    def _outbound_wanted(self, code: int | None, channel: int) -> bool:
        if code == _DISPOSITION:
            client_channel = self._client_channel.get(channel)
            session = self._sessions.get(client_channel) if client_channel is not None else None
            return session is not None and bool(session.client_ids)
        return code in _OUTBOUND

    def _outbound_frame(self, frame: bytes, body: int, channel: int) -> bytes:
        performative = _Performative.parse(frame, body)
        if performative is None:
            return frame
        code = performative.code
        if code == _DISPOSITION:
            if performative.flag(0):  # role=receiver: settles transfers the client sent
                return self._outbound_disposition(performative, channel)
        elif code == _BEGIN:
            remote = performative.value(0)
            if isinstance(remote, int):
                self._client_channel[channel] = remote
        elif code in (_CLOSE, _END, _DETACH):
            if code == _END:
                self._client_channel.pop(channel, None)
            return _complete_error(performative, 2 if code == _DETACH else 0)
        return frame

    def _outbound_disposition(self, disposition: _Performative, channel: int) -> bytes:
        client_channel = self._client_channel.get(channel)
        session = self._sessions.get(client_channel) if client_channel is not None else None
        if session is None or not session.client_ids:
            return disposition.frame
        rewritten = disposition.remap_range(session.client_ids)
        if disposition.flag(3):  # settled: the delivery is gone on both sides
            first, last = disposition.range()
            for our_id in _ids(first, last, session.client_ids):
                client_id = session.client_ids.pop(our_id)
                if session.our_ids.get(client_id) == our_id:
                    del session.our_ids[client_id]
        return rewritten


class _Performative:
    """A frame's performative list, split into raw fields so single fields can be replaced."""

    __slots__ = ("code", "fields", "frame", "list_end", "list_start")

    def __init__(
        self, frame: bytes, code: int, list_start: int, fields: list[tuple[int, int]], list_end: int
    ):
        self.frame = frame
        self.code = code
        self.list_start = list_start
        self.fields = fields
        self.list_end = list_end

    @classmethod
    def parse(cls, frame: bytes, body: int) -> _Performative | None:
        if frame[body] != 0x00:
            return None
        if frame[body + 1] == 0x53:  # smallulong descriptor, the usual form
            code, pos = frame[body + 2], body + 3
        elif frame[body + 1] == 0x80:
            code, pos = int.from_bytes(frame[body + 2 : body + 10], "big"), body + 10
        else:
            return None
        if code not in (_BEGIN, _ATTACH, _TRANSFER, _DISPOSITION, _DETACH, _END, _CLOSE):
            return None
        fields, list_end = _split_list(frame, pos)
        return cls(frame, code, pos, fields, list_end)

    def _raw(self, index: int) -> bytes:
        if index >= len(self.fields):
            return _NULL
        start, end = self.fields[index]
        return self.frame[start:end]

    def value(self, index: int) -> object:
        if index >= len(self.fields):
            return None
        return decode_value(self.frame, self.fields[index][0])[0]

    def uint(self, index: int) -> int | None:
        value = self.value(index)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def flag(self, index: int) -> bool:
        return self.value(index) is True

    def range(self) -> tuple[int, int]:
        first = self.uint(1)
        if first is None:
            raise CodecError("disposition without first")
        last = self.uint(2)
        return first, first if last is None else last

    def replace(self, new_fields: dict[int, bytes]) -> bytes:
        """The frame with some list fields replaced (the list is padded with nulls to reach them)."""
        count = max(len(self.fields), max(new_fields) + 1)
        items = [new_fields.get(i) or self._raw(i) for i in range(count)]
        performative = _encode_list(items)
        head = self.frame[:8]  # the frame header; its size is rewritten below
        rest = self.frame[8 : self.list_start] + performative + self.frame[self.list_end :]
        return _u32.pack(8 + len(rest)) + head[4:] + rest

    def remap_range(self, mapping: dict[int, int]) -> bytes:
        """One disposition per contiguous run of mapped ids (the frame itself if nothing maps)."""
        first, last = self.range()
        if last < first or not _ids(first, last, mapping):
            return self.frame  # a range across the id wrap never reaches here in practice
        mapped = sorted({mapping.get(i, i) for i in range(first, last + 1)})
        frames: list[bytes] = []
        start = previous = mapped[0]
        for value in [*mapped[1:], None]:
            if value is not None and value == previous + 1:
                previous = value
                continue
            frames.append(self.replace({1: _encode_uint(start), 2: _encode_uint(previous)}))
            if value is not None:
                start = previous = value
        return b"".join(frames)


def _code(data: bytes, body: int, end: int) -> int | None:
    """The performative code of the frame body at ``body`` (``None`` if it is not a described list)."""
    if end - body < 3 or data[body] != 0x00:
        return None
    if data[body + 1] == 0x53:  # smallulong descriptor, the usual form
        return data[body + 2]
    if data[body + 1] == 0x80 and end - body >= 10:
        return int.from_bytes(data[body + 2 : body + 10], "big")
    return None


def _ids(first: int, last: int, mapping: dict[int, int]) -> list[int]:
    """The ids in ``[first, last]`` that ``mapping`` has, cheaply whichever is smaller."""
    if last - first + 1 <= len(mapping):
        return [i for i in range(first, last + 1) if i in mapping]
    return [i for i in mapping if first <= i <= last]


def _complete_error(performative: _Performative, index: int) -> bytes:
    """``performative`` with its error (field ``index``) padded to condition, description, info."""
    if index >= len(performative.fields):
        return performative.frame
    frame = performative.frame
    start, _ = performative.fields[index]
    if frame[start] != 0x00 or frame[start + 1] != 0x53 or frame[start + 2] != _ERROR:
        return frame  # null: no error to complete
    fields, _ = _split_list(frame, start + 3)
    if len(fields) >= 3 and frame[fields[2][0]] != 0x40:
        return frame
    condition = frame[fields[0][0] : fields[0][1]]
    description = frame[fields[1][0] : fields[1][1]] if len(fields) > 1 else _NULL
    error = b"\x00\x53" + _u8.pack(_ERROR) + _encode_list([condition, description, _info_map()])
    return performative.replace({index: error})


def _info_map() -> bytes:
    pairs = _TRACKING_ID + encode_str(str(uuid.uuid4()))
    return b"\xc1" + _u8.pack(len(pairs) + 1) + b"\x02" + pairs


def _split_list(frame: bytes, pos: int) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) of each element of the list at ``pos``, and the list's end."""
    code = frame[pos]
    if code == 0x45:
        return [], pos + 1
    if code == 0xC0:
        size, count, item = frame[pos + 1], frame[pos + 2], pos + 3
        end = pos + 2 + size
    elif code == 0xD0:
        size, count = _u32.unpack_from(frame, pos + 1)[0], _u32.unpack_from(frame, pos + 5)[0]
        item, end = pos + 9, pos + 5 + size
    else:
        raise CodecError(f"performative is not a list (0x{code:02x})")
    fields: list[tuple[int, int]] = []
    for _ in range(count):
        next_item = skip_value(frame, item)
        fields.append((item, next_item))
        item = next_item
    if item != end:
        raise CodecError("performative list size does not match its elements")
    return fields, end


def _encode_list(items: list[bytes]) -> bytes:
    body = b"".join(items)
    if len(body) + 1 < 256 and len(items) < 256:
        return b"\xc0" + _u8.pack(len(body) + 1) + _u8.pack(len(items)) + body
    return b"\xd0" + _u32.pack(len(body) + 4) + _u32.pack(len(items)) + body


def _encode_uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return b"\x52" + _u8.pack(value)
    return b"\x70" + _u32.pack(value)
