"""The reconciler core, scenario by scenario.

Resctrl side: the in-memory fake (kernel semantics, fault injection) or a copy of the
resctrl.full fixture. Cgroup side: a real directory tree in tmp_path read by the
production CgroupReader (v1 cgroupfs layout, like these machines).
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

import pytest

from resctrl_pipeline.cgroups import CgroupReader
from resctrl_pipeline.messages import (
    ContainerDown,
    ContainerUp,
    GroupGone,
    GroupSnapshot,
    GroupState,
    LifecycleSnapshot,
    PodDown,
    PodUp,
)
from resctrl_pipeline.podid import InvalidPrefix
from resctrl_pipeline.reconcile import GroupMessage, Reconciler
from resctrl_pipeline.resctrl.groups import ResctrlGroups, place_init_pid
from resctrl_pipeline.resctrl.plaindir import PlainDirResctrlOps
from tests.memory_resctrl import MemoryResctrlOps

DATA = Path(__file__).parent / "data"
ROOT = "/sys/fs/resctrl"


class Node:
    """A fake node: cgroup v1 tree on disk plus the in-memory resctrl kernel."""

    def __init__(self, base: Path, ops: MemoryResctrlOps | None = None) -> None:
        self.cg = base / "cgroup"
        (self.cg / "pids").mkdir(parents=True)
        (self.cg / "pids" / "tasks").write_text("1\n")
        self.ops = ops if ops is not None else MemoryResctrlOps(ROOT)
        self.reader = CgroupReader(str(self.cg))

    def core(self, **kwargs: object) -> Reconciler:
        return Reconciler(ResctrlGroups(self.ops), self.reader, **kwargs)  # type: ignore[arg-type]

    def pod_dir(self, uid: str) -> Path:
        return self.cg / "pids" / "kubepods" / f"pod{uid}"

    def start_pod(self, uid: str) -> PodUp:
        self.pod_dir(uid).mkdir(parents=True)
        (self.pod_dir(uid) / "tasks").write_text("")
        return PodUp(uid, "ns", f"name-{uid}", f"/kubepods/pod{uid}")

    def stop_pod(self, uid: str) -> None:
        shutil.rmtree(self.pod_dir(uid))

    def start_container(self, uid: str, cid: str, tids: list[int]) -> ContainerUp:
        directory = self.pod_dir(uid) / cid
        directory.mkdir()
        self.set_threads(uid, cid, tids)
        return ContainerUp(cid, uid, f"/kubepods/pod{uid}/{cid}", tids[0])

    def set_threads(self, uid: str, cid: str, tids: list[int]) -> None:
        for tid in tids:
            if tid not in self.ops.threads:
                self.ops.spawn(tid)
        (self.pod_dir(uid) / cid / "tasks").write_text("".join(f"{t}\n" for t in tids))

    def stop_container(self, uid: str, cid: str) -> None:
        directory = self.pod_dir(uid) / cid
        for tid in (directory / "tasks").read_text().split():
            self.ops.exit(int(tid))
        shutil.rmtree(directory)

    def group(self, uid: str) -> set[int] | None:
        return self.ops.groups.get(f"pod_{uid}")


def states(out: list[GroupMessage]) -> dict[str, GroupState]:
    found: dict[str, GroupState] = {}
    for msg in out:
        if isinstance(msg, GroupSnapshot):
            found.update({s.pod_uid: s for s in msg.states})
        elif isinstance(msg, GroupState):
            found[msg.pod_uid] = msg
    return found


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def test_pod_gets_a_group_and_every_thread_of_its_containers(node: Node) -> None:
    core = node.core()
    out = core.handle(node.start_pod("p1"), now=0)
    assert out == [GroupState("p1", f"{ROOT}/mon_groups/pod_p1", 0, 0)]
    out = core.handle(node.start_container("p1", "c1", [10, 11, 12]), now=0)
    assert out == [GroupState("p1", f"{ROOT}/mon_groups/pod_p1", 1, 1)]
    assert node.group("p1") == {10, 11, 12}
    assert core.statistics().counters["tasks_written"] == 3


def test_replaying_events_changes_nothing(node: Node) -> None:
    core = node.core()
    pod, container = node.start_pod("p1"), node.start_container("p1", "c1", [10])
    core.handle(pod, now=0)
    core.handle(container, now=0)
    before = node.ops.mutations
    assert core.handle(pod, now=1) == []
    assert core.handle(container, now=1) == []
    assert node.ops.mutations == before


def test_container_before_its_pod_is_placed_when_the_pod_arrives(node: Node) -> None:
    core = node.core()
    pod = node.start_pod("p1")
    assert core.handle(node.start_container("p1", "c1", [10, 11]), now=0) == []
    assert states(core.handle(pod, now=0))["p1"].reconciled_containers == 1
    assert node.group("p1") == {10, 11}


def test_threads_forking_while_we_write_converge(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    container = node.start_container("p1", "c1", [10])
    real_add = node.ops.write_tid
    forks = iter([20, 21, 22])

    def fork_on_write(name: str, tid: int) -> None:
        real_add(name, tid)
        new = next(forks, None)
        if new is not None:  # a thread that existed before being moved forks a sibling
            node.set_threads("p1", "c1", [*sorted(node.ops.groups[name]), new])

    node.ops.write_tid = fork_on_write  # type: ignore[method-assign]
    assert states(core.handle(container, now=0))["p1"].reconciled_containers == 1
    assert node.group("p1") == {10, 20, 21, 22}


def test_endless_forking_is_bounded_and_reported_unreconciled(node: Node) -> None:
    core = node.core(max_passes=3)
    core.handle(node.start_pod("p1"), now=0)
    container = node.start_container("p1", "c1", [10])
    real_add = node.ops.write_tid
    counter = iter(range(100, 10_000))

    def fork_forever(name: str, tid: int) -> None:
        real_add(name, tid)
        node.set_threads("p1", "c1", [*sorted(node.ops.groups[name]), next(counter)])

    node.ops.write_tid = fork_forever  # type: ignore[method-assign]
    state = states(core.handle(container, now=0))["p1"]
    assert (state.total_containers, state.reconciled_containers) == (1, 0)
    assert core.statistics().counters["tasks_written"] == 3  # one write per round, 3 rounds


def test_recheck_catches_exec_and_threads_that_raced(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    core.handle(node.start_container("p1", "c1", [10]), now=0)
    node.set_threads("p1", "c1", [10, 30])  # `kubectl exec`: starts in the root group
    assert core.on_retry_timer(now=10) == []  # counts unchanged: nothing to report
    assert node.group("p1") == {10, 30}


def test_esrch_is_fine_and_einval_is_retried_next_pass(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    container = node.start_container("p1", "c1", [10, 11, 12])
    node.ops.exit(11)  # still listed in the cgroup, gone by the time we write
    node.ops.fail("write_tid", errno.EINVAL)  # refuses tid 10
    with caplog.at_level(logging.WARNING):
        state = states(core.handle(container, now=0))["p1"]
    assert state.reconciled_containers == 0
    assert "injected failure" in caplog.text  # the kernel's reason is in the log
    counters = core.statistics().counters
    assert counters["tasks_esrch"] == 1 and counters["tasks_einval"] == 1
    node.set_threads("p1", "c1", [10, 12])
    assert states(core.on_retry_timer(now=10))["p1"].reconciled_containers == 1
    assert node.group("p1") == {10, 12}


def test_vanished_group_is_recreated(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    core.handle(node.start_container("p1", "c1", [10]), now=0)
    node.ops.groups.pop("pod_p1")  # someone removed it behind our back
    node.ops.threads[10] = None
    core.on_retry_timer(now=10)
    assert node.group("p1") == {10}
    assert core.statistics().counters["groups_recreated"] == 1


def test_no_free_rmid_then_limbo_then_success(node: Node) -> None:
    node.ops.num_rmids = 2  # root + one group
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    out = core.handle(node.start_pod("p2"), now=1)
    assert out == [GroupState("p2", None, 0, 0)]
    out = core.handle(node.start_container("p2", "c1", [10]), now=2)
    assert out == [GroupState("p2", None, 1, 0)]
    gauges = core.statistics().gauges
    assert gauges["pods_waiting_rmid"] == 1 and gauges["rmid_capacity"] == 2
    core.handle(PodDown("p1"), now=3)  # its RMID goes to limbo
    core.on_retry_timer(now=10)
    stats = core.statistics()
    counters, gauges = stats.counters, stats.gauges
    assert counters["mkdir_enospc"] == 1 and counters["mkdir_ebusy"] == 1
    assert gauges["pods_waiting_rmid"] == 1 and gauges["rmid_wait_max_seconds"] == 9
    assert "waiting_rmid=1 (enospc=1 ebusy=1)" in core.health_line()
    node.ops.drain_limbo()
    out = core.on_retry_timer(now=20)
    assert out == [GroupState("p2", f"{ROOT}/mon_groups/pod_p2", 1, 1)]
    assert node.group("p2") == {10}


def test_waiting_pods_get_rmids_oldest_first(node: Node) -> None:
    node.ops.num_rmids = 1  # only the root group
    core = node.core()
    for t, uid in enumerate(["late", "early"]):
        core.handle(node.start_pod(uid), now=5 - t)  # "early" waits since 4, "late" 5
    node.ops.num_rmids = 2
    core.on_retry_timer(now=10)
    assert node.group("early") == set() and node.group("late") is None


def test_permission_problem_is_loud(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    node.ops.fail("mkdir", errno.EACCES)
    core = node.core()
    with caplog.at_level(logging.WARNING):
        assert core.handle(node.start_pod("p1"), now=0) == [GroupState("p1", None, 0, 0)]
    assert "permission" in caplog.text
    stats = core.statistics()
    assert stats.counters["permission_errors"] == 1
    # Not ready while resctrl refuses the agent, saying why; ready again once it lets in.
    assert stats.ready == {"resctrl_access": False}
    assert "permission denied" in stats.info["resctrl_access"]
    core.on_retry_timer(now=10)
    assert node.group("p1") is not None
    assert core.statistics().ready == {"resctrl_access": True}


def test_hostile_uids_are_rejected_counted_and_logged_once(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    core = node.core()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert core.handle(PodUp("../../x", "ns", "n"), now=0) == []
        assert core.handle(ContainerUp("c", "a/b"), now=0) == []
        assert core.handle(PodDown("x\0y"), now=0) == []
    assert node.ops.mutations == 0 and not node.ops.groups
    assert core.statistics().counters["uids_rejected"] == 5
    assert caplog.text.count("rejected pod uid '../../x'") == 1


def test_unsafe_prefix_is_refused(node: Node) -> None:
    with pytest.raises(InvalidPrefix):
        node.core(prefix="")


def test_pod_down_removes_the_group_and_reports_it_gone(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    core.handle(node.start_container("p1", "c1", [10]), now=0)
    assert core.handle(PodDown("p1"), now=1) == [GroupGone("p1")]
    assert node.group("p1") is None and node.ops.group_of(10) is None
    assert core.handle(PodDown("p1"), now=2) == []  # never report unknown pods


def test_container_down_and_exited_containers_leave_the_counts(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    core.handle(node.start_container("p1", "c1", [10]), now=0)
    assert states(core.handle(node.start_container("p1", "c2", [20]), now=0))["p1"] == (
        GroupState("p1", f"{ROOT}/mon_groups/pod_p1", 2, 2)
    )
    node.stop_container("p1", "c2")  # exited; RemoveContainer comes much later
    assert states(core.on_retry_timer(now=10))["p1"].total_containers == 1
    assert core.handle(ContainerDown("c2", "p1"), now=11) == []  # already not counted
    assert states(core.handle(ContainerDown("c1"), now=12))["p1"].total_containers == 0


def test_nothing_destructive_before_the_first_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "resctrl"
    shutil.copytree(DATA / "resctrl.full", root)
    node = Node(tmp_path)
    core = Reconciler(ResctrlGroups(PlainDirResctrlOps(str(root))), node.reader)
    core.handle(node.start_pod("p1"), now=0)
    node.stop_pod("p1")  # its cgroup disappears: normally proof the pod is gone
    for t in (10, 20, 30):
        core.on_retry_timer(now=t)
    names = sorted(p.name for p in (root / "mon_groups").iterdir())
    assert names == sorted(
        [
            "foreign_group",
            "pod_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "pod_deadbeef-0000-4000-8000-000000000001",
            "pod_p1",
        ]
    )


def test_first_snapshot_adopts_live_groups_and_removes_only_orphans(tmp_path: Path) -> None:
    root = tmp_path / "resctrl"
    shutil.copytree(DATA / "resctrl.full", root)
    before = {p.relative_to(root) for p in root.rglob("*")}
    node = Node(tmp_path)
    live = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    dead = "pod_deadbeef-0000-4000-8000-000000000001"
    core = Reconciler(ResctrlGroups(PlainDirResctrlOps(str(root))), node.reader, retry_interval=10)
    out = core.handle(LifecycleSnapshot((node.start_pod(live),), ()), now=0)
    assert out == [GroupSnapshot((GroupState(live, f"{root}/mon_groups/pod_{live}", 0, 0),))]
    counters = core.statistics().counters
    assert counters["groups_adopted"] == 1 and "groups_created" not in counters
    assert (root / "mon_groups" / dead).exists()  # within its grace period
    assert (root / "mon_groups" / f"pod_{live}" / "tasks").read_text() == "1001\n1002\n"
    core.on_retry_timer(now=10)
    assert (root / "mon_groups" / dead).exists()  # grace: twice the retry interval
    core.on_retry_timer(now=20)
    after = {p.relative_to(root) for p in root.rglob("*")}
    # exactly the orphans are gone, in the root's and in every class's mon_groups (the
    # prefix is ownership everywhere); control groups themselves (even prefixed ones),
    # foreign groups and the live group's files are untouched
    orphans = {("mon_groups", dead), ("other_tool", "mon_groups", dead),
               ("pod_ctrl_group", "mon_groups", dead)}  # fmt: skip
    assert before - after == {p for p in before if p.parts[:2] in orphans or p.parts[:3] in orphans}
    assert after <= before
    assert core.statistics().counters["orphans_removed"] == 3


def test_orphan_grace_spares_a_group_whose_pod_up_is_still_queued(node: Node) -> None:
    core = node.core(retry_interval=10)
    core.handle(LifecycleSnapshot(), now=0)
    node.ops.mkdir("pod_new")  # the listener's StartContainer fast path, ahead of PodUp
    core.on_retry_timer(now=10)  # first seen as an orphan
    pod = node.start_pod("new")
    core.handle(pod, now=15)  # PodUp arrives: adopted, not deleted
    core.on_retry_timer(now=20)
    assert node.group("new") == set()
    node.ops.mkdir("pod_leak")
    core.on_retry_timer(now=30)
    assert node.group("leak") == set()
    core.on_retry_timer(now=40)
    assert node.group("leak") == set()
    core.on_retry_timer(now=50)  # twice the retry interval after it was first seen
    assert node.group("leak") is None


def test_a_fast_path_group_whose_pod_up_was_dropped_survives_until_the_next_snapshot(
    node: Node,
) -> None:
    """Issue 11 deliverable 8: retry passes and the listener's snapshots both every
    10 s, at the worst phase: a pass sees the fast path's new group as an orphan right
    after it was made, and the pod's next snapshot arrives just after the pass one
    period later. With a grace of one period that pass removed the group (and moved the
    container's threads back to the root group)."""
    core = node.core(retry_interval=10, snapshot_period=10)
    core.handle(LifecycleSnapshot(), now=0)  # synced: orphans are swept from now on
    pod = node.start_pod("new")
    container = node.start_container("new", "c1", [4242])
    # StartContainer: the fast path places the init pid; the PodUp and ContainerUp
    # that followed were dropped (full queue), so the reconciler never hears of them.
    assert place_init_pid(ROOT, "pod_", "new", 4242, ops=node.ops)
    core.on_retry_timer(now=0.1)  # first seen without a pod
    core.on_retry_timer(now=10.1)
    core.on_retry_timer(now=10.1 + 1e-6)
    assert node.group("new") == {4242}
    out = core.handle(LifecycleSnapshot((pod,), (container,)), now=10.3)  # the next one
    assert states(out)["new"] == GroupState("new", f"{ROOT}/mon_groups/pod_new", 1, 1)
    assert node.group("new") == {4242}  # the same group, never emptied
    counters = core.statistics().counters
    assert counters["groups_adopted"] == 1 and "orphans_removed" not in counters
    # A group whose pod never shows up goes after the grace: twice the longer period.
    node.ops.mkdir("pod_leak")
    core.on_retry_timer(now=20)
    core.on_retry_timer(now=39.9)
    assert node.group("leak") == set()
    core.on_retry_timer(now=40)
    assert node.group("leak") is None


def test_orphan_grace_has_a_floor_of_twice_the_longer_period(node: Node) -> None:
    core = node.core(retry_interval=5, snapshot_period=30)  # snapshots rarer than passes
    core.handle(LifecycleSnapshot(), now=0)
    node.ops.mkdir("pod_late")
    core.on_retry_timer(now=5)
    core.on_retry_timer(now=64.9)
    assert node.group("late") == set()
    core.on_retry_timer(now=65)
    assert node.group("late") is None
    with pytest.raises(ValueError, match="orphan_grace"):
        node.core(retry_interval=10, orphan_grace=15)


def test_snapshot_is_authoritative_and_replaying_it_is_a_no_op(node: Node) -> None:
    core = node.core()
    a, b = node.start_pod("a"), node.start_pod("b")
    ca = node.start_container("a", "ca", [10, 11])
    cb = node.start_container("b", "cb", [20])
    core.handle(LifecycleSnapshot((a, b), (ca, cb)), now=0)
    snap = LifecycleSnapshot((a,), (ca,))
    out = core.handle(snap, now=1)
    assert out == [GroupSnapshot((GroupState("a", f"{ROOT}/mon_groups/pod_a", 1, 1),))]
    assert node.group("b") is None
    mutations = node.ops.mutations
    assert core.handle(snap, now=1) == out
    assert node.ops.mutations == mutations
    assert core.snapshot() == out[0]


def test_pod_whose_cgroup_vanished_is_gone(node: Node) -> None:
    core = node.core()
    core.handle(LifecycleSnapshot((node.start_pod("p1"), node.start_pod("p2")), ()), now=0)
    node.stop_pod("p1")  # PodDown was lost, and no new snapshot yet
    assert core.on_retry_timer(now=10) == [GroupGone("p1")]
    assert node.group("p1") is None and node.group("p2") == set()
    assert core.statistics().counters["pods_gone_cgroup"] == 1


def test_unresolvable_pod_cgroup_is_not_taken_for_a_dead_pod(node: Node) -> None:
    core = node.core()
    core.handle(LifecycleSnapshot((PodUp("p1", "ns", "n", "/somewhere/else"),), ()), now=0)
    core.on_retry_timer(now=10)
    assert node.group("p1") == set()


def test_statistics_and_health_line(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    core.handle(node.start_container("p1", "c1", [10, 11]), now=0)
    core.handle(ContainerUp("c2", "p1", "/kubepods/podp1/missing"), now=0)
    stats = core.statistics()
    counters, gauges = stats.counters, stats.gauges
    assert gauges["groups_in_use"] == 1 and gauges["rmid_capacity"] == 64
    assert gauges["containers"] == 2 and gauges["containers_reconciled"] == 1
    assert gauges["containers_unresolved"] == 1 and gauges["pods_unreconciled"] == 1
    assert gauges["synced"] == 0
    assert counters["groups_created"] == 1 and counters["tasks_written"] == 2
    line = core.health_line()
    assert line.startswith("reconciler: pods=1 groups=1/64 rmids")
    assert "containers=1/2" in line and "tasks_written=2" in line


def test_actor_shell_hooks(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    core = node.core(retry_interval=7, health_interval=30)
    assert core.name == "reconciler"
    assert [(t.name, t.interval) for t in core.timers()] == [("retry", 7), ("health", 30)]
    out = core.on_message("lifecycle", node.start_pod("p1"), now=0)
    assert out == [("groups", GroupState("p1", f"{ROOT}/mon_groups/pod_p1", 0, 0))]
    assert core.on_message("lifecycle", GroupGone("p1"), now=0) == []  # not a lifecycle kind
    assert core.statistics().counters["unknown_messages"] == 1
    node.stop_pod("p1")
    assert core.on_timer("retry", now=7) == []  # not synced yet: nothing removed
    core.handle(LifecycleSnapshot(), now=8)
    assert core.on_timer("retry", now=14) == []  # p1 already gone with the snapshot
    assert core.snapshot("groups") == GroupSnapshot(())
    with caplog.at_level(logging.INFO):
        assert core.on_timer("health", now=30) == []
    assert "reconciler: pods=0" in caplog.text
