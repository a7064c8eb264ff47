"""ResctrlTree without FUSE: names, kernel errnos, task writes, counters and their sums.

Task tests use real threads (``/proc`` must know them); counter tests use a fake proc
tree and a fake clock so the values are exact.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from resctrl_pipeline.emulator.occupancy import CacheParams
from resctrl_pipeline.emulator.resctrltree import ROOT, ResctrlTree
from resctrl_pipeline.emulator.topology import Topology
from tests.emulator.support import Child, FakeClock, FakeProc, wait_gone

MIB = 1024 * 1024


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as err:
        call()
    assert err.value.errno is not None
    return err.value.errno


def read(tree: ResctrlTree, path: str) -> str:
    return tree.content(tree.resolve(path)).decode()


def write(tree: ResctrlTree, path: str, data: bytes, writer: int = 1) -> None:
    tree.write(tree.resolve(path), data, writer_tid=writer)


# --- names -------------------------------------------------------------------------


def test_layout_with_non_contiguous_domains_snc_and_no_mbm() -> None:
    tree = ResctrlTree(Topology(domains=(0, 3), snc=2, mbm=False, cpus=4))
    tree.mkdir("/mon_groups/g")

    def entries(path: str) -> list[str]:
        return tree.entries(tree.resolve(path))

    assert sorted(entries("/")) == ["cpus", "cpus_list", "info", "mon_data", "mon_groups", "tasks"]
    assert sorted(entries("/mon_groups/g")) == ["cpus", "cpus_list", "mon_data", "tasks"]
    assert entries("/mon_groups/g/mon_data") == ["mon_L3_00", "mon_L3_03"]
    assert entries("/mon_data/mon_L3_03") == ["llc_occupancy", "mon_sub_L3_02", "mon_sub_L3_03"]
    assert entries("/mon_data/mon_L3_00/mon_sub_L3_01") == ["llc_occupancy"]
    assert entries("/info") == ["L3_MON", "last_cmd_status"]
    assert read(tree, "/info/L3_MON/mon_features") == "llc_occupancy\n"
    for missing in (
        "/mon_data/mon_L3_01",
        "/mon_data/mon_L3_00/mon_sub_L3_02",
        "/mon_data/mon_L3_00/mbm_total_bytes",
        "/mon_groups/g/mon_groups",
        "/mon_groups/h",
        "/info/L3",
    ):
        assert errno_of(partial(tree.resolve, missing)) == errno.ENOENT, missing


def test_info_files_and_cpu_masks() -> None:
    cache = CacheParams(leaf_bytes=16 * MIB, resolution=64 * 1024)
    tree = ResctrlTree(Topology(cpus=40), num_rmids=32, cache=cache)
    tree.mkdir("/mon_groups/g")
    assert read(tree, "/info/L3_MON/num_rmids") == "32\n"
    assert read(tree, "/info/L3_MON/mon_features").split() == [
        "llc_occupancy",
        "mbm_total_bytes",
        "mbm_local_bytes",
    ]
    assert read(tree, "/info/L3_MON/max_threshold_occupancy") == f"{16 * MIB // 32}\n"
    assert read(tree, "/info/last_cmd_status") == "ok\n"
    assert read(tree, "/cpus") == "ff,ffffffff\n"
    assert read(tree, "/cpus_list") == "0-39\n"
    assert read(tree, "/mon_groups/g/cpus") == "00,00000000\n"
    assert read(tree, "/mon_groups/g/cpus_list") == "\n"
    assert errno_of(lambda: write(tree, "/mon_groups/g/cpus", b"1\n")) == errno.EINVAL
    assert "not emulated" in tree.last_cmd_status
    assert errno_of(lambda: write(tree, "/info/L3_MON/num_rmids", b"1\n")) == errno.EACCES


# --- mkdir / rmdir -------------------------------------------------------------------


def test_mkdir_is_allowed_only_directly_in_mon_groups() -> None:
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    assert errno_of(lambda: tree.mkdir("/mon_groups/g")) == errno.EEXIST
    assert errno_of(lambda: tree.mkdir("/info")) == errno.EEXIST
    for where in ("/ctrl", "/mon_data/x", "/mon_groups/g/mon_data/x", "/info/x", "/mon_groups/g/x"):
        assert errno_of(partial(tree.mkdir, where)) == errno.EPERM, where
    assert errno_of(lambda: tree.mkdir("/mon_groups/nope/x")) == errno.ENOENT
    assert errno_of(lambda: tree.mkdir("/mon_groups/a\nb")) == errno.EINVAL
    assert sorted(tree.groups()) == ["g"]


def test_rmdir_only_removes_monitoring_groups() -> None:
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    for where in ("/info", "/mon_data", "/mon_groups", "/mon_groups/g/mon_data"):
        assert errno_of(partial(tree.rmdir, where)) == errno.EPERM, where
    assert errno_of(lambda: tree.rmdir("/")) == errno.EBUSY
    assert errno_of(lambda: tree.rmdir("/mon_groups/g/tasks")) == errno.ENOTDIR
    assert errno_of(lambda: tree.rmdir("/mon_groups/h")) == errno.ENOENT
    tree.rmdir("/mon_groups/g")
    assert tree.groups() == {}
    assert tree.operations() == {"mkdir": 1, "rmdir": 1}


def test_out_of_rmids_sets_last_cmd_status_and_tells_enospc_from_ebusy() -> None:
    tree = ResctrlTree(num_rmids=2, limbo_seconds=60.0)
    tree.mkdir("/mon_groups/a")
    assert errno_of(lambda: tree.mkdir("/mon_groups/b")) == errno.ENOSPC
    assert tree.last_cmd_status == "Out of RMIDs\n"
    tree.rmdir("/mon_groups/a")
    assert tree.limbo_rmids() == (1,)
    assert errno_of(lambda: tree.mkdir("/mon_groups/b")) == errno.EBUSY
    tree.release_limbo()
    tree.mkdir("/mon_groups/b")
    assert tree.groups()["b"].rmid == 1
    tree.set_num_rmids(3)
    tree.mkdir("/mon_groups/c")
    assert read(tree, "/info/L3_MON/num_rmids") == "3\n"


def test_a_node_of_a_removed_group_fails_with_enodev_even_after_re_creation() -> None:
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    counter = tree.resolve("/mon_groups/g/mon_data/mon_L3_00/llc_occupancy")
    tasks = tree.resolve("/mon_groups/g/tasks")
    tree.rmdir("/mon_groups/g")
    tree.mkdir("/mon_groups/g")
    assert errno_of(lambda: tree.content(counter)) == errno.ENODEV
    assert errno_of(lambda: tree.write(tasks, b"1\n", writer_tid=1)) == errno.ENODEV
    assert tree.content(tree.resolve("/mon_groups/g/mon_data/mon_L3_00/llc_occupancy"))


# --- tasks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"abc\n", "Task list parsing error pid abc\n"),
        (b"1\n2\n", "Task list parsing error pid 1\n2\n"),
        (b"1,2\n", "Task list parsing error pid 1,2\n"),
        (b"-5\n", "Invalid pid -5\n"),
        (b"99999999999\n", "Task list parsing error pid 99999999999\n"),
    ],
)
def test_anything_but_one_id_per_write_is_einval(data: bytes, status: str) -> None:
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    assert errno_of(lambda: write(tree, "/mon_groups/g/tasks", data)) == errno.EINVAL
    assert tree.last_cmd_status == status


def test_a_tid_without_proc_entry_is_esrch_and_a_good_write_clears_the_status() -> None:
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    done = threading.Thread(target=lambda: None)
    done.start()
    gone = done.native_id
    done.join()
    assert gone is not None
    wait_gone(gone)
    assert errno_of(lambda: write(tree, "/mon_groups/g/tasks", f"{gone}\n".encode())) == errno.ESRCH
    assert tree.last_cmd_status == f"No task {gone}\nError while processing task {gone}\n"
    write(tree, "/mon_groups/g/tasks", f"{os.getpid()}\n".encode())
    assert tree.last_cmd_status == "ok\n"


@pytest.mark.slow
def test_ids_in_kstrtoint_syntax_zero_for_the_writer_and_empty_writes(
    spawn: Callable[[], Child],
) -> None:
    child: Child = spawn()
    extra = int(child.ask("thread"))
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    write(tree, "/mon_groups/g/tasks", f"{hex(child.pid)}\n".encode())
    write(tree, "/mon_groups/g/tasks", f" +{extra} \n".encode())
    write(tree, "/mon_groups/g/tasks", b"0\n", writer=child.pid)
    write(tree, "/mon_groups/g/tasks", b"\n")
    assert tree.groups()["g"].tids == {child.pid, extra}
    assert read(tree, "/mon_groups/g/tasks") == "".join(
        f"{t}\n" for t in sorted({child.pid, extra})
    )
    assert tree.operations()["task_moves"] == 2


@pytest.mark.slow
def test_moved_tids_leave_their_old_group_rmdir_returns_them_and_exited_ones_vanish(
    spawn: Callable[[], Child],
) -> None:
    child: Child = spawn()
    one, two = int(child.ask("thread")), int(child.ask("thread"))
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/a")
    tree.mkdir("/mon_groups/b")
    write(tree, "/mon_groups/a/tasks", f"{one}\n".encode())
    write(tree, "/mon_groups/a/tasks", f"{two}\n".encode())
    write(tree, "/mon_groups/b/tasks", f"{one}\n".encode())
    assert read(tree, "/mon_groups/a/tasks") == f"{two}\n"
    assert read(tree, "/mon_groups/b/tasks") == f"{one}\n"
    assert child.ask(f"end {two}") == "ok"
    wait_gone(two)
    assert read(tree, "/mon_groups/a/tasks") == ""
    tree.rmdir("/mon_groups/b")
    assert tree.group_of(one) == ROOT
    assert str(one) in read(tree, "/tasks").split()


# --- counters --------------------------------------------------------------------------


def test_counters_follow_cpu_use_and_the_root_adds_its_groups(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=2), FakeClock()
    cache = CacheParams(leaf_bytes=8 * MIB, resolution=4096, fill_per_cpu=0.5)
    tree = ResctrlTree(Topology(cpus=2), cache=cache, clock=clock, proc=str(tmp_path))
    tree.mkdir("/mon_groups/g")
    proc.thread(100, cpu_ticks=0, cpu=1)
    write(tree, "/mon_groups/g/tasks", b"100\n")
    tree.refresh_counters()  # baseline readings
    for step in range(1, 9):  # the thread keeps one CPU (domain 1) busy; cpu0 is idle
        clock.now += 0.5
        proc.thread(100, cpu_ticks=50 * step, cpu=1)
        proc.host[1] += 50
        proc.write_host()
        tree.refresh_counters()

    def value(path: str) -> int:
        return int(read(tree, path))

    group_d1 = value("/mon_groups/g/mon_data/mon_L3_01/llc_occupancy")
    assert 0.9 * 4 * MIB <= group_d1 <= 4 * MIB
    assert value("/mon_groups/g/mon_data/mon_L3_00/llc_occupancy") == 0
    assert value("/mon_groups/g/mon_data/mon_L3_01/mbm_total_bytes") == int(4.0 * 2.0e9)
    # All of cpu1's time was the group's, so the root's own share is zero.
    assert value("/mon_data/mon_L3_01/llc_occupancy") == group_d1
    proc.host[0] += 50  # now someone outside the group uses cpu0
    proc.write_host()
    clock.now += 0.5
    tree.refresh_counters()
    assert value("/mon_data/mon_L3_00/llc_occupancy") > 0


def test_reads_between_refreshes_return_the_previous_value(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=1), FakeClock()
    tree = ResctrlTree(
        Topology(domains=(0,), cpus=1), clock=clock, proc=str(tmp_path), refresh_interval=1.0
    )
    path = "/mon_data/mon_L3_00/mbm_total_bytes"
    assert read(tree, path) == "0\n"  # first read: baselines
    proc.host[0] += 100
    proc.write_host()
    clock.now += 0.5
    assert read(tree, path) == "0\n"
    clock.now += 0.5
    assert int(read(tree, path)) == int(1.0 * 2.0e9)


def test_pinned_values_and_snc_sums() -> None:
    tree = ResctrlTree(Topology(domains=(0, 3), snc=2, cpus=2))
    tree.mkdir("/mon_groups/g")
    base = "/mon_groups/g/mon_data/mon_L3_03"
    tree.set_counter("g", "llc_occupancy", 3, 1000, sub=2)
    tree.set_counter("g", "llc_occupancy", 3, 234, sub=3)
    assert read(tree, f"{base}/mon_sub_L3_02/llc_occupancy") == "1000\n"
    assert read(tree, f"{base}/llc_occupancy") == "1234\n"
    tree.set_counter("g", "llc_occupancy", 3, "Unavailable", sub=3)
    assert read(tree, f"{base}/llc_occupancy") == "1000\n"  # one sub read is enough
    tree.set_counter("g", "llc_occupancy", 3, "Error", sub=2)
    assert read(tree, f"{base}/llc_occupancy") == "Error\n"
    tree.set_counter("g", "llc_occupancy", 3, "Unavailable", sub=2)
    assert read(tree, f"{base}/llc_occupancy") == "Unavailable\n"
    tree.set_counter("g", "llc_occupancy", 3, 77)
    assert read(tree, f"{base}/llc_occupancy") == "77\n"  # a pin on the L3 file wins
    tree.set_counter("g", "llc_occupancy", 3, None)
    tree.set_counter(ROOT, "mbm_local_bytes", 0, "Error")
    assert read(tree, "/mon_data/mon_L3_00/mbm_local_bytes") == "Error\n"
    with pytest.raises(ValueError):
        tree.set_counter("g", "llc_occupancy", 0, 1, sub=2)
    with pytest.raises(KeyError):
        tree.set_counter("nope", "llc_occupancy", 0, 1)
