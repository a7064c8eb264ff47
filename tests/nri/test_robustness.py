"""Bad input: fuzzed frames and payloads, truncation, oversize, slow and broken peers.

Socket-level tests drive the plugin through a socketpair whose other end the test
writes by hand, so every step is deterministic: the test writes, calls
``on_readable`` and reads the answer, with no waiting.
"""

from __future__ import annotations

import socket
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.mux import (
    MAX_RECV_PAYLOAD,
    FrameReader,
    FrameTooLarge,
    encode_frames,
    frame_header,
)
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig
from resctrl_pipeline.nri.service import PLUGIN_SERVICE, PluginService
from resctrl_pipeline.nri.session import PluginSession, SessionFailed
from resctrl_pipeline.nri.ttrpc import (
    MAX_BODY,
    Message,
    MessageReader,
    decode_response,
    encode_message,
    encode_request,
    encode_response,
)

from .support import PluginLoop, poll_until

METHODS = [
    "Configure",
    "Synchronize",
    "Shutdown",
    "StateChange",
    "CreateContainer",
    "UpdateContainer",
    "StopContainer",
    "RunPodSandbox",
    "StartContainer",
    "RemoveContainer",
    "RemovePodSandbox",
    "PostStartContainer",
    "Bogus",
]


def _session() -> PluginSession:
    session = PluginSession(PluginService(NriListener(), 0x425), "resctrl-pipeline", "10")
    session.start()
    session.take_output()
    return session


def _replies(wire: bytes) -> list[Message]:
    frames, reader = FrameReader(), MessageReader()
    out = []
    for conn, piece in frames.feed(wire):
        assert conn == 1  # we only ever answer on the plugin-service connection
        out += [m for m in reader.feed(piece) if isinstance(m, Message)]
    return out


def _request(stream: int, method: str, payload: bytes = b"") -> bytes:
    return encode_frames(1, encode_request(stream, PLUGIN_SERVICE, method, payload))


# --- fuzzing the sans-I/O session ------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=97))
def test_arbitrary_bytes_never_crash_and_stay_bounded(data: bytes, step: int) -> None:
    session = _session()
    try:
        for i in range(0, len(data), step):
            session.receive(data[i : i + step])
    except (FrameTooLarge, SessionFailed):
        return  # the documented way to say "drop this connection"
    assert session.buffered <= MAX_BODY
    for reply in _replies(session.take_output()):
        decode_response(reply.body)  # whatever we send is a well-formed reply


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(METHODS), st.binary(max_size=300)), max_size=12))
def test_every_fuzzed_request_gets_exactly_one_reply(calls: list[tuple[str, bytes]]) -> None:
    session = _session()
    wire = b"".join(_request(2 * i + 1, m, p) for i, (m, p) in enumerate(calls))
    session.receive(wire)
    replies = _replies(session.take_output())
    assert [r.stream_id for r in replies] == [2 * i + 1 for i in range(len(calls))]
    for reply, (method, _) in zip(replies, calls, strict=True):
        status = decode_response(reply.body).status
        if method == "Bogus":
            assert (status.code, status.message) == (12, "method Bogus")


@settings(max_examples=200)
@given(
    st.builds(
        nri_pb2.StateChangeEvent,
        event=st.integers(min_value=0, max_value=20),
        pod=st.builds(nri_pb2.PodSandbox, id=st.text(max_size=5), uid=st.text(max_size=5)),
        container=st.builds(
            nri_pb2.Container,
            id=st.text(max_size=5),
            pod_sandbox_id=st.text(max_size=5),
            pid=st.integers(min_value=0, max_value=2**32 - 1),
        ),
    )
)
def test_any_well_formed_state_change_is_answered_with_success(
    change: nri_pb2.StateChangeEvent,
) -> None:
    session = _session()
    session.receive(_request(1, "StateChange", change.SerializeToString()))
    (reply,) = _replies(session.take_output())
    assert reply.body == b""  # empty success, whatever the event's content


def test_invented_method_names_and_event_numbers_do_not_grow_the_counters() -> None:
    """Counter names become metric labels: a peer must not be able to mint new ones."""
    session = _session()
    invented = [f"Method{i}" for i in range(200)]
    wire = b"".join(_request(2 * i + 1, m) for i, m in enumerate(invented))
    events = [
        nri_pb2.StateChangeEvent(pod=nri_pb2.PodSandbox(id="p")).SerializeToString()
        + b"\x08" + bytes([n])  # field 1 (event), an unknown number
        for n in range(30, 127)
    ]
    wire += b"".join(_request(1001 + 2 * i, "StateChange", e) for i, e in enumerate(events))
    session.receive(wire)
    assert len(_replies(session.take_output())) == len(invented) + len(events)
    counters = {**session.counters, **session.service.counters}
    assert counters["requests.other"] == len(invented)
    assert counters["requests.StateChange"] == len(events)
    assert counters["event_ignored.other"] == len(events)
    assert not [k for k in counters if k.startswith("requests.Method")]
    assert not [k for k in counters if k.startswith("event_ignored.EVENT_")]


def test_oversized_ttrpc_message_is_refused_and_the_next_one_served() -> None:
    session = _session()
    big = encode_message(1, 1, b"\0" * (MAX_BODY + 1))
    session.receive(encode_frames(1, big, max_payload=MAX_RECV_PAYLOAD) + _request(3, "Shutdown"))
    first, second = _replies(session.take_output())
    assert (first.stream_id, decode_response(first.body).status.code) == (
        1,
        8,
    )  # RESOURCE_EXHAUSTED
    assert (second.stream_id, second.body) == (3, b"")


