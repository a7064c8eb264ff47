"""Translation, the listener's own pod/container map, and the StartContainer fast path."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline.messages import (
    ContainerDown,
    ContainerUp,
    LifecycleSnapshot,
    Message,
    MetadataSnapshot,
    PodDown,
    PodLabels,
    PodLabelsGone,
    PodUp,
)
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.listener import FastPathPolicy, NriListener
from resctrl_pipeline.nri.state import ListenerState
from resctrl_pipeline.nri.translate import container_is_live
from resctrl_pipeline.nri.ttrpc import decode_request
from tests.support import poll_until

from .support import ttrpc_messages

RUNNING, CREATED, STOPPED = (
    nri_pb2.CONTAINER_RUNNING,
    nri_pb2.CONTAINER_CREATED,
    nri_pb2.CONTAINER_STOPPED,
)


def pod(
    uid: str, *, sandbox: str | None = None, parent: str = "/kubepods/pod"
) -> nri_pb2.PodSandbox:
    return nri_pb2.PodSandbox(
        id=sandbox or f"sb-{uid}",
        uid=uid,
        name=f"name-{uid}",
        namespace="ns",
        linux=nri_pb2.LinuxPodSandbox(cgroup_parent=parent + uid),
    )


def ctr(
    cid: str, sandbox: str, *, pid: int = 0, state: int = RUNNING, path: str | None = None
) -> nri_pb2.Container:
    return nri_pb2.Container(
        id=cid,
        pod_sandbox_id=sandbox,
        state=state,  # type: ignore[arg-type]
        pid=pid,
        linux=nri_pb2.LinuxContainer(cgroups_path=f"/cg/{cid}" if path is None else path),
    )


def test_pod_events_give_lifecycle_and_labels_before_any_container() -> None:
    state = ListenerState()
    assert state.pod_started(pod("u1")) == [
        PodUp("u1", "ns", "name-u1", "/kubepods/podu1"),
        PodLabels("u1", "ns", "name-u1"),
    ]


def test_start_container_carries_cgroup_path_verbatim_and_pid() -> None:
    state = ListenerState()
    state.pod_started(pod("u1"))
    systemd = "kubepods-besteffort-podu1.slice:cri-containerd:c1"
    out = state.container_started(
        pod("u1"), ctr("c1", "sb-u1", pid=77, state=CREATED, path=systemd)
    )
    assert out == [ContainerUp("c1", "u1", systemd, 77)]


def test_missing_path_and_pid_are_filled_from_the_map() -> None:
    state = ListenerState()
    state.synchronize([pod("u1")], [ctr("c1", "sb-u1", pid=5)])
    bare = nri_pb2.PodSandbox()  # an event without pod data
    out = state.container_started(bare, ctr("c1", "sb-u1", pid=0, path=""))
    assert out == [ContainerUp("c1", "u1", "/cg/c1", 5)]


def test_end_of_life_events_with_little_data() -> None:
    state = ListenerState()
    state.synchronize([pod("u1")], [ctr("c1", "sb-u1", pid=5), ctr("c2", "sb-u1", pid=6)])
    # REMOVE_CONTAINER: STOPPED, pid 0, never-seen ids included.
    assert state.container_removed(nri_pb2.PodSandbox(), ctr("c1", "", pid=0, state=STOPPED)) == [
        ContainerDown("c1", "u1")
    ]
    assert state.container_removed(pod("u9"), ctr("never", "sb-u9")) == [
        ContainerDown("never", "u9")
    ]
    # REMOVE_POD_SANDBOX: minimal pod; the leftover container goes first.
    minimal = nri_pb2.PodSandbox(id="sb-u1", uid="u1")
    assert state.pod_removed(minimal) == [
        ContainerDown("c2", "u1"),
        PodDown("u1"),
        PodLabelsGone("u1"),
    ]
    assert state.pods == {} and state.containers == {}


def test_synchronize_keeps_only_live_containers_of_listed_pods() -> None:
    state = ListenerState()
    out = state.synchronize(
        [pod("u1")],
        [
            ctr("run", "sb-u1", pid=1),
            ctr("run-no-pid", "sb-u1", pid=0),
            ctr("created-with-task", "sb-u1", pid=2, state=CREATED),
            ctr("created-no-task", "sb-u1", pid=0, state=CREATED),
            ctr("stopped", "sb-u1", pid=0, state=STOPPED),
            ctr("orphan", "sb-gone", pid=3),
        ],
    )
    lifecycle, metadata = out
    assert isinstance(lifecycle, LifecycleSnapshot) and isinstance(metadata, MetadataSnapshot)
    assert [c.id for c in lifecycle.containers] == ["created-with-task", "run", "run-no-pid"]
    assert metadata.pods == (PodLabels("u1", "ns", "name-u1"),)
    assert state.counters["containers_without_pod"] == 1
    assert not container_is_live(ctr("x", "s", pid=9, state=nri_pb2.CONTAINER_UNKNOWN))


def test_captured_synchronize_translates_to_snapshots() -> None:
    """c17 reconnect capture: 3 pods and 2 running containers after a restart."""
    for direction, conn, msg, _ in ttrpc_messages("c17-reconnect-after-restart.hex"):
        if direction == "<" and conn == 1 and msg.stream_id == 3:
            sync = nri_pb2.SynchronizeRequest.FromString(decode_request(msg.body).payload)
            break
    lifecycle, metadata = ListenerState().synchronize(sync.pods, sync.containers)
    assert isinstance(lifecycle, LifecycleSnapshot) and isinstance(metadata, MetadataSnapshot)
    assert len(lifecycle.pods) == 3 and len(metadata.pods) == 3
    assert len(lifecycle.containers) == 2
    for c in lifecycle.containers:
        pod_of = next(p for p in lifecycle.pods if p.uid == c.pod_uid)
        assert c.pid > 0 and c.cgroup_path == f"{pod_of.cgroup_parent}/{c.id}"
    assert all(p.cgroup_parent.startswith("/kubepods/besteffort/pod") for p in lifecycle.pods)


# --- deltas and snapshots agree, for any event sequence ------------------------------


@dataclass
class Consumer:
    """What a downstream actor would build from the messages."""

    pods: dict[str, PodUp] = field(default_factory=dict)
    containers: dict[str, ContainerUp] = field(default_factory=dict)
    labels: dict[str, PodLabels] = field(default_factory=dict)

    def apply(self, msg: Message) -> None:
        if isinstance(msg, LifecycleSnapshot):
            self.pods = {p.uid: p for p in msg.pods}
            self.containers = {c.id: c for c in msg.containers}
        elif isinstance(msg, MetadataSnapshot):
            self.labels = {p.uid: p for p in msg.pods}
        elif isinstance(msg, PodUp):
            self.pods[msg.uid] = msg
        elif isinstance(msg, PodDown):
            self.pods.pop(msg.uid, None)
        elif isinstance(msg, ContainerUp):
            self.containers[msg.id] = msg
        elif isinstance(msg, ContainerDown):
            self.containers.pop(msg.id, None)
        elif isinstance(msg, PodLabels):
            self.labels[msg.uid] = msg
        elif isinstance(msg, PodLabelsGone):
            self.labels.pop(msg.uid, None)


UIDS = st.sampled_from(["a", "b", "c", ""])
CIDS = st.sampled_from(["c1", "c2", "c3"])
OPS = st.one_of(
    st.tuples(
        st.just("sync"), st.lists(UIDS, max_size=3), st.lists(st.tuples(CIDS, UIDS), max_size=3)
    ),
    st.tuples(st.just("run"), UIDS),
    st.tuples(st.just("remove_pod"), UIDS),
    st.tuples(st.just("start"), CIDS, UIDS, st.integers(0, 3), st.booleans()),
    st.tuples(st.just("remove"), CIDS, UIDS),
)


@given(st.lists(OPS, max_size=25))
def test_deltas_rebuild_exactly_the_snapshot(ops: list[tuple[object, ...]]) -> None:
    state = ListenerState()
    consumer = Consumer()
    for op in ops:
        kind = op[0]
        if kind == "sync":
            pods = [pod(u) for u in cast(list[str], op[1])]
            ctrs = [ctr(c, f"sb-{u}", pid=1) for c, u in cast(list[tuple[str, str]], op[2])]
            out = state.synchronize(pods, ctrs)
        elif kind == "run":
            out = state.pod_started(pod(str(op[1])))
        elif kind == "remove_pod":
            out = state.pod_removed(nri_pb2.PodSandbox(id=f"sb-{op[1]}", uid=str(op[1])))
        elif kind == "start":
            _, cid, uid, pid, with_pod = op
            p = pod(str(uid)) if with_pod else nri_pb2.PodSandbox()
            out = state.container_started(p, ctr(str(cid), f"sb-{uid}", pid=int(str(pid))))
        else:
            out = state.container_removed(nri_pb2.PodSandbox(), ctr(str(op[1]), f"sb-{op[2]}"))
        for msg in out:
            consumer.apply(msg)
        lifecycle, metadata = state.snapshot()
        assert isinstance(lifecycle, LifecycleSnapshot) and isinstance(metadata, MetadataSnapshot)
        assert consumer.pods == {p.uid: p for p in lifecycle.pods}
        assert consumer.containers == {c.id: c for c in lifecycle.containers}
        assert consumer.labels == {p.uid: p for p in metadata.pods}
        # Every container belongs to a pod the consumer knows, and no uid is empty.
        assert all(c.pod_uid in consumer.pods for c in consumer.containers.values())
        assert "" not in consumer.pods


# --- the StartContainer fast path ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _start(listener: NriListener, cid: str = "c1", pid: int = 42) -> None:
    listener.start_container(pod("u1"), ctr(cid, "sb-u1", pid=pid, state=CREATED))


def test_fast_path_places_the_init_pid_before_answering() -> None:
    placed: list[tuple[str, int]] = []
    listener = NriListener(place_init_pid=lambda uid, pid: placed.append((uid, pid)))
    _start(listener)
    assert placed == [("u1", 42)]
    assert listener.all_counters()["fast_path.ok"] == 1
    assert ContainerUp("c1", "u1", "/cg/c1", 42) in listener.drain()


def test_fast_path_failures_are_counted_never_raised() -> None:
    def fail(uid: str, pid: int) -> None:
        raise OSError(28, "No space left on device")

    listener = NriListener(place_init_pid=fail)
    _start(listener)
    assert listener.all_counters()["fast_path.failed"] == 1
    assert any(isinstance(m, ContainerUp) for m in listener.drain())
    _start(listener, "c2", pid=0)
    assert listener.counters["fast_path.no_pid"] == 1


def test_a_hung_placement_never_holds_the_answer_and_switches_the_fast_path_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    release = threading.Event()
    calls: list[int] = []

    def place(uid: str, pid: int) -> None:
        calls.append(pid)
        if pid == 1:
            release.wait(60)  # a mkdir or tasks write that hangs in the kernel

    listener = NriListener(
        place_init_pid=place, fast_path=FastPathPolicy(budget=0.05, cooldown=5.0), clock=clock
    )
    fast = listener.fast_path
    assert fast is not None
    try:
        with caplog.at_level(logging.WARNING, logger="resctrl_pipeline.nri.listener"):
            _start(listener, "c0", pid=1)  # returns while the placement still hangs
            assert not release.is_set() and calls == [1]
            assert listener.all_counters()["fast_path.over_budget"] == 1
            assert not fast.policy.on
            _start(listener, "c1", pid=2)  # off: not even tried, answered at once
            _start(listener, "c2", pid=3)
            assert calls == [1]
            assert listener.all_counters()["fast_path.suspended"] == 2
            release.set()  # resctrl recovers; the late placement completes
            poll_until(lambda: fast.poll() or fast.counters["fast_path.late_done"] == 1,
                       what="the late placement accounted")  # fmt: skip
            assert fast.counters["fast_path.ok"] == 1  # it did place the pid in the end
            _start(listener, "c3", pid=4)  # still within the cooldown
            assert calls == [1]
            clock.now += 5.1
            _start(listener, "c4", pid=5)
            assert calls == [1, 5] and fast.policy.on
        assert fast.counters["fast_path.ok"] == 2
        assert len(fast.take_seconds()) == 2  # only tried placements add to an answer
        lines = [r.getMessage() for r in caplog.records]
        assert sum("fast path off" in line for line in lines) == 1
        assert sum("fast path back on" in line for line in lines) == 1
        # Every container got its ContainerUp whatever the fast path did.
        ups = [m for m in listener.drain() if isinstance(m, ContainerUp)]
        assert len(ups) == 5
    finally:
        release.set()


def test_captured_start_container_event_drives_the_fast_path() -> None:
    placed: list[tuple[str, int]] = []
    listener = NriListener(place_init_pid=lambda uid, pid: placed.append((uid, pid)))
    for direction, _conn, msg, _ in ttrpc_messages("c2x-statechange-start-container.hex"):
        if direction == "<":
            change = nri_pb2.StateChangeEvent.FromString(decode_request(msg.body).payload)
            listener.start_container(change.pod, change.container)
    assert placed == [("pod-b-uid-1795628638", 11726)]
