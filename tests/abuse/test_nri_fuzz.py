"""Hostile bytes from the NRI runtime, against the running listener process.

``tests/nri`` fuzzes the protocol stack in-process; here the same kinds of input reach
the real ``nri-listener`` of a running ``up`` through ``EmulatedNriRuntime.inject``:
Hypothesis-generated frames at the multiplexer, ttrpc and protobuf layers, headers that
announce up to 4 GiB, and a peer that sends one byte at a time. After each input the
listener is the same process, and it keeps serving — on the same connection, or after
dropping a connection it could no longer trust and registering again.
"""

from __future__ import annotations

import itertools
import struct
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.mux import MAX_RECV_PAYLOAD, encode_frames, frame_header
from resctrl_pipeline.nri.service import PLUGIN_SERVICE
from resctrl_pipeline.nri.ttrpc import MAX_BODY, MAX_SKIP, encode_message, encode_request
from tests.abuse.conftest import Witness
from tests.faults.harness import rss_bytes
from tests.prerequisites import requires
from tests.support import fuzz_examples, poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

#: Each example is a round trip through the running listener: few on a developer's run,
#: CI's profile raises it (tests/support.py: fuzz_examples); seeds are random per run.
FUZZ = settings(
    max_examples=fuzz_examples(10), deadline=None, suppress_health_check=list(HealthCheck)
)
#: Methods a runtime may call on the plugin, plus nonsense. Not ``Synchronize``: a
#: Synchronize, whatever it lists, is authoritative by protocol.
METHODS = [
    "Configure",
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
    "",
    "\x00" * 3,
]
_stream_ids = itertools.count(2**31 + 1, 2)


def _requests_served(w: Witness) -> float:
    counters = w.h.actor("nri-listener").get("counters", {})
    return float(sum(v for k, v in counters.items() if k.startswith("nri_requests.")))


def _serving(w: Witness, timeout: float = 15) -> None:
    """The listener is the same process and a runtime call gets answered: a pod
    started now is delivered (as an event, or in the Synchronize of a new connection)
    and answered, and no call is left in flight."""
    h = w.h
    rt = h.node.runtime
    assert h.pid("nri-listener") == w.pids["nri-listener"], "the listener was restarted"
    uid = str(uuid.uuid4())
    answered = len(rt.answers())
    rt.add_pod(uid, "ping", "ping", "/kubepods/besteffort/pod" + uid)
    poll_until(
        lambda: (
            rt.ready_plugins() == 1
            and rt.idle()
            and any(a.code == 0 for a in rt.answers()[answered:])
        ),
        timeout,
        interval=0.02,
        what="the listener answering the runtime",
    )
    rt.remove_pod(uid)
    poll_until(
        lambda: rt.ready_plugins() == 1 and rt.idle(),
        timeout,
        interval=0.02,
        what="the listener answering the runtime",
    )


def _inject(w: Witness, data: bytes) -> None:
    rt = w.h.node.runtime
    assert w.h.pid("nri-listener") == w.pids["nri-listener"], "the listener was restarted"
    poll_until(
        lambda: rt.ready_plugins() == 1 and rt.idle(),
        15,
        interval=0.02,
        what="a registered listener",
    )
    assert rt.inject(data) == 1


