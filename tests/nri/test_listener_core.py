"""The nri-listener core in the real actor shell, against the emulated runtime."""

from __future__ import annotations

import os
from collections.abc import Callable

import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.actor import Actor, ActorSettings
from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
from resctrl_pipeline.messages import (
    ContainerUp,
    LifecycleSnapshot,
    Message,
    MetadataSnapshot,
    PodLabels,
    PodUp,
)
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.listener_core import LatencyHistogram, NriListenerCore
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig
from resctrl_pipeline.topology import endpoint


def _core(socket_path: str) -> NriListenerCore:
    listener = NriListener()
    plugin = NriPlugin(
        listener, PluginConfig(socket_path=socket_path, backoff_initial=0.05, backoff_max=0.2)
    )
    return NriListenerCore(plugin, listener)


def _puller(runtime_dir: str, edge: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint(runtime_dir, edge))
    return sock


def _received(sock: zmq.Socket[bytes], into: list[Message]) -> list[Message]:
    while sock.poll(0):
        into.append(codec.decode(sock.recv()).body)
    return into


def test_no_snapshot_before_the_first_synchronize(short_tmp: str) -> None:
    core = _core(f"{short_tmp}/absent.sock")
    assert core.on_start(0.0) == []  # nothing listens: connect refused, backoff
    assert core.watched_fds() == []
    # An empty snapshot now would make the reconciler delete every group.
    assert core.snapshot("lifecycle") is None and core.snapshot("metadata") is None
    stats = core.statistics()
    assert stats.ready == {"nri_connected": False}
    assert stats.counters["nri_connect_failures"] == 1
    assert "not registered" in stats.info["nri_connected"]


def test_histogram_counters_are_cumulative() -> None:
    hist = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.002, 0.002, 5.0):
        hist.observe(seconds)
    assert hist.counters("a") == {
        "a_bucket_le_0.001": 1.0,
        "a_bucket_le_0.01": 3.0,
        "a_bucket_le_inf": 4.0,
        "a_sum": 5.0045,
        "a_count": 4.0,
    }
    assert hist.window_max == 5.0


def test_actor_shell_runs_the_listener_through_a_runtime_restart(short_tmp: str) -> None:
    socket_path = f"{short_tmp}/nri.sock"
    lifecycle = _puller(short_tmp, "lifecycle")
    metadata = _puller(short_tmp, "metadata")
    settings = ActorSettings(
        runtime_dir=short_tmp,
        channel_capacity=64,
        snapshot_interval=60.0,
        install_signal_handlers=False,
    )
    got_lifecycle: list[Message] = []
    got_metadata: list[Message] = []
    with EmulatedNriRuntime(socket_path) as runtime:
        runtime.add_pod("u1", "ns", "p1", "/kubepods/podu1")
        actor = Actor(_core(socket_path), settings)
        try:

            def step_until(predicate: Callable[[], bool], limit: int = 500) -> bool:
                for _ in range(limit):
                    actor.step(max_wait=0.02)
                    _received(lifecycle, got_lifecycle)
                    _received(metadata, got_metadata)
                    if predicate():
                        return True
                return False

            # No on_start here: the core's first deadline (the backoff, due at once) connects.
            assert step_until(lambda: len(got_lifecycle) == 1 and len(got_metadata) == 1)
            assert got_lifecycle[0] == LifecycleSnapshot(
                pods=(PodUp("u1", "ns", "p1", "/kubepods/podu1"),)
            )
            assert got_metadata[0] == MetadataSnapshot(pods=(PodLabels("u1", "ns", "p1"),))

            runtime.add_container("c1", "u1", pid=os.getpid())
            assert step_until(lambda: len(got_lifecycle) == 2)
            assert got_lifecycle[1] == ContainerUp("c1", "u1", "/kubepods/podu1/c1", os.getpid())

            runtime.restart(downtime=0.1)  # new socket, new fd: the shell must follow
            assert step_until(lambda: len(got_lifecycle) == 3)
            assert isinstance(got_lifecycle[2], LifecycleSnapshot)
            assert got_lifecycle[2].containers[0].id == "c1"
            stats = actor.stats()
            assert stats.ready["nri_connected"] is True
            assert stats.counters["nri_registrations"] == 2
            assert stats.counters["nri_answer_seconds_count"] >= 1
            assert stats.gauges["nri_pods"] == 1.0
        finally:
            actor.close()
            lifecycle.close()
            metadata.close()
