"""Monitoring groups a runtime made for its containers (runc >= 1.4 / crun >= 1.24
``enableMonitoring``: ``[<CLOS>/]mon_groups/<container-id>`` holding the init process),
the ``resctrl.runtime_groups`` policy, and runtimes that prune empty MON groups
(goresctrl ``SetConfig``) — ``resctrl-modern.md`` §4–5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resctrl_pipeline.messages import LifecycleSnapshot
from resctrl_pipeline.resctrl.groups import ResctrlGroups, place_init_pid
from tests.memory_resctrl import MemoryResctrlOps
from tests.test_reconcile import ROOT, Node, states

UID = "11111111-2222-3333-4444-555555555555"
NAME = f"pod_{UID}"
CID = "a" * 64


@pytest.fixture
def node(tmp_path: Path) -> Node:
    ops = MemoryResctrlOps(ROOT)
    ops.add_class("gold")
    return Node(tmp_path, ops)


def runtime_start(node: Node, tids: list[int], clos: str = "") -> str:
    """What runc does with enableMonitoring: <CLOS>/mon_groups/<id>, init process in."""
    name = f"{clos}/{CID}" if clos else CID
    for tid in tids:
        node.ops.spawn(tid)
        node.ops.move_to_class(tid, clos)
    node.ops.mkdir(name)
    for tid in tids:
        node.ops.write_tid(name, tid)
    return name


@pytest.mark.parametrize("policy", ["auto", "attribute"])
@pytest.mark.parametrize("clos", ["", "gold"])
def test_attribute_reads_the_runtime_group_and_moves_nothing(
    node: Node, policy: str, clos: str
) -> None:
    core = node.core(runtime_groups=policy)
    core.handle(node.start_pod(UID), 0.0)
    runtime = runtime_start(node, [101, 102], clos)
    out = core.handle(node.start_container(UID, CID, [101, 102]), 1.0)
    assert node.ops.groups[runtime] == {101, 102}  # left where the runtime put them
    assert not node.ops.groups[NAME]
    state = states(out)[UID]
    runtime_path = f"{ROOT}/{clos}/mon_groups/{CID}" if clos else f"{ROOT}/mon_groups/{CID}"
    assert runtime_path in state.class_paths  # summed into the pod's row
    assert state.reconciled_containers == 1
    # An exec'd process the runtime wrote only to the CLOS (runc exec): ours to place.
    node.ops.spawn(103)
    node.ops.move_to_class(103, clos)
    node.set_threads(UID, CID, [101, 102, 103])
    core.on_retry_timer(10.0)
    ours = f"{clos}/{NAME}" if clos else NAME
    assert node.ops.groups[ours] == {103}
    assert node.ops.groups[runtime] == {101, 102}
    assert core.statistics().counters["runtime_groups_attributed"] == 1


def test_move_takes_the_threads_into_the_pod_group(node: Node) -> None:
    core = node.core(runtime_groups="move")
    core.handle(node.start_pod(UID), 0.0)
    runtime = runtime_start(node, [101, 102])
    out = core.handle(node.start_container(UID, CID, [101, 102]), 1.0)
    assert node.ops.groups[NAME] == {101, 102}
    assert not node.ops.groups[runtime]
    assert states(out)[UID].class_paths == ()


def test_runtime_group_deleted_with_its_container_is_dropped_from_the_row(node: Node) -> None:
    core = node.core(retry_interval=10)
    core.handle(node.start_pod(UID), 0.0)
    runtime = runtime_start(node, [101])
    core.handle(node.start_container(UID, CID, [101]), 1.0)
    node.ops.rmdir(runtime)  # runc delete: the threads fall back to the root group
    out = core.on_retry_timer(10.0)
    assert states(out)[UID].class_paths == ()
    assert node.ops.groups[NAME] == {101}


def test_a_pruning_runtime_restart_never_loses_a_pod_for_more_than_one_pass(node: Node) -> None:
    core = node.core(retry_interval=10)
    core.handle(LifecycleSnapshot(), 0.0)
    core.handle(node.start_pod(UID), 0.0)
    runtime_start(node, [101])
    core.handle(node.start_container(UID, CID, [101]), 1.0)
    assert not node.ops.groups[NAME]  # empty: every thread is in the runtime's group
    # containerd restarts; goresctrl's SetConfig(force) rmdirs every empty MON group.
    for name in [g for g, tids in node.ops.groups.items() if not tids]:
        node.ops.rmdir(name)
    core.on_retry_timer(10.0)
    assert NAME in node.ops.groups  # made again within the pass
    state = states([core.snapshot()])[UID]
    assert state.group_path == f"{ROOT}/mon_groups/{NAME}"
    counters = core.statistics().counters
    assert counters["groups_recreated"] == 1
    assert "mkdir_errors" not in counters


# --- the fast path leaves runtime-made groups and classes alone --------------------------


@pytest.mark.parametrize(
    ("content", "leave", "placed"),
    [
        ("res:/\nmon:\n", True, True),
        (f"res:/\nmon:/{CID}\n", True, False),  # a runtime's group: attributed
        (f"res:/\nmon:/{CID}\n", False, True),  # runtime_groups = move
        (f"res:/\nmon:/{NAME}\n", True, True),  # ours already
        ("res:gold\nmon:\n", False, False),  # a class: the write could only fail
        (None, True, True),  # no CONFIG_PROC_CPU_RESCTRL
    ],
)
def test_fast_path_consults_proc(
    tmp_path: Path, content: str | None, leave: bool, placed: bool
) -> None:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    if content is not None:
        (proc / "42" / "cpu_resctrl_groups").write_text(content)
    ops = MemoryResctrlOps(ROOT)
    ops.spawn(42)
    result = place_init_pid(ROOT, "pod_", UID, 42, ops, proc=str(proc),
                            leave_runtime_groups=leave)  # fmt: skip
    assert result is (True if placed else None)
    assert (ops.group_of(42) == NAME) is placed
    assert ResctrlGroups(ops).path(NAME) == f"{ROOT}/mon_groups/{NAME}"
