"""The ``classes`` profile without FUSE: CTRL_MON groups, MON groups under them, and
the kernel's rule that a MON group only takes threads of its own CTRL_MON group
(``shared/reference/resctrl-modern.md`` §4).

Task writes use real threads (``/proc`` must know them).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from resctrl_pipeline.emulator.hardware import Hardware, parse_hardware
from resctrl_pipeline.emulator.resctrltree import ROOT, ResctrlTree
from resctrl_pipeline.emulator.topology import Topology
from tests.emulator.support import Child, FakeClock, FakeProc
from tests.emulator.test_resctrltree import errno_of, read, write


@pytest.fixture
def child() -> Iterator[Child]:
    c = Child()
    yield c
    c.kill()


def classes_tree(spec: str = "classes", **kwargs: object) -> ResctrlTree:
    return ResctrlTree(Topology(cpus=2), hardware=parse_hardware(spec), **kwargs)  # type: ignore[arg-type]


def tasks(tree: ResctrlTree, path: str) -> set[int]:
    return {int(t) for t in read(tree, path).split()}


def test_classes_exist_at_mount_and_mkdir_makes_mon_groups_under_them() -> None:
    tree = classes_tree()
    assert tree.entries(tree.resolve("/")) == [
        "info", "mon_groups", "gold", "silver", "mon_data", "tasks", "cpus", "cpus_list",
    ]  # fmt: skip
    assert sorted(tree.entries(tree.resolve("/gold"))) == [
        "cpus", "cpus_list", "mon_data", "mon_groups", "tasks",
    ]  # fmt: skip
    tree.mkdir("/gold/mon_groups/pod_a")
    assert tree.entries(tree.resolve("/gold/mon_groups")) == ["pod_a"]
    assert sorted(tree.entries(tree.resolve("/gold/mon_groups/pod_a"))) == [
        "cpus", "cpus_list", "mon_data", "tasks",
    ]  # fmt: skip
    assert read(tree, "/gold/mon_groups/pod_a/mon_data/mon_L3_00/llc_occupancy") == "0\n"
    assert errno_of(lambda: tree.mkdir("/gold/mon_groups/pod_a")) == errno.EEXIST
    for path in ("/gold/x", "/gold/mon_groups/pod_a/x", "/gold/mon_data/x", "/info/x"):
        assert errno_of(lambda p=path: tree.mkdir(p)) == errno.EPERM, path
    assert set(tree.groups()) == {"gold/", "silver/", "gold/pod_a"}
    assert tree.groups()["gold/pod_a"].rmid != tree.groups()["gold/"].rmid


def test_top_level_mkdir_makes_a_ctrl_mon_group_until_closids_run_out() -> None:
    tree = classes_tree(num_rmids=64)
    for name in ("c1", "c2", "c3"):  # 16 CLOSIDs: root, gold, silver, and these...
        tree.mkdir(f"/{name}")
    assert "c1" in tree.entries(tree.resolve("/"))
    tree.mkdir("/c1/mon_groups/m")
    hw = Hardware(ctrl_mon=True, classes=("gold",), num_closids=3)
    tree = ResctrlTree(Topology(cpus=2), hardware=hw)
    tree.mkdir("/other")
    assert errno_of(lambda: tree.mkdir("/third")) == errno.ENOSPC
    assert tree.last_cmd_status == "Out of CLOSIDs\n"
    tree.rmdir("/other")
    tree.mkdir("/third")  # the CLOSID is free again at once


def test_classic_refuses_top_level_mkdir() -> None:
    tree = ResctrlTree(Topology(cpus=2))
    assert errno_of(lambda: tree.mkdir("/gold")) == errno.EPERM


@pytest.mark.slow  # a real child process
def test_a_mon_group_takes_only_threads_of_its_ctrl_mon_group(child: Child) -> None:
    tree = classes_tree()
    tid = int(child.ask("thread"))
    tree.mkdir("/gold/mon_groups/pod_a")
    tree.mkdir("/mon_groups/pod_a")
    wrong = errno_of(lambda: write(tree, "/gold/mon_groups/pod_a/tasks", f"{tid}\n".encode()))
    assert wrong == errno.EINVAL
    assert tree.last_cmd_status == (
        f"Can't move task to different control group\nError while processing task {tid}\n"
    )
    assert tree.group_of(tid) == ROOT
    write(tree, "/gold/tasks", f"{tid}\n".encode())  # as runc with closID "gold" does
    assert tree.last_cmd_status == "ok\n"
    assert tree.group_of(tid) == "gold/"
    write(tree, "/gold/mon_groups/pod_a/tasks", f"{tid}\n".encode())
    assert tree.group_of(tid) == "gold/pod_a"
    assert errno_of(lambda: write(tree, "/mon_groups/pod_a/tasks", f"{tid}\n".encode())) == (
        errno.EINVAL  # the root's MON group: another CTRL_MON group
    )
    assert tasks(tree, "/gold/mon_groups/pod_a/tasks") == {tid}
    assert tid in tasks(tree, "/gold/tasks")  # a CTRL_MON lists its MON groups' threads
    assert tid not in tasks(tree, "/tasks")  # the root lists only its CLOSID's threads
    assert child.pid in tasks(tree, "/tasks")
    write(tree, "/silver/tasks", f"{tid}\n".encode())  # a class change drops the MON group
    assert tree.group_of(tid) == "silver/"
    assert tasks(tree, "/gold/mon_groups/pod_a/tasks") == set()
    write(tree, "/tasks", f"{tid}\n".encode())
    write(tree, "/mon_groups/pod_a/tasks", f"{tid}\n".encode())
    assert tree.group_of(tid) == "pod_a"


@pytest.mark.slow  # a real child process
def test_rmdir_returns_threads_to_the_ctrl_mon_group_or_with_a_class_to_the_root(
    child: Child,
) -> None:
    tree = classes_tree(limbo_seconds=60.0)
    a, b = int(child.ask("thread")), int(child.ask("thread"))
    tree.mkdir("/gold/mon_groups/x")
    tree.mkdir("/gold/mon_groups/y")
    for tid, group in ((a, "x"), (b, "y")):
        write(tree, "/gold/tasks", f"{tid}\n".encode())
        write(tree, f"/gold/mon_groups/{group}/tasks", f"{tid}\n".encode())
    rmids = {name: info.rmid for name, info in tree.groups().items()}
    tree.rmdir("/gold/mon_groups/x")
    assert tree.group_of(a) == "gold/"
    tree.rmdir("/gold")  # takes its MON groups along
    assert (tree.group_of(a), tree.group_of(b)) == (ROOT, ROOT)
    assert set(tree.groups()) == {"silver/"}
    assert set(tree.limbo_rmids()) == {rmids["gold/"], rmids["gold/x"], rmids["gold/y"]}
    assert errno_of(lambda: tree.resolve("/gold/mon_groups/y")) == errno.ENOENT
    assert errno_of(lambda: tree.rmdir("/silver/mon_groups")) == errno.EPERM
    assert errno_of(lambda: tree.rmdir("/")) == errno.EBUSY


def test_a_class_counts_itself_and_its_mon_groups_and_the_root_does_not(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=2), FakeClock()
    tree = classes_tree(clock=clock, proc=str(tmp_path))
    tree.mkdir("/gold/mon_groups/x")
    proc.thread(100, cpu_ticks=0, cpu=1)
    write(tree, "/gold/tasks", b"100\n")
    write(tree, "/gold/mon_groups/x/tasks", b"100\n")
    tree.refresh_counters()
    clock.now += 1.0
    proc.thread(100, cpu_ticks=100, cpu=1)
    proc.host[1] += 100
    proc.write_host()
    tree.refresh_counters()

    def value(path: str) -> int:
        return int(read(tree, f"{path}/mon_data/mon_L3_01/mbm_total_bytes"))

    assert value("/gold/mon_groups/x") == 2_000_000_000
    assert value("/gold") == 2_000_000_000
    assert value("") == 0  # all of cpu1's time was gold's
    tree.set_counter("gold/", "llc_occupancy", 0, 1234)
    tree.set_counter("gold/x", "llc_occupancy", 0, 99)
    assert read(tree, "/gold/mon_data/mon_L3_00/llc_occupancy") == "1234\n"
    assert read(tree, "/gold/mon_groups/x/mon_data/mon_L3_00/llc_occupancy") == "99\n"


def test_abmc_with_classes_gives_counters_to_classes_and_their_groups() -> None:
    tree = classes_tree("abmc:8+classes")  # root, gold, silver: 6 of 8 taken at mount
    assert read(tree, "/info/L3_MON/available_mbm_cntrs") == "0=2;1=2\n"
    tree.mkdir("/gold/mon_groups/x")
    assert read(tree, "/gold/mon_groups/x/mbm_L3_assignments") == (
        "mbm_total_bytes:0=e;1=e\nmbm_local_bytes:0=e;1=e\n"
    )
    tree.rmdir("/gold")
    assert read(tree, "/info/L3_MON/available_mbm_cntrs") == "0=4;1=4\n"


@pytest.mark.slow  # a real child process
def test_renaming_a_mon_group_into_another_class_moves_its_threads_along(child: Child) -> None:
    tree = classes_tree("abmc+classes", limbo_seconds=60.0)
    tid = int(child.ask("thread"))
    tree.mkdir("/gold/mon_groups/m")
    write(tree, "/gold/tasks", f"{tid}\n".encode())
    write(tree, "/gold/mon_groups/m/tasks", f"{tid}\n".encode())
    before = tree.groups()["gold/m"]
    counters = tree.assigned("gold/m")
    open_tasks = tree.resolve("/gold/mon_groups/m/tasks")
    tree.rename("/gold/mon_groups/m", "/silver/mon_groups/n")
    assert tree.groups()["silver/n"].rmid == before.rmid  # same RMID, same data
    assert tree.assigned("silver/n") == counters
    assert tree.group_of(tid) == "silver/n"
    assert tid in tasks(tree, "/silver/tasks") and tid not in tasks(tree, "/gold/tasks")
    assert tasks(tree, "/silver/mon_groups/n/tasks") == {tid}
    assert tree.content(open_tasks).decode() == f"{tid}\n"  # open files follow the group
    assert errno_of(lambda: tree.resolve("/gold/mon_groups/m")) == errno.ENOENT
    tree.rename("/silver/mon_groups/n", "/mon_groups/n")  # into the root's mon_groups
    assert tree.group_of(tid) == "n"
    tree.mkdir("/gold/mon_groups/taken")
    cases = [
        ("/gold", "/silver/mon_groups/gold", "Source must be a MON group\n", errno.EPERM),
        ("/mon_groups/n", "/gold/n", "Destination must be a mon_groups subdirectory\n",
         errno.EPERM),
        ("/mon_groups/n/tasks", "/gold/mon_groups/t",
         "Source and destination must be directories\n", errno.EPERM),
        ("/mon_groups/n", "/gold/mon_groups/taken", "ok\n", errno.EEXIST),
    ]  # fmt: skip
    for old, new, status, code in cases:
        assert errno_of(lambda o=old, n=new: tree.rename(o, n)) == code, (old, new)
        assert tree.last_cmd_status == status
    assert tree.operations()["rename"] == 2
