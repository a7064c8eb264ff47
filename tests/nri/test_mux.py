"""The connection multiplexer: framing, splitting, reassembly, size limits."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline.nri.mux import (
    MAX_RECV_PAYLOAD,
    MAX_SEND_PAYLOAD,
    FrameReader,
    FrameTooLarge,
    encode_frames,
    frame_header,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _reassemble(reader: FrameReader, chunks: list[bytes]) -> dict[int, bytes]:
    streams: dict[int, bytearray] = {}
    for chunk in chunks:
        for conn, piece in reader.feed(chunk):
            streams.setdefault(conn, bytearray()).extend(piece)
    return {conn: bytes(data) for conn, data in streams.items()}


def test_frame_layout_is_big_endian_conn_then_length() -> None:
    assert encode_frames(2, b"abc") == bytes.fromhex("0000000200000003") + b"abc"
    assert frame_header(1, 4096) == bytes.fromhex("0000000100001000")


def test_sent_frames_never_exceed_4096_payload_bytes() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    wire = encode_frames(1, data)
    sizes = []
    pos = 0
    while pos < len(wire):
        conn, length = struct.unpack_from(">II", wire, pos)
        assert conn == 1
        sizes.append(length)
        pos += 8 + length
    assert sizes == [4096, 4096, 2048]
    assert max(sizes) <= MAX_SEND_PAYLOAD
    assert encode_frames(1, b"") == b""


@given(
    messages=st.lists(
        st.tuples(st.sampled_from([1, 2]), st.binary(min_size=0, max_size=9000)), max_size=8
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
def test_streams_survive_any_chunking_and_interleaving(
    messages: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(encode_frames(conn, data, max_payload=1000) for conn, data in messages)
    expected: dict[int, bytes] = {}
    for conn, data in messages:
        if data:
            expected[conn] = expected.get(conn, b"") + data
    reader = FrameReader()
    assert _reassemble(reader, _split(wire, cuts)) == expected
    assert reader.idle


def test_a_frame_of_the_maximum_size_is_accepted_in_small_reads() -> None:
    payload = b"\x5a" * MAX_RECV_PAYLOAD
    wire = frame_header(1, len(payload)) + payload
    reader = FrameReader()
    chunks = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]
    assert _reassemble(reader, chunks) == {1: payload}


@pytest.mark.parametrize("length", [MAX_RECV_PAYLOAD + 1, 16 << 20, 2**31, 2**32 - 1])
def test_oversized_announcement_is_refused_without_allocating(length: int) -> None:
    reader = FrameReader()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as err:
            list(reader.feed(frame_header(1, length)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.length == length
    assert peak < 64 * 1024


def test_valid_frames_before_a_bad_header_are_still_delivered() -> None:
    reader = FrameReader()
    got = []
    with pytest.raises(FrameTooLarge):
        for item in reader.feed(encode_frames(1, b"hello") + frame_header(1, 2**32 - 1)):
            got.append(item)
    assert got == [(1, b"hello")]


def test_frames_of_unknown_connections_are_skipped_and_counted() -> None:
    reader = FrameReader()
    wire = encode_frames(7, b"x" * 100) + encode_frames(0, b"y") + encode_frames(1, b"ok")
    assert _reassemble(reader, [wire[:50], wire[50:]]) == {1: b"ok"}
    assert reader.discarded_bytes == 101
    assert reader.frames == 3


def test_empty_frames_carry_nothing() -> None:
    reader = FrameReader()
    assert _reassemble(reader, [frame_header(1, 0) + encode_frames(2, b"z")]) == {2: b"z"}