def test_request_rules_even_and_replayed_stream_ids() -> None:
    session = _session()
    session.receive(_request(5, "Shutdown") + _request(4, "Shutdown") + _request(5, "Shutdown"))
    replies = _replies(session.take_output())
    assert [decode_response(r.body).status.code for r in replies] == [0, 3, 3]


def test_configure_may_arrive_before_the_registration_reply() -> None:
    session = PluginSession(PluginService(NriListener(), 0x425), "resctrl-pipeline", "10")
    session.start()
    session.take_output()
    configure = nri_pb2.ConfigureRequest(runtime_name="containerd").SerializeToString()
    session.receive(_request(1, "Configure", configure))
    (reply,) = _replies(session.take_output())
    assert nri_pb2.ConfigureResponse.FromString(decode_response(reply.body).payload).events == 0x425
    assert not session.registered
    session.receive(encode_frames(2, encode_response(1)))
    assert session.registered


# --- the socket shell against a hand-driven peer --------------------------------------


class Peer:
    """The runtime end of a socketpair handed to the plugin."""

    def __init__(self) -> None:
        self.sock, self._plugin_end = socket.socketpair()
        self.sock.setblocking(False)
        self.plugin = NriPlugin(
            NriListener(),
            PluginConfig(socket_path="unused", backoff_initial=1.0),
            connect=self._connect,
        )
        self.now = 0.0

    def _connect(self, path: str) -> socket.socket:
        self._plugin_end.setblocking(False)
        return self._plugin_end

    def start(self) -> bytes:
        self.plugin.on_timer(self.now)
        return self.read()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.plugin.on_readable(self.now)

    def read(self) -> bytes:
        try:
            return self.sock.recv(1 << 20)
        except BlockingIOError:
            return b""

    def register(self) -> None:
        assert self.start()  # RegisterPlugin
        self.send(encode_frames(2, encode_response(1)))


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.plugin.close()
    p.sock.close()


def test_a_peer_sending_one_byte_at_a_time_never_stalls_the_loop(peer: Peer) -> None:
    peer.register()
    wire = _request(1, "Configure", nri_pb2.ConfigureRequest().SerializeToString())
    slowest = 0.0
    for i, byte in enumerate(wire):
        start = time.monotonic()
        peer.send(bytes([byte]))
        slowest = max(slowest, time.monotonic() - start)
        if i < len(wire) - 1:
            assert peer.read() == b""  # nothing to answer yet, and no waiting for it
    (reply,) = _replies(peer.read())
    assert reply.stream_id == 1
    assert slowest < 0.1


def test_unknown_method_is_answered_unimplemented_over_the_socket(peer: Peer) -> None:
    peer.register()
    peer.send(_request(1, "Frobnicate"))
    (reply,) = _replies(peer.read())
    status = decode_response(reply.body).status
    assert (status.code, status.message) == (12, "method Frobnicate")
    assert peer.plugin.fileno() >= 0


def test_garbage_after_a_valid_frame_answers_first_then_drops(peer: Peer) -> None:
    peer.register()
    garbage = frame_header(1, 0xFFFF_FFFF) + b"\xde\xad"
    tracemalloc.start()
    peer.send(_request(1, "Shutdown") + garbage)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    (reply,) = _replies(peer.read())
    assert reply.body == b""
    assert peer.plugin.fileno() == -1
    assert peer.plugin.all_counters()["nri_disconnects.frame_too_large"] == 1
    assert peak < 1 << 20  # nothing near the announced 4 GiB was allocated
    assert peer.plugin.next_deadline() == pytest.approx(1.0)  # reconnect after backoff


def test_truncated_frame_then_eof_is_a_clean_drop(peer: Peer) -> None:
    peer.register()
    frame = _request(1, "Shutdown")
    peer.send(frame[: len(frame) // 2])
    peer.sock.close()
    peer.plugin.on_readable(peer.now)
    assert peer.plugin.fileno() == -1
    assert peer.plugin.all_counters()["nri_disconnects.eof"] == 1


def test_registration_refusal_closes_our_end(peer: Peer) -> None:
    assert peer.start()
    peer.send(encode_frames(2, encode_response(1, code=2, message="invalid plugin index")))
    assert peer.plugin.fileno() == -1
    assert peer.plugin.all_counters()["nri_disconnects.registration_refused"] == 1
    assert peer.sock.recv(10) == b""  # the runtime keeps it open; we must close it


def test_runtime_garbage_makes_the_plugin_reconnect(short_tmp: str) -> None:
    path = f"{short_tmp}/nri.sock"
    with EmulatedNriRuntime(path) as runtime:
        runtime.add_pod("u1", "ns", "p1")
        plugin = NriPlugin(
            NriListener(), PluginConfig(socket_path=path, backoff_initial=0.05, backoff_max=0.2)
        )
        with PluginLoop(plugin):
            assert poll_until(lambda: plugin.connected)
            assert runtime.inject(frame_header(1, 2**32 - 1)) == 1
            assert poll_until(lambda: plugin.all_counters()["nri_registrations"] == 2)
            assert plugin.connected
        assert plugin.all_counters()["nri_disconnects.frame_too_large"] == 1
