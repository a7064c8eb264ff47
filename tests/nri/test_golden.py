"""Golden vectors: real containerd 1.7.24 / 2.1.9 traffic against our decoder and encoder.

The captures (``captures/*.hex``, one mux frame per line) come with summaries written
by the capture tool (``*-messages-summary.json``, ``*-decoded-requests.json``). Our
decoder must reproduce the summaries field by field, and what our plugin sends must be
byte-identical to what the capture plugin sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as ProtobufMessage

from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.mux import FrameReader, encode_frames
from resctrl_pipeline.nri.service import PluginService
from resctrl_pipeline.nri.session import PluginSession, SessionFailed
from resctrl_pipeline.nri.ttrpc import (
    Code,
    Message,
    decode_request,
    decode_response,
    encode_response,
)

from .support import CAPTURES, Recorder, load_frames, load_json, ttrpc_messages

HEX_FILES = sorted(p.name for p in CAPTURES.glob("*.hex"))

_REQUEST_TYPES: dict[str, type[ProtobufMessage]] = {
    "Configure": nri_pb2.ConfigureRequest,
    "Synchronize": nri_pb2.SynchronizeRequest,
    "StateChange": nri_pb2.StateChangeEvent,
    "CreateContainer": nri_pb2.CreateContainerRequest,
    "UpdateContainer": nri_pb2.UpdateContainerRequest,
    "StopContainer": nri_pb2.StopContainerRequest,
    "RegisterPlugin": nri_pb2.RegisterPluginRequest,
}


def _pod(pod: nri_pb2.PodSandbox) -> dict[str, Any]:
    out: dict[str, Any] = {"id": pod.id, "name": pod.name, "uid": pod.uid}
    if pod.pid:
        out["pid"] = pod.pid
    out["linux.cgroup_parent"] = pod.linux.cgroup_parent
    out["linux.cgroups_path"] = pod.linux.cgroups_path or None
    out["n_annotations"] = len(pod.annotations)
    return out


def _container(ctr: nri_pb2.Container) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ctr.id, "name": ctr.name}
    if ctr.state:
        out["state"] = f"{ctr.state}:{nri_pb2.ContainerState.Name(ctr.state)}"
    if ctr.pid:
        out["pid"] = ctr.pid
    out["linux.cgroups_path"] = ctr.linux.cgroups_path
    return out


def _describe(
    direction: str, conn: int, msg: Message, n_frames: int, method: str
) -> dict[str, Any]:
    """Our decoding of one message, in the capture summary's vocabulary."""
    d: dict[str, Any] = {
        "dir": direction,
        "mux_conn": conn,
        "stream": msg.stream_id,
        "type": msg.type,
        "flags": msg.flags,
        "ttrpc_len": len(msg.body),
        "n_frames": n_frames,
    }
    if msg.type == 2:
        resp = decode_response(msg.body)
        d["method"] = f"reply:{method}"
        if resp.HasField("status"):
            d["status"] = {"code": resp.status.code, "message": resp.status.message}
        if method == "Configure":
            d["decoded"] = {"events": nri_pb2.ConfigureResponse.FromString(resp.payload).events}
        return d
    req = decode_request(msg.body)
    d["method"] = req.method
    payload = _REQUEST_TYPES[req.method].FromString(req.payload)
    if req.method == "RegisterPlugin":
        d["decoded"] = MessageToDict(payload, preserving_proto_field_name=True)
        return d
    d["timeout_nano"] = req.timeout_nano
    d["metadata"] = [{"key": kv.key, "value": kv.value} for kv in req.metadata] or None
    if req.method == "Configure":
        d["decoded"] = _ints(MessageToDict(payload, preserving_proto_field_name=True))
    elif isinstance(payload, nri_pb2.SynchronizeRequest):
        d["pods"] = [
            {"name": p.name, "pid": p.pid, "cgroup_parent": p.linux.cgroup_parent}
            for p in payload.pods
        ]
        d["containers"] = [
            {
                "name": c.name,
                "state": f"{c.state}:{nri_pb2.ContainerState.Name(c.state)}",
                "pid": c.pid,
            }
            for c in payload.containers
        ]
        d["more"] = payload.more or None
    else:
        if isinstance(payload, nri_pb2.StateChangeEvent):
            d["event"] = f"{payload.event}:{nri_pb2.Event.Name(payload.event)}"
        # Every event request carries field "pod" and, for containers, "container".
        fields = {f.name: v for f, v in payload.ListFields()}
        if "pod" in fields:
            d["pod"] = _pod(fields["pod"])
        if "container" in fields:
            d["container"] = _container(fields["container"])
        if isinstance(payload, nri_pb2.UpdateContainerRequest):
            d["linux_resources"] = _ints(
                MessageToDict(payload.linux_resources, preserving_proto_field_name=True)
            )
    return d


def _ints(obj: Any) -> Any:
    """MessageToDict renders 64-bit integers as strings; the summaries do not."""
    if isinstance(obj, dict):
        return {k: _ints(v) for k, v in obj.items()}
    if isinstance(obj, str) and obj.lstrip("-").isdigit():
        return int(obj)
    return obj


