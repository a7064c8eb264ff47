"""Codec: round-trips of every message kind and strict, bounded decoding."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline import codec
from resctrl_pipeline import messages as m
from resctrl_pipeline.errors import DecodeError

text = st.text(max_size=40)
ints = st.integers(min_value=0, max_value=2**40)
pod_up = st.builds(m.PodUp, text, text, text, text)
container_up = st.builds(m.ContainerUp, text, text, text, ints)
labels = st.builds(m.PodLabels, text, text, text)
group_state = st.builds(m.GroupState, text, st.none() | text, ints, ints)
floats = st.floats(allow_nan=False, allow_infinity=False)
columns = st.integers(0, 5).flatmap(
    lambda n: st.dictionaries(text, st.lists(st.none() | ints | text, min_size=n, max_size=n),
                              max_size=4))  # fmt: skip

any_message = st.one_of(
    pod_up, st.builds(m.PodDown, text), container_up, st.builds(m.ContainerDown, text, text),
    st.builds(m.LifecycleSnapshot, st.lists(pod_up).map(tuple), st.lists(container_up).map(tuple)),
    labels, st.builds(m.PodLabelsGone, text),
    st.builds(m.MetadataSnapshot, st.lists(labels).map(tuple)),
    group_state, st.builds(m.GroupGone, text),
    st.builds(m.GroupSnapshot, st.lists(group_state).map(tuple)),
    st.builds(m.OccupancyBatch, columns),
    st.builds(m.ActorStats, text, ints, floats, st.dictionaries(text, floats),
              st.dictionaries(text, floats), st.dictionaries(text, st.booleans()),
              st.dictionaries(text, text)),
)  # fmt: skip


@given(any_message, st.integers(0, 2**31))
def test_every_kind_roundtrips(msg: m.Message, seq: int) -> None:
    env = codec.decode(codec.encode(msg, src="t", seq=seq, ts=1.5))
    assert env.body == msg
    assert (env.kind, env.src, env.seq, env.ts) == (type(msg).__name__, "t", seq, 1.5)


def _raw(body: object, kind: str = "PodUp", v: object = 1) -> bytes:
    data: bytes = msgpack.packb({"v": v, "kind": kind, "src": "x", "seq": 1, "ts": 0.0,
                                 "body": body})  # fmt: skip
    return data


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"garbage", msgpack.packb([1, 2]), _raw({}, kind="Nope"),
     _raw({"uid": "u", "namespace": "n", "name": "x"}, v=99),
     _raw({"uid": 5, "namespace": "n", "name": "x"}),
     _raw({"namespace": "n", "name": "x"}),
     _raw({"pods": "notalist"}, kind="LifecycleSnapshot"),
     _raw({"pods": [{"uid": 1}]}, kind="MetadataSnapshot"),
     _raw({"columns": {"a": [1], "b": [1, 2]}}, kind="OccupancyBatch"),
     _raw({"pod_uid": "u", "group_path": None, "total_containers": True}, kind="GroupState"),
     _raw("body"),
     msgpack.packb({"v": 1, "kind": "PodDown", "seq": "x", "body": {"uid": "u"}}),
     _raw({"uid": "u", "namespace": "n", "name": "x"}, v=0),
     *(_raw({"actor": "a", "pid": 1, "started_at": 0.0, field: ["x"]}, kind="ActorStats")
       for field in ("counters", "gauges", "ready", "info")),
     *(_raw({"actor": "a", "pid": 1, "started_at": 0.0, field: {"k": value}}, kind="ActorStats")
       for field, value in (("counters", "1"), ("gauges", True), ("ready", 1), ("info", 1),
                            ("info", b"bytes"))),
     # A binary (bytes) key where a text key belongs: msgpack's bin type.
     *(_raw({"actor": "a", "pid": 1, "started_at": 0.0, field: {b"k": value}}, kind="ActorStats")
       for field, value in (("counters", 1.0), ("ready", True), ("info", "x"))),
     _raw({"uid": "u", "namespace": "n", "name": "x", "labels": {"k": b"v"}}, kind="PodLabels"),
     _raw({"uid": "u", "namespace": "n", "name": "x", "labels": ["k"]}, kind="PodLabels"),
     _raw({"pod_uid": "u", "group_path": "/g", "total_containers": 1,
           "reconciled_containers": 1, "class_paths": "abc"}, kind="GroupState")],
)  # fmt: skip
def test_malformed_messages_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_unknown_body_fields_are_ignored() -> None:
    env = codec.decode(_raw({"uid": "u", "namespace": "n", "name": "x", "future": [1]}))
    assert env.body == m.PodUp("u", "n", "x")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    data = b"".join([b"\x91"] * 5000) + b"\xa1x"  # 5000 nested one-element arrays
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_oversized_message_is_refused() -> None:
    with pytest.raises(DecodeError):
        codec.decode(b"\x00" * (codec.MAX_MESSAGE_BYTES + 1))


def test_huge_announced_length_does_not_allocate() -> None:
    # A str header announcing 4 GiB followed by nothing: refused by the length limits.
    with pytest.raises(DecodeError):
        codec.decode(b"\xdb\xff\xff\xff\xff")


@given(st.binary(max_size=256))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data)


def _roundtrip(msg: m.Message) -> m.Message:
    body: m.Message = codec.decode(codec.encode(msg)).body
    return body


def test_a_sampler_batch_roundtrips_and_so_does_an_empty_one() -> None:
    cols = {
        "start_timestamp": [1, 1, 1],
        "pod_namespace": ["a", None, "c"],
        "pod_uid": ["u1", "u2", "u3"],
        "llc_occupancy_bytes": [0, 4096, 2**40],
        "mbm_total_bytes": [None, 5, 6],
    }
    assert _roundtrip(m.OccupancyBatch(cols)) == m.OccupancyBatch(cols)
    assert _roundtrip(m.OccupancyBatch({})) == m.OccupancyBatch({})


@pytest.mark.parametrize(
    "columns",
    [{"a": [1], "b": [1, 2]}, {"a": [1], "b": 1}, {"a": "abc"}, ["a"]],
    ids=["uneven", "scalar", "string", "not-a-map"],
)
def test_a_batch_of_the_wrong_shape_is_refused(columns: object) -> None:
    with pytest.raises(DecodeError, match="columns"):
        codec.decode(_raw({"columns": columns}, kind="OccupancyBatch"))


def test_messages_up_to_the_limits_pass() -> None:
    """Big but legal messages get through: a batch of several MiB (thousands of pods),
    a 1 MiB string, a column of 4 Mi values; one more string byte or value is refused."""
    rows = 60_000
    big = m.OccupancyBatch({"pod_uid": [f"{i:036d}" for i in range(rows)], "x": [7] * rows})
    data = codec.encode(big)
    assert len(data) > 2 << 20
    assert codec.decode(data).body == big
    limit = 1 << 20
    assert _roundtrip(m.PodDown("u" * limit)) == m.PodDown("u" * limit)
    with pytest.raises(DecodeError):
        _roundtrip(m.PodDown("u" * (limit + 1)))
    items = 4 << 20
    assert len(_roundtrip(m.OccupancyBatch({"x": [0] * items})).columns["x"]) == items  # type: ignore[attr-defined]
    with pytest.raises(DecodeError):
        _roundtrip(m.OccupancyBatch({"x": [0] * (items + 1)}))
