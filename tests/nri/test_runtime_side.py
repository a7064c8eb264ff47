"""The emulated runtime behaves like containerd where our tests rely on it.

Most checks pair the two sans-I/O machines in memory (RuntimeSession ↔ PluginSession)
and move bytes between them by hand, so every step is deterministic.
"""

from __future__ import annotations

import os
import socket

import pytest

from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
from resctrl_pipeline.emulator.runtime_session import (
    Delivery,
    Phase,
    PluginGone,
    RuntimeSession,
    go_frames,
)
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.events import Event
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.mux import MAX_SEND_PAYLOAD, FrameReader
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig
from resctrl_pipeline.nri.service import PluginService
from resctrl_pipeline.nri.session import PluginSession
from resctrl_pipeline.nri.ttrpc import Code, RpcError

from .support import PluginLoop, Recorder, poll_until

POD = nri_pb2.PodSandbox(id="sb", uid="u", name="p", namespace="ns")
CTR = nri_pb2.Container(id="c", pod_sandbox_id="sb", pid=1)


def _pair(
    service: PluginService,
    pods: list[nri_pb2.PodSandbox] | None = None,
    name: str = "resctrl-pipeline",
    index: str = "10",
    **kw: object,
) -> tuple[RuntimeSession, PluginSession]:
    runtime = RuntimeSession(lambda: (pods or [], []), **kw)  # type: ignore[arg-type]
    plugin = PluginSession(service, name, index)
    plugin.start()
    _pump(runtime, plugin)
    return runtime, plugin


def _pump(runtime: RuntimeSession, plugin: PluginSession) -> None:
    """Move bytes both ways until neither side has anything more to say."""
    while True:
        to_runtime = plugin.take_output()
        if to_runtime:
            runtime.receive(0.0, to_runtime)
        to_plugin = runtime.take_output()
        if to_plugin:
            plugin.receive(to_plugin)
        if not to_runtime and not to_plugin:
            return


def test_handshake_reaches_ready_and_counts_sync_chunks() -> None:
    pods = [nri_pb2.PodSandbox(id=f"sb{i}", uid=f"u{i}") for i in range(5)]
    recorder = Recorder()
    runtime, plugin = _pair(PluginService(recorder, 0x7FF), pods, sync_chunk=2)
    assert runtime.phase is Phase.READY and plugin.synchronized
    assert [a.method for a in runtime.answers] == ["Configure"] + ["Synchronize"] * 3
    assert recorder.synced == [(5, 0)]


def test_unknown_mask_bits_close_the_connection_like_containerd_2_1() -> None:
    runtime = RuntimeSession(lambda: ([], []))
    plugin = PluginSession(PluginService(Recorder(), 0xFFF), "resctrl-pipeline", "10")
    plugin.start()
    with pytest.raises(PluginGone, match="invalid plugin events: 0x800"):
        _pump(runtime, plugin)


def test_bad_index_is_refused_without_closing() -> None:
    runtime = RuntimeSession(lambda: ([], []))
    plugin = PluginSession(PluginService(Recorder(), 0x7FF), "resctrl-pipeline", "1")
    plugin.start()
    runtime.receive(0.0, plugin.take_output())
    reply = runtime.take_output()
    assert b"must be 2 digits" in reply
    assert runtime.phase is Phase.REGISTERING  # no Configure follows, nothing closed


def test_split_sync_must_be_echoed_with_more() -> None:
    class NoEcho(PluginService):
        def call(self, service: str, method: str, payload: bytes) -> bytes:
            reply = super().call(service, method, payload)
            return b"" if method == "Synchronize" else reply

    pods = [nri_pb2.PodSandbox(id=f"sb{i}", uid=f"u{i}") for i in range(3)]
    with pytest.raises(PluginGone, match="split sync"):
        _pair(NoEcho(Recorder(), 0x7FF), pods, sync_chunk=1)


