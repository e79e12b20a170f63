"""Frame rewriting: delivery-ids resequenced for proton and mapped back, errors completed, and
frames Azure ignores dropped; everything else byte for byte, however the stream is split."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from postbus.emulators.servicebus.codec import encode_str, encode_symbol
from postbus.emulators.servicebus.frames import FrameRewriter
from tests.amqp_frames import (
    AMQP_HEADER,
    ATTACH,
    BEGIN,
    CLOSE,
    DETACH,
    DISPOSITION,
    END,
    FALSE,
    FLOW,
    NULL,
    OPEN,
    SASL_HEADER,
    TRANSFER,
    TRUE,
    described_list,
    frame,
    parse,
    uint,
    ushort,
)


def transfer(handle: int, delivery_id: int | None, *, more: bool = False, settled: bool = False) -> bytes:
    tag = b"\xa0\x04" + struct.pack(">I", delivery_id or 0)
    delivery = NULL if delivery_id is None else uint(delivery_id)
    fields = (uint(handle), delivery, tag, uint(0), TRUE if settled else FALSE, TRUE if more else FALSE)
    return frame(TRANSFER, *fields, channel=1, payload=b"\x00Sw\xa1\x02hi")


def disposition(
    first: int, last: int | None = None, *, role_receiver: bool = True, channel: int = 0
) -> bytes:
    role = TRUE if role_receiver else FALSE
    last_field = NULL if last is None else uint(last)
    return frame(DISPOSITION, role, uint(first), last_field, TRUE, b"\x00\x53\x24\x45", channel=channel)


def error(*fields: bytes) -> bytes:
    return described_list(0x1D, *fields)


def delivery_ids(stream: bytes) -> list[int]:
    return [fields[1] for _, code, fields in parse(stream) if code == TRANSFER]


def ranges(stream: bytes) -> list[tuple[int, int]]:
    result = []
    for _, code, fields in parse(stream):
        if code == DISPOSITION:
            last = fields[2] if len(fields) > 2 and fields[2] is not None else fields[1]
            result.append((fields[1], last))
    return result


def connected() -> FrameRewriter:
    """A rewriter that has seen the client's session begin on channel 1 and ours on channel 0."""
    rewriter = FrameRewriter(max_frame_size=1024 * 1024)
    rewriter.inbound(SASL_HEADER + AMQP_HEADER + frame(OPEN, encode_str("c")))
    rewriter.inbound(frame(BEGIN, NULL, uint(0), uint(100), uint(100), channel=1))
    rewriter.inbound(frame(ATTACH, encode_str("link"), uint(3), FALSE, channel=1))
    rewriter.outbound(frame(BEGIN, ushort(1), uint(0), uint(100), uint(100), channel=0))
    return rewriter


def test_frames_in_order_pass_through_unchanged() -> None:
    rewriter = connected()
    stream = transfer(3, 0) + transfer(3, 1) + transfer(3, 2)
    assert rewriter.inbound(stream) == stream
    assert rewriter.outbound(disposition(0, 2)) == disposition(0, 2)
    assert rewriter.resequenced == 0


def test_out_of_order_ids_reach_proton_in_sequence_and_settle_the_clients_ids() -> None:
    # Given transfers numbered 1, 0, 2 (the SDK's interleaved writes) after a first one, 0
    rewriter = connected()
    assert delivery_ids(rewriter.inbound(transfer(3, 0) + transfer(3, 2) + transfer(3, 1))) == [0, 1, 2]
    # When proton settles its ids 1 and 2, the client hears about its own ids 2 and 1
    assert ranges(rewriter.outbound(disposition(1))) == [(2, 2)]
    assert ranges(rewriter.outbound(disposition(2))) == [(1, 1)]
    assert rewriter.resequenced == 2


def test_repeated_ids_get_fresh_ones_and_a_range_splits_into_the_clients_runs() -> None:
    rewriter = connected()
    # The SDK stamped two transfers with 5 and skipped 6: 5, 5, 7, then 9 (a second gap)
    ids = delivery_ids(rewriter.inbound(transfer(3, 5) + transfer(3, 5) + transfer(3, 7) + transfer(3, 9)))
    assert ids == [5, 6, 7, 8]
    assert ranges(rewriter.outbound(disposition(5, 8))) == [(5, 5), (7, 7), (9, 9)]


def test_a_settled_disposition_forgets_the_mapping() -> None:
    rewriter = connected()
    rewriter.inbound(transfer(3, 0) + transfer(3, 4))
    assert ranges(rewriter.outbound(disposition(1))) == [(4, 4)]
    # Once settled, proton's id 1 means itself again (a later delivery in the client's numbering)
    assert rewriter.outbound(disposition(1)) == disposition(1)


def test_pre_settled_transfers_are_renumbered_but_not_remembered() -> None:
    rewriter = connected()
    assert delivery_ids(rewriter.inbound(transfer(3, 0) + transfer(3, 9, settled=True))) == [0, 1]
    assert rewriter.outbound(disposition(1)) == disposition(1)


def test_a_multi_frame_delivery_keeps_one_id_across_its_frames() -> None:
    rewriter = connected()
    stream = transfer(3, 0) + transfer(3, 7, more=True) + transfer(3, None, more=True) + transfer(3, 7)
    assert delivery_ids(rewriter.inbound(stream)) == [0, 1, None, 1]
    assert ranges(rewriter.outbound(disposition(1))) == [(7, 7)]


