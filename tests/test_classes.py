"""Pods in RDT classes (CTRL_MON groups made by others: goresctrl, nri-plugins, runc).

A pod's MON group lives under the CTRL_MON group that holds its threads
(``<class>/mon_groups/<prefix><uid>``), one per class it spans, its row the sum; a
thread that changes class is followed; CTRL_MON groups are never created, changed or
removed; ownership, adoption and orphan removal work in every class's ``mon_groups``.
The kernel is :class:`tests.memory_resctrl.MemoryResctrlOps` (``resctrl-modern.md`` §4),
the tasks-write statuses are the reference's.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from resctrl_pipeline.messages import GroupState, LifecycleSnapshot, PodDown, PodLabels, PodUp
from resctrl_pipeline.resctrl.errnos import PermissionProblem, TaskRefused
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from resctrl_pipeline.resctrl.mondata import PreadReader
from resctrl_pipeline.sampling import Sampler
from tests.memory_resctrl import MemoryResctrlOps
from tests.support import make_group, set_counter
from tests.test_reconcile import ROOT, Node, states

UID = "11111111-2222-3333-4444-555555555555"
NAME = f"pod_{UID}"


@pytest.fixture
def node(tmp_path: Path) -> Node:
    ops = MemoryResctrlOps(ROOT)
    ops.add_class("gold")
    ops.add_class("silver")
    return Node(tmp_path, ops)


def pod_up() -> PodUp:
    return PodUp(UID, "ns", f"name-{UID}", f"/kubepods/pod{UID}")


def put(node: Node, tids: list[int], ctrl: str) -> None:
    """What an RDT-enabled runtime does: write the threads to ``<ctrl>/tasks``."""
    for tid in tids:
        node.ops.move_to_class(tid, ctrl)


# --- the tasks-write table (§4) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "outcome"),
    [
        (errno.EINVAL, "Can't move task to different control group\nError while processing task 42",
         TaskRefused),
        (errno.EINVAL, "Task list parsing error pid 4x2", TaskRefused),
        (errno.EINVAL, "Invalid pid 42", TaskRefused),
        (errno.EPERM, "No permission to move task 42", PermissionProblem),
        (errno.ESRCH, "No task 42", False),  # gone: fine
    ],
)  # fmt: skip
def test_every_tasks_write_status_is_classified(
    code: int, status: str, outcome: type[Exception] | bool
) -> None:
    ops = MemoryResctrlOps()
    groups = ResctrlGroups(ops)
    groups.create("pod_a")
    ops.spawn(42)
    ops.fail("write_tid", code, status=status)
    if outcome is False:
        assert groups.add_task("pod_a", 42) is False
        return
    with pytest.raises(outcome) as caught:  # type: ignore[call-overload]
        groups.add_task("pod_a", 42)
    if outcome is TaskRefused:
        assert caught.value.status == status.strip()


def test_thread_of_another_class_is_refused_by_the_kernel_model() -> None:
    ops = MemoryResctrlOps()
    ops.add_class("gold")
    groups = ResctrlGroups(ops)
    groups.create("pod_a")
    ops.spawn(7)
    ops.move_to_class(7, "gold")
    with pytest.raises(TaskRefused) as caught:
        groups.add_task("pod_a", 7)
    assert caught.value.status.startswith("Can't move task to different control group")
    groups.create("gold/pod_a")
    assert groups.add_task("gold/pod_a", 7)
    assert groups.path("gold/pod_a") == f"{ROOT}/gold/mon_groups/pod_a"


# --- placement --------------------------------------------------------------------------------


def test_pod_spanning_two_classes_gets_a_group_in_each(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod(UID), 0.0)
    web = node.start_container(UID, "web", [101, 102])
    side = node.start_container(UID, "side", [201])
    put(node, [101, 102], "gold")
    core.handle(web, 1.0)
    out = core.handle(side, 2.0)
    assert node.ops.groups[f"gold/{NAME}"] == {101, 102}
    assert node.ops.groups[NAME] == {201}
    state = states(out)[UID]
    assert state.group_path == f"{ROOT}/mon_groups/{NAME}"
    assert state.class_paths == (f"{ROOT}/gold/mon_groups/{NAME}",)
    assert (state.total_containers, state.reconciled_containers) == (2, 2)
    assert core.statistics().counters.get("tasks_einval", 0) == 0
    assert node.ops.classes == {"gold", "silver"}  # never created, changed or removed


def test_a_thread_that_changes_class_is_followed_at_the_next_pass(node: Node) -> None:
    core = node.core(retry_interval=10)
    core.handle(node.start_pod(UID), 0.0)
    put(node, [101, 102], "gold")
    core.handle(node.start_container(UID, "web", [101, 102]), 1.0)
    assert node.ops.groups[f"gold/{NAME}"] == {101, 102}
    put(node, [101, 102], "silver")  # e.g. an nri-plugins policy re-balanced the pod
    out = core.on_retry_timer(10.0)
    assert node.ops.groups[f"silver/{NAME}"] == {101, 102}
    assert f"gold/{NAME}" not in node.ops.groups  # left empty by the pod: removed
    assert states(out)[UID].class_paths == (f"{ROOT}/silver/mon_groups/{NAME}",)
    put(node, [101], "")  # back to the root class
    core.on_retry_timer(20.0)
    assert node.ops.groups[NAME] == {101}
    assert node.ops.groups[f"silver/{NAME}"] == {102}


def test_a_class_removed_by_its_owner_sends_threads_home(node: Node) -> None:
    core = node.core(retry_interval=10)
    core.handle(LifecycleSnapshot(), 0.0)
    core.handle(node.start_pod(UID), 0.0)
    put(node, [101], "gold")
    core.handle(node.start_container(UID, "web", [101]), 1.0)
    node.ops.remove_class("gold")  # its MON groups go with it, the threads to the root
    out = core.on_retry_timer(10.0)
    assert node.ops.groups[NAME] == {101}
    assert states(out)[UID].class_paths == ()
    assert "gold" not in node.ops.classes


def test_orphans_in_class_mon_groups_are_removed_and_live_ones_adopted(node: Node) -> None:
    groups = ResctrlGroups(node.ops)
    dead = "pod_99999999-0000-4000-8000-000000000000"
    for name in (f"gold/{dead}", f"gold/{NAME}", "gold/not-ours", f"silver/{NAME}"):
        groups.create(name)
    core = node.core(retry_interval=10)
    node.start_pod(UID)
    put(node, [101], "gold")
    web = node.start_container(UID, "web", [101])
    core.handle(LifecycleSnapshot((pod_up(),), (web,)), 0.0)
    assert core.statistics().counters["groups_adopted"] >= 1
    core.on_retry_timer(20.0)  # the orphan grace: twice the retry interval
    assert set(node.ops.groups) == {NAME, f"gold/{NAME}", "gold/not-ours"}
    assert node.ops.groups[f"gold/{NAME}"] == {101}
    assert node.ops.classes == {"gold", "silver"}


def test_pod_down_removes_its_group_in_every_class(node: Node) -> None:
    core = node.core()
    core.handle(node.start_pod(UID), 0.0)
    put(node, [101], "gold")
    put(node, [201], "silver")
    core.handle(node.start_container(UID, "web", [101, 201]), 1.0)
    assert {f"gold/{NAME}", f"silver/{NAME}", NAME} <= set(node.ops.groups)
    core.handle(PodDown(UID), 2.0)
    assert not [g for g in node.ops.groups if g.endswith(NAME)]


def test_no_rmid_in_a_class_leaves_those_threads_unreconciled_until_one_frees(
    tmp_path: Path,
) -> None:
    ops = MemoryResctrlOps(ROOT, num_rmids=3)  # root + the class + one group
    ops.add_class("gold")
    node = Node(tmp_path, ops)
    core = node.core(retry_interval=10)
    core.handle(node.start_pod(UID), 0.0)
    put(node, [101], "gold")
    out = core.handle(node.start_container(UID, "web", [101]), 1.0)
    assert states(out)[UID].reconciled_containers == 0
    assert core.statistics().counters["mkdir_enospc"] >= 1
    ops.num_rmids = 4
    out = core.on_retry_timer(10.0)
    assert states(out)[UID].reconciled_containers == 1
    assert ops.groups[f"gold/{NAME}"] == {101}


# --- the row sums every class ------------------------------------------------------------------


def test_sampler_row_sums_the_groups_of_every_class(tmp_path: Path) -> None:
    root_group = make_group(str(tmp_path / "mon_groups" / NAME), domains=(0, 1), value=100)
    gold_group = make_group(str(tmp_path / "gold" / "mon_groups" / NAME), domains=(0, 1), value=7)
    set_counter(gold_group, 1, "mbm_total_bytes", "Unassigned\n")
    sampler = Sampler(PreadReader(per_domain=True), with_mbm=True, per_domain=True)
    sampler.handle_metadata_event(PodLabels(UID, "ns", "p"))
    sampler.handle_resctrl_event(GroupState(UID, root_group, 2, 2, class_paths=(gold_group,)))
    batch = sampler.handle_sample_timer()
    assert batch is not None
    row = {k: v[0] for k, v in batch.columns.items()}
    assert row["resctrl_group"] == root_group
    assert row["llc_occupancy_bytes"] == 2 * 100 + 2 * 7
    assert row["mbm_total_bytes"] is None  # one domain of one group is unassigned
    assert row["mbm_local_bytes"] == 2 * 100 + 2 * 7
    assert row["mbm_state"] == "unassigned"
    assert [d["llc_occupancy_bytes"] for d in row["domains"]] == [107, 107]
    # The class group goes (the pod left the class): its reader state is dropped.
    sampler.handle_resctrl_event(GroupState(UID, root_group, 2, 2))
    batch = sampler.handle_sample_timer()
    assert batch is not None and batch.columns["llc_occupancy_bytes"] == [200]
