"""Our NRI stack against a real containerd: handshake, events, restart, a burst.

Needs root and ``scripts/containerd-setup.sh``; skips with the reason otherwise (see
``conftest.py``). The runtime generation under test is whatever is installed (1.7 or
2.x). Independent of the rest of the pipeline: only ``resctrl_pipeline.nri``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from resctrl_pipeline.messages import ContainerUp, PodLabels, PodUp
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig
from tests.e2e.conftest import PodFactory
from tests.e2e.containerd.burst import run_burst
from tests.e2e.containerd.cgroups import container_cgroup_dirs
from tests.e2e.containerd.cri import CriClient
from tests.e2e.containerd.daemon import Containerd
from tests.e2e.containerd.nri_probe import EventRecorder, PluginThread
from tests.e2e.containerd.util import poll_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

TIMEOUT = 10.0  # seconds for any single NRI or cgroup condition


def _config(containerd: Containerd, name: str, index: str) -> PluginConfig:
    return PluginConfig(
        socket_path=str(containerd.paths.nri_socket),
        name=name,
        index=index,
        backoff_initial=0.05,
        backoff_max=0.5,
    )


@pytest.fixture
def recorder(containerd: Containerd) -> Iterator[tuple[EventRecorder, NriPlugin]]:
    """A plugin subscribed to every event, registered before the test body runs."""
    rec = EventRecorder()
    plugin = NriPlugin(rec, _config(containerd, "resctrl-e2e-recorder", "90"))
    with PluginThread(plugin):
        assert poll_until(lambda: plugin.connected, TIMEOUT), (
            "the plugin did not register with containerd; its log:\n" + containerd.log_tail()
        )
        yield rec, plugin


def _wait_for(rec: EventRecorder, uid: str, method: str, containerd: Containerd) -> None:
    assert poll_until(lambda: method in rec.methods(uid), TIMEOUT), (
        f"no {method} for pod {uid}; got {rec.methods(uid)}; containerd log:\n"
        + containerd.log_tail()
    )


def test_handshake_names_the_runtime_and_synchronizes(
    containerd: Containerd, recorder: tuple[EventRecorder, NriPlugin]
) -> None:
    rec, plugin = recorder
    (configure,) = rec.configures()
    assert configure.runtime_name == "containerd"
    assert configure.runtime_version == containerd.installation.version
    assert len(rec.syncs()) == 1
    counters = plugin.all_counters()
    assert counters["nri_requests.Configure"] == 1
    assert counters.get("nri_errors.UNIMPLEMENTED", 0) == 0


def test_pod_and_container_events_carry_identity_cgroup_and_pid(
    containerd: Containerd,
    recorder: tuple[EventRecorder, NriPlugin],
    cri: CriClient,
    pods: PodFactory,
) -> None:
    rec, _ = recorder
    pod, (cid,) = pods.run("probe", "e2e-nri", containers=[["--threads", "3"]])
    state, pid = cri.container_status(cid)
    assert (state, pid > 0) == ("CONTAINER_RUNNING", True)
    _wait_for(rec, pod.uid, "post_start_container", containerd)

    by_method = {c.method: c for c in rec.calls(pod.uid)}
    sandbox = by_method["run_pod_sandbox"].pod
    assert (sandbox.id, sandbox.uid, sandbox.namespace, sandbox.name) == (
        pod.id,
        pod.uid,
        "e2e-nri",
        "probe",
    )
    assert sandbox.linux.cgroup_parent == pod.cgroup_parent
    created = by_method["create_container"].container
    started = by_method["start_container"].container
    assert created is not None and started is not None
    assert (created.id, created.pod_sandbox_id, created.pid) == (cid, pod.id, 0)
    assert created.linux.cgroups_path == f"{pod.cgroup_parent}/{cid}"
    assert (started.id, started.pid) == (cid, pid)

    # The path NRI gave is the container's real cgroup, holding its process and threads
    # (v1: `tasks`, v2: `cgroup.threads`), in every hierarchy that has it.
    dirs = container_cgroup_dirs(started.linux.cgroups_path)
    holding = [d for d in dirs if str(pid) in (d / "cgroup.procs").read_text().split()]
    assert holding, f"pid {pid} in no cgroup of {started.linux.cgroups_path}: {dirs}"
    threads = [d / "tasks" if (d / "tasks").exists() else d / "cgroup.threads" for d in holding]
    assert poll_until(lambda: all(len(t.read_text().split()) == 4 for t in threads), TIMEOUT), (
        f"expected main + 3 threads in {threads}"
    )

    cri.remove_pod(pod.id)
    _wait_for(rec, pod.uid, "remove_pod_sandbox", containerd)
    assert rec.methods(pod.uid) == [
        "run_pod_sandbox",
        "create_container",
        "post_create_container",
        "start_container",
        "post_start_container",
        "stop_container",
        "stop_pod_sandbox",
        "remove_container",
        "remove_pod_sandbox",
    ]
    assert not any(d.exists() for d in holding), "runc removes the container's cgroups"


def test_listener_turns_real_events_into_pipeline_messages(
    containerd: Containerd, cri: CriClient, pods: PodFactory
) -> None:
    plugin = NriPlugin(NriListener(), _config(containerd, "resctrl-pipeline", "10"))
    with PluginThread(plugin) as loop:
        assert poll_until(lambda: plugin.connected, TIMEOUT), containerd.log_tail()
        pod, (cid,) = pods.run("listened", "e2e-listener", containers=[[]])
        _, pid = cri.container_status(cid)
        # The pod's labels as containerd reports them: ours, plus any the runtime adds
        # (containerd adds io.cri-containerd.kind).
        ours = {"resctrl-pipeline.e2e/harness": "1"}

        def labelled(msg: object) -> object:
            if isinstance(msg, PodUp | PodLabels) and ours.items() <= msg.labels.items():
                return replace(msg, labels=ours)
            return msg

        want = [
            PodUp(pod.uid, "e2e-listener", "listened", pod.cgroup_parent, labels=ours),
            PodLabels(pod.uid, "e2e-listener", "listened", labels=ours),
            ContainerUp(cid, pod.uid, f"{pod.cgroup_parent}/{cid}", pid),
        ]

        def got() -> list[object]:
            return [labelled(m) for m in loop.outputs()]

        assert poll_until(lambda: all(m in got() for m in want), TIMEOUT), (
            f"missing {[m for m in want if m not in got()]}; got {loop.outputs()}"
        )


def test_plugin_reconnects_after_containerd_restart_and_resynchronizes(
    containerd: Containerd,
    recorder: tuple[EventRecorder, NriPlugin],
    cri: CriClient,
    pods: PodFactory,
) -> None:
    rec, plugin = recorder
    pod, (cid,) = pods.run("survivor", containers=[[]])
    _, pid = cri.container_status(cid)

    containerd.restart()
    assert poll_until(lambda: len(rec.configures()) == 2 and plugin.connected, TIMEOUT), (
        f"no re-registration after the restart; counters {plugin.all_counters()}; log:\n"
        + containerd.log_tail()
    )
    disconnects = {k: v for k, v in plugin.all_counters().items() if "disconnects" in k}
    assert sum(disconnects.values()) == 1, disconnects
    pods_synced, containers_synced = rec.syncs()[-1]
    assert pod.uid in {p.uid for p in pods_synced}
    assert {(c.id, c.pid) for c in containers_synced} >= {(cid, pid)}

    # Events flow again on the new connection.
    second = cri.run_container(pod, "after-restart", containerd.images.workload)
    assert poll_until(
        lambda: any(
            c.method == "start_container" and c.container is not None and c.container.id == second
            for c in rec.calls(pod.uid)
        ),
        TIMEOUT,
    ), f"no StartContainer for {second} after the restart: {rec.methods(pod.uid)}"


def test_listener_answers_a_burst_of_50_pods_within_the_deadline(containerd: Containerd) -> None:
    result = run_burst(containerd, pods=50)
    print("\n" + result.summary())
    counters = result.report.counters
    assert result.report.connected
    assert counters["nri_registrations"] == 1  # never dropped by the runtime
    assert counters["nri_event.RUN_POD_SANDBOX"] >= 50
    assert counters["nri_event.START_CONTAINER"] >= 50
    _, p99, worst, count = result.latency_ms()
    assert count >= 4 * 50  # run/remove pod, start/remove container at least
    assert worst < 2000, "an answer took longer than containerd's 2 s deadline"
    assert p99 < 100