def test_sender_role_dispositions_from_the_client_map_to_our_ids() -> None:
    rewriter = connected()
    rewriter.inbound(transfer(3, 0) + transfer(3, 4))
    settle = disposition(4, role_receiver=False, channel=1)
    assert ranges(rewriter.inbound(settle)) == [(1, 1)]


def test_dispositions_for_deliveries_the_client_receives_are_untouched() -> None:
    rewriter = connected()
    rewriter.inbound(transfer(3, 0) + transfer(3, 4))
    # role=sender outbound: the broker settles a message it sent; ids are proton's own
    assert rewriter.outbound(disposition(1, role_receiver=False)) == disposition(1, role_receiver=False)
    # role=receiver inbound: the client settles a message it received
    inbound = disposition(1, channel=1)
    assert rewriter.inbound(inbound) == inbound


def test_close_errors_get_description_and_info() -> None:
    rewriter = connected()
    bare = frame(CLOSE, error(encode_symbol("amqp:session:invalid-field"), encode_str("sequencing error")))
    ((_, code, fields),) = parse(rewriter.outbound(bare))
    condition, description, info = fields[0]
    assert code == CLOSE
    assert (condition, description) == ("amqp:session:invalid-field", "sequencing error")
    assert set(info) == {"com.microsoft:tracking-id"}
    condition_only = frame(END, error(encode_symbol("amqp:internal-error")))
    ((_, _, fields),) = parse(rewriter.outbound(condition_only))
    assert fields[0][:2] == ["amqp:internal-error", None]
    assert "com.microsoft:tracking-id" in fields[0][2]


def test_complete_errors_and_closes_without_error_are_untouched() -> None:
    rewriter = connected()
    info = b"\xc1\x07\x02\xa3\x01k\xa1\x01v"  # {k: "v"}
    complete = frame(DETACH, uint(3), TRUE, error(encode_symbol("amqp:not-found"), encode_str("gone"), info))
    assert rewriter.outbound(complete) == complete
    assert rewriter.outbound(frame(CLOSE)) == frame(CLOSE)
    assert rewriter.outbound(frame(CLOSE, NULL)) == frame(CLOSE, NULL)


def test_a_detach_error_is_completed_in_its_third_field() -> None:
    rewriter = connected()
    bare = frame(DETACH, uint(3), TRUE, error(encode_symbol("amqp:not-found"), encode_str("no queue")))
    ((_, _, fields),) = parse(rewriter.outbound(bare))
    assert fields[:2] == [3, True]
    assert len(fields[2]) == 3


def test_end_or_detach_after_the_session_ended_is_dropped_as_azure_ignores_it() -> None:
    rewriter = connected()
    assert rewriter.inbound(frame(END, channel=1)) == frame(END, channel=1)
    # The sync SDK detaches its $management link after ending the session
    assert rewriter.inbound(frame(DETACH, uint(4), FALSE, channel=1)) == b""
    assert rewriter.inbound(frame(END, channel=1)) == b""
    assert rewriter.ignored == 2
    # Anything else on a missing session still reaches proton, which refuses it as Azure does
    assert rewriter.inbound(transfer(3, 0)) == transfer(3, 0)


def test_detach_of_a_link_that_is_not_attached_is_dropped() -> None:
    rewriter = connected()
    assert rewriter.inbound(frame(DETACH, uint(9), TRUE, channel=1)) == b""
    attached = frame(DETACH, uint(3), TRUE, channel=1)
    assert rewriter.inbound(attached) == attached
    assert rewriter.inbound(attached) == b""  # detached already


def test_an_oversized_frame_switches_the_stream_to_pass_through() -> None:
    rewriter = FrameRewriter(max_frame_size=64)
    big = frame(OPEN, encode_str("x" * 100))
    assert rewriter.inbound(AMQP_HEADER + big) == AMQP_HEADER + big
    later = transfer(3, 9)
    assert rewriter.inbound(later) == later


def test_a_malformed_performative_is_left_for_proton_to_judge() -> None:
    rewriter = connected()
    broken = struct.pack(">IBBH", 12, 2, 0, 1) + b"\x00\x53\x14\xc0"  # list header cut short
    assert rewriter.inbound(broken) == broken


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_split_of_the_stream_gives_the_same_bytes(cuts: list[int]) -> None:
    stream = (
        SASL_HEADER
        + AMQP_HEADER
        + frame(BEGIN, NULL, uint(0), uint(100), uint(100), channel=1)
        + frame(ATTACH, encode_str("link"), uint(3), FALSE, channel=1)
        + transfer(3, 0)
        + transfer(3, 2)
        + transfer(3, 1)
        + frame(FLOW, uint(3), uint(100), channel=1)
        + struct.pack(">IBBH", 8, 2, 0, 0)  # an empty (heartbeat) frame
    )
    whole = FrameRewriter(max_frame_size=1024).inbound(stream)
    rewriter = FrameRewriter(max_frame_size=1024)
    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(rewriter.inbound(stream[pos : pos + cut]))
        pos += cut
    pieces.append(rewriter.inbound(stream[pos:]))
    assert b"".join(pieces) == whole
    assert rewriter.pending_inbound == 0
    assert delivery_ids(whole) == [0, 1, 2]