def _describe_capture(name: str) -> list[dict[str, Any]]:
    methods: dict[tuple[int, int], str] = {}
    out = []
    for direction, conn, msg, n_frames in ttrpc_messages(name):
        if msg.type == 1:
            methods[(conn, msg.stream_id)] = decode_request(msg.body).method
        out.append(
            _describe(direction, conn, msg, n_frames, methods.get((conn, msg.stream_id), ""))
        )
    return out


def _summary(version: str, run: str, gen: int) -> list[dict[str, Any]]:
    entries = load_json(f"{version}-messages-summary.json")[run]
    return [
        {k: v for k, v in e.items() if k != "gen"}
        for e in entries
        if "dir" in e and e["gen"] == gen
    ]


def _normalise(entry: dict[str, Any]) -> dict[str, Any]:
    # The summaries leave out zero pids and, for containers, zero states; mirror that.
    out = dict(entry)
    for key in ("pods", "containers"):
        if key in out:
            out[key] = [{k: v for k, v in item.items() if v not in (0, None)} for item in out[key]]
    return out


@pytest.mark.parametrize(
    ("capture", "version", "run", "gen"),
    [
        ("c17-session-gen1-full.hex", "c17", "main", 1),
        ("c17-reconnect-after-restart.hex", "c17", "main", 3),
        ("c2x-session-gen1-full.hex", "c2x", "main", 1),
        ("c2x-reconnect-after-restart.hex", "c2x", "main", 3),
        ("c2x-preexisting-pod-stop-remove.hex", "c2x", "preexisting-pod", 1),
    ],
)
def test_whole_sessions_decode_like_the_capture_summary(
    capture: str, version: str, run: str, gen: int
) -> None:
    ours = [_normalise(d) for d in _describe_capture(capture)]
    expected = [_normalise(e) for e in _summary(version, run, gen)]
    assert len(ours) == len(expected)
    for mine, theirs in zip(ours, expected, strict=True):
        assert {k: mine.get(k) for k in theirs} == theirs


@pytest.mark.parametrize("version", ["c17", "c2x"])
def test_failed_create_session_is_a_contiguous_part_of_the_summary(version: str) -> None:
    ours = [_normalise(d) for d in _describe_capture(f"{version}-create-container-error.hex")]
    summary = [_normalise(e) for e in _summary(version, "main", 2)]
    first = ours[0]
    start = next(
        i
        for i, e in enumerate(summary)
        if (e["dir"], e["stream"], e["method"]) == (first["dir"], first["stream"], first["method"])
    )
    assert len(summary) - start == len(ours)
    for mine, theirs in zip(ours, summary[start:], strict=True):
        assert {k: mine.get(k) for k in theirs} == theirs
    assert ours[3]["status"] == {
        "code": 2,
        "message": "resctrl-pipeline: injected CreateContainer failure",
    }


@pytest.mark.parametrize("capture", HEX_FILES)
def test_every_runtime_frame_decodes(capture: str) -> None:
    """Every complete runtime→plugin message decodes into its NRI message type."""
    decoded = 0
    for direction, _conn, msg, _n in ttrpc_messages(capture):
        if direction != "<":
            continue
        if msg.type == 1:
            req = decode_request(msg.body)
            _REQUEST_TYPES[req.method].FromString(req.payload)
        else:
            decode_response(msg.body)
        decoded += 1
    assert decoded >= 1


@pytest.mark.parametrize("version", ["c17", "c2x"])
def test_first_request_of_each_kind_matches_the_decoded_dump(version: str) -> None:
    dump = load_json(f"{version}-decoded-requests.json")
    seen: dict[str, dict[str, Any]] = {}
    for direction, _conn, msg, _n in ttrpc_messages(f"{version}-session-gen1-full.hex"):
        if direction != "<" or msg.type != 1:
            continue
        req = decode_request(msg.body)
        payload = _REQUEST_TYPES[req.method].FromString(req.payload)
        key = req.method
        if isinstance(payload, nri_pb2.StateChangeEvent):
            key = f"StateChange:{nri_pb2.Event.Name(payload.event)}"
        seen.setdefault(key, MessageToDict(payload, preserving_proto_field_name=True))
    assert set(dump) <= set(seen)
    for key, entry in dump.items():
        _assert_subset(entry["decoded"], seen[key], key)


def _assert_subset(expected: Any, actual: Any, where: str) -> None:
    """Every field we model equals the dump (enums as "n:NAME", long strings shortened
    to 60 characters + "...(N chars)"); fields we do not model are skipped."""
    if isinstance(expected, dict):
        for k, v in expected.items():
            if k in actual:
                _assert_subset(v, actual[k], f"{where}.{k}")
            else:
                assert isinstance(actual, dict)
                assert k in _UNMODELLED, f"{where}.{k} missing from our decoding"
    elif isinstance(expected, list):
        assert len(expected) == len(actual), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _assert_subset(e, a, f"{where}[{i}]")
    elif isinstance(expected, str) and expected.endswith("chars)") and "...(" in expected:
        prefix, count = expected.rsplit("...(", 1)
        assert actual.startswith(prefix) and len(actual) == int(count.split()[0]), where
    elif isinstance(expected, str) and ":" in expected and expected.split(":", 1)[0].isdigit():
        assert actual == expected.split(":", 1)[1], where
    else:
        assert str(actual) == str(expected), where