@FUZZ
@given(
    frames=st.lists(
        st.tuples(
            st.one_of(st.sampled_from([0, 1, 2, 3, 2**32 - 1]), st.integers(0, 2**32 - 1)),
            st.one_of(
                st.integers(0, 48),
                st.sampled_from([MAX_RECV_PAYLOAD, MAX_RECV_PAYLOAD + 1, 2**31, 2**32 - 1]),
            ),
            st.binary(max_size=48),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mux_layer_frames(pipeline: Witness, frames: list[tuple[int, int, bytes]]) -> None:
    _inject(pipeline, b"".join(frame_header(c, n) + p for c, n, p in frames))
    _serving(pipeline)


@FUZZ
@given(
    conn=st.sampled_from([1, 2]),
    length=st.one_of(
        st.integers(0, 64),
        st.sampled_from([MAX_BODY, MAX_BODY + 1, MAX_SKIP, MAX_SKIP + 1, 2**32 - 1]),
    ),
    stream=st.one_of(st.integers(0, 2**32 - 1).map(lambda s: s & ~1), st.just(1)),
    mtype=st.integers(0, 255),
    flags=st.integers(0, 255),
    body=st.binary(max_size=64),
)
def test_ttrpc_layer_messages(
    pipeline: Witness, conn: int, length: int, stream: int, mtype: int, flags: int, body: bytes
) -> None:
    # Request stream ids stay even (refused by the stream rules) so that the runtime's
    # own next calls keep valid ids; replies may name any stream.
    header = struct.pack(">IIBB", length, stream, mtype, flags)
    _inject(pipeline, encode_frames(conn, header + body[:length]))
    _serving(pipeline)


PROTOBUF_CALLS = st.lists(
    st.tuples(
        st.sampled_from(METHODS),
        st.one_of(
            st.binary(max_size=256),
            st.builds(
                lambda e, u, n: nri_pb2.StateChangeEvent(
                    event=e, pod=nri_pb2.PodSandbox(id=u, uid=u, name=n, namespace=n)
                ).SerializeToString(),
                st.integers(0, 30),
                st.text(max_size=40),
                st.text(max_size=40),
            ),
        ),
    ),
    min_size=1,
    max_size=6,
)


def test_protobuf_layer_payloads_then_a_fresh_connection_serves(pipeline: Witness) -> None:
    """Valid framing, odd increasing stream ids above the runtime's: every call reaches
    the protobuf decoder, and every one is served. Those stream ids make the runtime's
    own next calls refused on that connection (by the stream rules), so a runtime
    restart gives a fresh one; pods the garbage announced are gone after its
    Synchronize. (One test, so that it runs alone as well as in the module.)"""
    h = pipeline.h
    rt = h.node.runtime
    before = _requests_served(pipeline)
    sent = [0]

    @settings(
        max_examples=fuzz_examples(25), deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(calls=PROTOBUF_CALLS)
    def inject(calls: list[tuple[str, bytes]]) -> None:
        sent[0] += len(calls)
        _inject(
            pipeline,
            b"".join(
                encode_frames(1, encode_request(next(_stream_ids), PLUGIN_SERVICE, m, p))
                for m, p in calls
            ),
        )

    inject()
    assert sent[0] > 0
    poll_until(
        lambda: _requests_served(pipeline) - before >= sent[0],
        15,
        what=f"all {sent[0]} fuzzed calls served",
    )
    rt.restart(downtime=0)
    _serving(pipeline)
    witnesses = {"pod_" + p.uid for p in pipeline.pods}
    poll_until(
        lambda: set(h.node.fs.tree.groups()) == witnesses, 20, what="only the witnesses' groups"
    )
    pipeline.check()


def _huge_mux() -> bytes:
    return frame_header(1, 2**32 - 1)


def _huge_ttrpc() -> bytes:
    return encode_frames(1, struct.pack(">IIBB", 2**32 - 1, 2, 1, 0))


def _oversized_ttrpc() -> bytes:
    return encode_frames(1, encode_message(2, 1, b"\0" * (5 << 20)), MAX_RECV_PAYLOAD)


@pytest.mark.parametrize(
    ("what", "data", "disconnect"),
    [
        ("mux frame announcing 4 GiB", _huge_mux, "frame_too_large"),
        ("ttrpc message announcing 4 GiB", _huge_ttrpc, "corrupt_stream"),
        ("ttrpc message of 5 MiB (skipped, refused)", _oversized_ttrpc, None),
    ],
)
def test_huge_announced_lengths_allocate_nothing(
    pipeline: Witness, what: str, data: Callable[[], bytes], disconnect: str | None
) -> None:
    h = pipeline.h
    listener = h.pid("nri-listener")
    rss = rss_bytes(listener)
    drops = h.counter("nri-listener", f"nri_disconnects.{disconnect}")
    refused = h.counter("nri-listener", "nri_errors.INVALID_ARGUMENT")
    _inject(pipeline, data())
    if disconnect:
        poll_until(
            lambda: h.counter("nri-listener", f"nri_disconnects.{disconnect}") > drops,
            15,
            what=f"disconnect {disconnect}",
        )
    else:
        poll_until(
            lambda: h.counter("nri-listener", "nri_errors.INVALID_ARGUMENT") > refused,
            15,
            what="the oversized request refused",
        )
    _serving(pipeline)
    assert rss_bytes(listener) - rss < 16 << 20, what  # nothing close to 4 GiB (or 5 MiB)


def test_peer_sending_one_byte_at_a_time(pipeline: Witness) -> None:
    h = pipeline.h
    rt = h.node.runtime
    regs = h.counter("nri-listener", "nri_registrations")
    refused = h.counter("nri-listener", "nri_errors.INVALID_ARGUMENT")
    payload = nri_pb2.StateChangeEvent(event=1).SerializeToString()
    data = encode_frames(1, encode_request(2, PLUGIN_SERVICE, "StateChange", payload))
    poll_until(lambda: rt.ready_plugins() == 1 and rt.idle(), 15, what="registered")
    for i in range(len(data)):
        assert rt.inject(data[i : i + 1]) == 1
    poll_until(
        lambda: h.counter("nri-listener", "nri_errors.INVALID_ARGUMENT") > refused,
        15,
        what="the trickled request answered",
    )
    _serving(pipeline)
    assert h.counter("nri-listener", "nri_registrations") == regs  # same connection
    pipeline.check()
