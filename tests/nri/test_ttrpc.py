"""ttrpc framing, envelopes, size limits and stream-id rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.ttrpc import (
    MAX_BODY,
    ClientStreams,
    Code,
    CorruptStream,
    MalformedMessage,
    Message,
    MessageReader,
    Oversized,
    ServerStreams,
    decode_request,
    decode_response,
    encode_message,
    encode_request,
    encode_response,
)


def test_header_is_length_stream_type_flags() -> None:
    assert encode_message(3, 1, b"abcd") == bytes.fromhex("00000004000000030100") + b"abcd"


def test_empty_success_is_a_zero_length_body() -> None:
    # What containerd sends and accepts for every empty reply (RegisterPlugin, events).
    assert encode_response(1) == bytes.fromhex("00000000000000010200")


def test_request_envelope_round_trips_with_metadata() -> None:
    wire = encode_request(5, "svc", "Meth", b"\x01\x02", 2_000_000_000, [("k", "v")])
    (msg,) = list(MessageReader().feed(wire))
    assert isinstance(msg, Message)
    req = decode_request(msg.body)
    assert (req.service, req.method, req.payload, req.timeout_nano) == (
        "svc",
        "Meth",
        b"\x01\x02",
        2_000_000_000,
    )
    assert [(kv.key, kv.value) for kv in req.metadata] == [("k", "v")]


def test_error_response_carries_status_and_no_payload() -> None:
    (msg,) = list(MessageReader().feed(encode_response(7, b"ignored", Code.UNIMPLEMENTED, "x")))
    assert isinstance(msg, Message)
    resp = decode_response(msg.body)
    assert resp.status.code == 12 and resp.status.message == "x" and resp.payload == b""


@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    step=st.integers(min_value=1, max_value=37),
)
def test_messages_are_reassembled_from_any_piece_size(bodies: list[bytes], step: int) -> None:
    wire = b"".join(encode_message(2 * i + 1, 1, body) for i, body in enumerate(bodies))
    reader = MessageReader()
    got: list[Message | Oversized] = []
    for i in range(0, len(wire), step):
        got += reader.feed(wire[i : i + step])
    assert [m.body for m in got if isinstance(m, Message)] == bodies
    assert [m.stream_id for m in got] == [2 * i + 1 for i in range(len(bodies))]
    assert reader.buffered == 0


def test_oversized_body_is_skipped_in_pieces_and_the_stream_stays_in_sync() -> None:
    length = MAX_BODY + 100
    wire = encode_message(9, 1, b"\0" * length) + encode_message(11, 1, b"next")
    reader = MessageReader()
    got: list[Message | Oversized] = []
    for i in range(0, len(wire), 1 << 16):
        got += reader.feed(wire[i : i + (1 << 16)])
        assert reader.buffered <= 10
    assert got == [Oversized(9, 1, 0, length), Message(11, 1, 0, b"next")]


def test_absurd_length_is_a_corrupt_stream() -> None:
    reader = MessageReader()
    with pytest.raises(CorruptStream):
        list(reader.feed(bytes.fromhex("ffffffff000000010100")))


def test_garbage_bodies_are_malformed_not_crashes() -> None:
    with pytest.raises(MalformedMessage):
        decode_request(b"\xff\xff\xff")
    with pytest.raises(MalformedMessage):
        decode_response(b"\x0a\x05ab")


def test_server_accepts_growing_odd_ids_with_gaps() -> None:
    streams = ServerStreams()
    assert streams.check(1) is None
    assert streams.check(5) is None  # ids may skip (seen on the wire)
    assert streams.check(4) is not None  # even
    again = streams.check(5)
    assert again is not None and again.code == Code.INVALID_ARGUMENT
    assert streams.check(3) is not None
    assert streams.check(7) is None


def test_client_allocates_odd_ids_and_matches_replies() -> None:
    client = ClientStreams()
    assert [client.open("A"), client.open("B"), client.open("C")] == [1, 3, 5]
    assert client.close(3) == "B"
    assert client.close(3) is None
    assert client.pending == 2


def test_our_envelopes_use_the_reference_field_numbers() -> None:
    # ttrpc.Request: 1 service, 2 method, 3 payload, 4 timeout_nano, 5 metadata{1, 2}.
    req = nri_pb2.TtrpcRequest(service="s", method="m", payload=b"p", timeout_nano=1)
    req.metadata.add(key="k", value="v")
    assert (
        req.SerializeToString() == b"\x0a\x01s\x12\x01m\x1a\x01p\x20\x01\x2a\x06\x0a\x01k\x12\x01v"
    )
    # ttrpc.Response: 1 status{1 code, 2 message}, 2 payload.
    resp = nri_pb2.TtrpcResponse(payload=b"p")
    resp.status.code = 2
    resp.status.message = "e"
    assert resp.SerializeToString() == b"\x0a\x05\x08\x02\x12\x01e\x12\x01p"