# Fields of the dump our .proto subset leaves out on purpose (skipped on decode).
_UNMODELLED = {"mounts", "hooks", "devices", "rlimits", "oom_score_adj"}


# --- what we send: byte-identical to the capture plugin ------------------------------


def _session_output(capture: str, handler: object, mask: int) -> tuple[list[bytes], list[bytes]]:
    """Replay the runtime's frames of a capture into a PluginSession; return what the
    capture plugin sent and what ours sends, frame by frame."""
    session = PluginSession(PluginService(handler, mask), "resctrl-pipeline", "10")
    session.start()
    ours = [session.take_output()]
    theirs: list[bytes] = []
    for direction, frame in load_frames(capture):
        if direction == ">":
            theirs.append(frame)
        else:
            session.receive(frame)
            out = session.take_output()
            if out:
                ours.append(out)
    return theirs, ours


@pytest.mark.parametrize("version", ["c17", "c2x"])
def test_replayed_session_produces_the_captured_plugin_bytes(version: str) -> None:
    """Register, Configure (0x7FF), Synchronize, every event: byte for byte."""
    theirs, ours = _session_output(f"{version}-session-gen1-full.hex", Recorder(), 0x7FF)
    # The capture plugin held back its reply to the last request on purpose.
    assert ours[: len(theirs)] == theirs
    assert len(ours) == len(theirs) + 1
    assert ours[-1] == bytes.fromhex("000000010000000a000000000000001b0200")


def test_register_frame_is_the_reference_worked_example() -> None:
    session = PluginSession(PluginService(NriListener(), 0x425), "resctrl-pipeline", "10")
    session.start()
    assert session.take_output() == load_frames("c2x-register.hex")[0][1]


def test_reference_configure_reply_and_unimplemented_body() -> None:
    # nri-protocol.md §9: mask 0x062d and the UNIMPLEMENTED body for RunPodSandbox.
    body = nri_pb2.ConfigureResponse(events=0x062D).SerializeToString()
    assert encode_frames(1, encode_response(1, body)) == bytes.fromhex(
        "000000010000000f0000000500000001020012" + "0310ad0c"
    )
    error = encode_response(9, code=Code.UNIMPLEMENTED, message="method RunPodSandbox")
    assert error[10:] == bytes.fromhex("0a18080c12146d6574686f642052756e506f6453616e64626f78")


@pytest.mark.parametrize("version", ["c17", "c2x"])
def test_error_reply_is_byte_identical(version: str) -> None:
    frames = load_frames(f"{version}-create-container-error.hex")
    captured = next(f for d, f in frames if d == ">" and len(f) == 8 + 66)
    ours = encode_frames(
        1,
        encode_response(
            7, code=Code.UNKNOWN, message="resctrl-pipeline: injected CreateContainer failure"
        ),
    )
    assert ours == captured


def test_split_sync_reply_matches_the_oversized_split_capture() -> None:
    doc = load_json("c2x-synchronize-oversized-split.json")
    replies = [
        bytes.fromhex(f["hex"]) for f in doc["frames"] if f["dir"] == ">" and f["mux_conn"] == 1
    ]
    more = nri_pb2.SynchronizeResponse(more=True).SerializeToString()
    assert encode_frames(1, encode_response(5, more)) in replies


def test_split_sync_frames_are_reassembled() -> None:
    """The 4096 + 3858953 byte frames of the oversized split capture, rebuilt from
    their headers: our reader takes the big frame and finds the message boundary."""
    doc = load_json("c2x-synchronize-oversized-split.json")
    big = [f for f in doc["frames"] if f["dir"] == "<" and f["mux_len"] > 4096]
    assert big and max(f["mux_len"] for f in big) > 3_000_000
    for frame in big:
        reader = FrameReader()
        header = bytes.fromhex(frame["first_bytes_hex"])[:8]
        pieces = list(reader.feed(header + bytes(frame["mux_len"])))
        assert sum(len(p) for _, p in pieces) == frame["mux_len"]
        assert reader.idle


def test_registration_refusal_is_fatal_for_the_session() -> None:
    """c2x-register-bad-idx: the runtime answers code 2 and keeps the socket open, so
    the session must fail by itself."""
    session = PluginSession(PluginService(NriListener(), 0x425), "resctrl-pipeline", "10")
    session.start()
    reply = next(f for d, f in load_frames("c2x-register-bad-idx.hex") if d == "<")
    with pytest.raises(SessionFailed) as err:
        session.receive(reply)
    assert err.value.reason == "registration_refused"
    assert "must be 2 digits" in str(err.value)