def test_dedicated_delivery_falls_back_to_state_change_for_good() -> None:
    class LegacyPlugin(PluginService):
        """A plugin that only knows StateChange (NRI < v0.12 stubs)."""

        def call(self, service: str, method: str, payload: bytes) -> bytes:
            if method in ("RunPodSandbox", "StartContainer", "RemoveContainer"):
                raise RpcError(Code.UNIMPLEMENTED, f"method {method}")
            return super().call(service, method, payload)

    recorder = Recorder()
    runtime, plugin = _pair(LegacyPlugin(recorder, 0x7FF), delivery=Delivery.DEDICATED)
    runtime.deliver(0.0, Event.RUN_POD_SANDBOX, POD, None)
    _pump(runtime, plugin)
    runtime.deliver(0.0, Event.START_CONTAINER, POD, CTR)
    _pump(runtime, plugin)
    assert [a.method for a in runtime.answers[2:]] == [
        "RunPodSandbox",
        "StateChange",
        "StateChange",  # sticky: no second try of the dedicated method
    ]
    assert runtime.fell_back
    assert [c[0] for c in recorder.calls] == ["run_pod_sandbox", "start_container"]


def test_unsubscribed_events_are_not_sent() -> None:
    runtime, _ = _pair(PluginService(NriListener(), 0x425))
    runtime.deliver(0.0, Event.CREATE_CONTAINER, POD, CTR)
    runtime.deliver(0.0, Event.POST_START_CONTAINER, POD, CTR)
    assert not runtime.busy and runtime.take_output() == b""


def test_unanswered_call_misses_its_deadline() -> None:
    runtime, _ = _pair(PluginService(NriListener(), 0x425), request_timeout=2.0)
    runtime.deliver(10.0, Event.RUN_POD_SANDBOX, POD, None)
    runtime.check_deadline(11.9)
    with pytest.raises(PluginGone, match="deadline exceeded"):
        runtime.check_deadline(12.1)


def test_go_framing_is_4096_then_the_rest() -> None:
    message = bytes(10_000)
    frames = go_frames(1, message)
    sizes = [len(p) for _, p in FrameReader().feed(frames)]
    assert sizes == [MAX_SEND_PAYLOAD, 10_000 - MAX_SEND_PAYLOAD]


def test_big_messages_cross_the_socket_in_go_sized_frames(short_tmp: str) -> None:
    """A pod with a ~4 MiB annotation: one Synchronize of 4096 + ~4 MiB frames, then a
    split one; the plugin reassembles both."""
    path = f"{short_tmp}/nri.sock"
    with EmulatedNriRuntime(path, sync_chunk=1) as runtime:
        runtime.add_pod("big", "ns", "big", annotations={"x": "B" * (4 * 1024 * 1024 - 2000)})
        runtime.add_pod("small", "ns", "small")
        runtime.add_container("c1", "small", pid=os.getpid())
        plugin = NriPlugin(NriListener(), PluginConfig(socket_path=path, backoff_initial=0.05))
        with PluginLoop(plugin) as loop:
            assert poll_until(lambda: plugin.connected, 10)
            runtime.add_pod("big2", "ns", "big2", annotations={"y": "C" * 3_000_000})
            assert runtime.wait_until(runtime.idle, 10)
            assert poll_until(lambda: len(loop.messages()) == 4)
            assert runtime.closed_reasons() == []
    lifecycle = loop.messages()[0]
    assert [p.uid for p in lifecycle.pods] == ["big", "small"]  # type: ignore[union-attr]
    assert [type(m).__name__ for m in loop.messages()[2:]] == ["PodUp", "PodLabels"]


def test_runtime_drops_a_plugin_that_never_answers(short_tmp: str) -> None:
    path = f"{short_tmp}/nri.sock"
    with EmulatedNriRuntime(path, request_timeout=0.2) as runtime:
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.connect(path)
        session = PluginSession(PluginService(NriListener(), 0x425), "mute", "10")
        session.start()
        mute.sendall(session.take_output())  # registers, then never answers Configure
        assert runtime.wait_until(lambda: bool(runtime.closed_reasons()), 5)
        assert runtime.closed_reasons() == ["Configure: context deadline exceeded"]
        mute.settimeout(5)
        while mute.recv(65536):
            pass  # drain the Configure; then EOF, like containerd closing the plugin
        mute.close()
