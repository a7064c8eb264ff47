"""The plugin against the emulated runtime: handshake, sync, events, reconnects."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

import pytest

from resctrl_pipeline.emulator.nri_runtime import Delivery, EmulatedNriRuntime
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.messages import (
    ContainerDown,
    ContainerUp,
    LifecycleSnapshot,
    MetadataSnapshot,
    PodDown,
    PodLabels,
    PodLabelsGone,
    PodUp,
)
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.plugin import Backoff, NriPlugin, PluginConfig

from .support import PluginLoop, Recorder, poll_until

PID = os.getpid()  # a real process as every container's init


@pytest.fixture
def sock_path(short_tmp: str) -> str:
    return f"{short_tmp}/nri.sock"  # unix socket paths must stay under 108 bytes


def _config(path: str, **kw: float) -> PluginConfig:
    return PluginConfig(socket_path=path, backoff_initial=0.05, backoff_max=0.4, **kw)  # type: ignore[arg-type]


@pytest.fixture
def runtime(sock_path: str) -> Iterator[EmulatedNriRuntime]:
    with EmulatedNriRuntime(sock_path) as rt:
        yield rt


def _snapshots(loop: PluginLoop) -> list[LifecycleSnapshot]:
    return [m for m in loop.messages() if isinstance(m, LifecycleSnapshot)]


def test_handshake_registers_with_name_index_and_mask(
    runtime: EmulatedNriRuntime, sock_path: str
) -> None:
    plugin = NriPlugin(NriListener(), _config(sock_path))
    with PluginLoop(plugin) as loop:
        assert poll_until(lambda: plugin.connected)
        (info,) = runtime.plugins()
        assert (info.name, info.index, info.mask, info.phase) == (
            "resctrl-pipeline",
            "10",
            0x425,
            "ready",
        )
        assert plugin.gauges()["nri_connected"] == 1.0
        # An empty node still gives both (empty) snapshots: "ready" needs them.
        assert poll_until(lambda: len(loop.messages()) == 2)
        assert loop.messages() == [LifecycleSnapshot(), MetadataSnapshot()]
    methods = [a.method for a in runtime.answers()]
    assert methods == ["Configure", "Synchronize"]


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_synchronize_lists_pods_and_containers_as_snapshots(
    sock_path: str, chunk: int | None
) -> None:
    with EmulatedNriRuntime(sock_path, sync_chunk=chunk) as runtime:
        for i in range(3):
            runtime.add_pod(f"uid-{i}", "ns", f"pod-{i}", f"/kubepods/besteffort/poduid-{i}")
            runtime.add_container(f"ctr-{i}", f"uid-{i}", pid=PID)
        runtime.add_pod("uid-empty", "ns2", "empty", "kubepods-podempty.slice")
        plugin = NriPlugin(NriListener(), _config(sock_path))
        with PluginLoop(plugin) as loop:
            assert poll_until(lambda: plugin.connected)
            assert poll_until(lambda: len(loop.messages()) == 2)
        lifecycle, metadata = loop.messages()
        assert isinstance(lifecycle, LifecycleSnapshot)
        assert [p.uid for p in lifecycle.pods] == ["uid-0", "uid-1", "uid-2", "uid-empty"]
        assert lifecycle.pods[3].cgroup_parent == "kubepods-podempty.slice"
        assert lifecycle.containers == tuple(
            ContainerUp(f"ctr-{i}", f"uid-{i}", f"/kubepods/besteffort/poduid-{i}/ctr-{i}", PID)
            for i in range(3)
        )
        assert metadata == MetadataSnapshot(
            tuple(PodLabels(p.uid, p.namespace, p.name) for p in lifecycle.pods)
        )
        chunks = sum(1 for a in runtime.answers() if a.method == "Synchronize")
        assert chunks == {None: 1, 1: 4, 2: 2}[chunk]


@pytest.mark.parametrize("delivery", list(Delivery))
def test_every_event_kind_arrives_in_either_delivery_style(
    sock_path: str, delivery: Delivery
) -> None:
    recorder = Recorder()
    with EmulatedNriRuntime(sock_path, delivery=delivery) as runtime:
        plugin = NriPlugin(recorder, _config(sock_path))
        with PluginLoop(plugin):
            assert poll_until(lambda: plugin.connected)
            runtime.add_pod("u1", "ns", "p1", "/kubepods/podu1")
            runtime.add_container("c1", "u1", pid=PID)
            runtime.update_container("c1")
            runtime.remove_container("c1")
            runtime.add_container("c2", "u1", pid=PID)
            runtime.remove_pod("u1")
            assert runtime.wait_until(runtime.idle, 5)
            assert not any(p.fell_back for p in runtime.plugins())
        answers = runtime.answers()[2:]  # after Configure and Synchronize
    assert [name for name, _, _ in recorder.calls] == [
        "run_pod_sandbox",
        "create_container",
        "post_create_container",
        "start_container",
        "post_start_container",
        "update_container",
        "post_update_container",
        "stop_container",
        "remove_container",
        "create_container",
        "post_create_container",
        "start_container",
        "post_start_container",
        "stop_container",
        "stop_pod_sandbox",
        "remove_container",
        "remove_pod_sandbox",
    ]
    assert all(a.code == 0 for a in answers)
    dedicated = {"CreateContainer", "UpdateContainer", "StopContainer"}
    for answer in answers:
        if delivery is Delivery.STATE_CHANGE:
            assert answer.method in dedicated | {"StateChange"}
        else:
            assert answer.method != "StateChange"


@pytest.mark.parametrize("delivery", list(Delivery))
def test_listener_turns_events_into_deltas(sock_path: str, delivery: Delivery) -> None:
    with EmulatedNriRuntime(sock_path, delivery=delivery) as runtime:
        placed: list[tuple[str, int]] = []
        listener = NriListener(place_init_pid=lambda uid, pid: placed.append((uid, pid)))
        plugin = NriPlugin(listener, _config(sock_path))
        with PluginLoop(plugin) as loop:
            assert poll_until(lambda: plugin.connected)
            runtime.add_pod("u1", "ns", "p1", "/kubepods/podu1")
            runtime.add_container("c1", "u1", pid=PID)
            runtime.remove_container("c1")
            runtime.add_container("c2", "u1", "custom:cri-containerd:c2", pid=PID)
            runtime.remove_pod("u1")
            assert runtime.wait_until(runtime.idle, 5)
        deltas = loop.messages()[2:]
    assert deltas == [
        PodUp("u1", "ns", "p1", "/kubepods/podu1"),
        PodLabels("u1", "ns", "p1"),
        ContainerUp("c1", "u1", "/kubepods/podu1/c1", PID),
        ContainerDown("c1", "u1"),
        ContainerUp("c2", "u1", "custom:cri-containerd:c2", PID),
        ContainerDown("c2", "u1"),
        PodDown("u1"),
        PodLabelsGone("u1"),
    ]
    assert placed == [("u1", PID), ("u1", PID)]


def test_reconnects_after_runtime_restart_with_a_fresh_snapshot(
    runtime: EmulatedNriRuntime, sock_path: str
) -> None:
    runtime.add_pod("u1", "ns", "p1", "/kubepods/podu1")
    runtime.add_pod("u2", "ns", "p2", "/kubepods/podu2")
    plugin = NriPlugin(NriListener(), _config(sock_path))
    with PluginLoop(plugin) as loop:
        assert poll_until(lambda: plugin.connected)
        runtime.restart(downtime=0.3)
        assert poll_until(lambda: not plugin.connected)
        runtime.remove_pod("u2")  # gone while the plugin was away: no event for it
        assert poll_until(lambda: plugin.connected)
        assert poll_until(lambda: len(_snapshots(loop)) == 2)
        first, second = _snapshots(loop)
    assert [p.uid for p in first.pods] == ["u1", "u2"]
    assert [p.uid for p in second.pods] == ["u1"]
    counters = plugin.all_counters()
    assert counters["nri_registrations"] == 2
    assert counters["nri_disconnects.eof"] == 1
    assert counters["nri_connect_failures"] >= 1  # refused while the runtime was down
    assert counters["nri_requests.Configure"] == 2  # kept across the reconnect


def test_waits_for_a_socket_that_appears_later(sock_path: str) -> None:
    plugin = NriPlugin(NriListener(), _config(sock_path))
    with PluginLoop(plugin):
        assert poll_until(lambda: plugin.all_counters().get("nri_connect_failures", 0) >= 2)
        assert not plugin.connected and plugin.fileno() == -1
        with EmulatedNriRuntime(sock_path):
            assert poll_until(lambda: plugin.connected)


def test_stalled_runtime_is_given_up_and_retried_with_backoff(
    runtime: EmulatedNriRuntime, sock_path: str
) -> None:
    runtime.set_stall(True)
    plugin = NriPlugin(NriListener(), _config(sock_path, setup_timeout=0.2))
    with PluginLoop(plugin):
        assert poll_until(
            lambda: plugin.all_counters().get("nri_disconnects.setup_timeout", 0) >= 2
        )
        assert not plugin.connected
        runtime.set_stall(False)
        assert poll_until(lambda: plugin.connected)
    # 0.2 s timeout + growing backoff: a handful of attempts, never a storm.
    assert runtime.accepted < 10


def test_backoff_is_capped_exponential_and_never_a_tight_loop() -> None:
    attempts: list[float] = []
    clock = [0.0]

    def refuse(path: str) -> socket.socket:
        attempts.append(clock[0])
        raise ConnectionRefusedError(111, "Connection refused")

    plugin = NriPlugin(
        NriListener(),
        PluginConfig(socket_path="/nonexistent", backoff_initial=0.5, backoff_max=30.0),
        connect=refuse,
    )
    # Drive the timer far more often than needed, as a busy poll loop would.
    while clock[0] < 300:
        plugin.on_timer(clock[0])
        clock[0] = round(clock[0] + 0.01, 2)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[:7] == pytest.approx([0.5, 1, 2, 4, 8, 16, 30], abs=0.011)
    assert max(gaps) <= 30.01
    assert len(attempts) < 20
    assert plugin.next_deadline() > clock[0] - 0.01


def test_backoff_resets_after_a_synchronized_connection() -> None:
    backoff = Backoff(0.5, 4)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1, 2, 4, 4]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_plugin_identity_is_validated() -> None:
    with pytest.raises(ConfigError, match="two digits"):
        PluginConfig(index="1")
    with pytest.raises(ConfigError, match="plugin_name"):
        PluginConfig(name="bad name/..")
    assert PluginConfig(name="other", index="99").index == "99"
