"""The emulated resctrl filesystem through real os calls on a FUSE mount.

Needs root, /dev/fuse, fusermount3 and libfuse3; skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from resctrl_pipeline.emulator.resctrltree import ResctrlTree
from resctrl_pipeline.emulator.topology import Topology
from resctrl_pipeline.resctrl.info import probe
from resctrl_pipeline.resctrl.mondata import read_group
from tests.emulator.support import (
    FUSE_MISSING,
    Child,
    is_mounted,
    requires_fuse,
    unmount_helpers,
    wait_gone,
)
from tests.support import poll_until

pytestmark = [requires_fuse, pytest.mark.root, pytest.mark.slow]

if not FUSE_MISSING:
    from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as err:
        call()
    assert err.value.errno is not None
    return err.value.errno


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_tid(tasks: str, tid: int | str) -> None:
    fd = os.open(tasks, os.O_WRONLY)
    try:
        os.write(fd, f"{tid}\n".encode())
    finally:
        os.close(fd)


@pytest.fixture
def fs(mount_dir: str) -> Iterator[EmulatedResctrl]:
    with EmulatedResctrl(mount_dir, domains=(0, 3), num_rmids=4, limbo_seconds=60.0) as fs:
        yield fs


def test_layout_is_what_the_production_probe_expects(fs: EmulatedResctrl) -> None:
    root = fs.mountpoint
    info = probe(root)
    assert info.usable, info.reason
    assert info.fs_type == "fuse.resctrl"
    assert info.num_rmids == 4
    assert info.has_mbm
    assert sorted(os.listdir(root)) == [
        "cpus",
        "cpus_list",
        "info",
        "mon_data",
        "mon_groups",
        "tasks",
    ]
    assert os.listdir(f"{root}/mon_data") == ["mon_L3_00", "mon_L3_03"]
    assert read(f"{root}/info/last_cmd_status") == "ok\n"


def test_mkdir_rmdir_and_their_kernel_errors(fs: EmulatedResctrl) -> None:
    root = fs.mountpoint
    os.mkdir(f"{root}/mon_groups/g")
    assert sorted(os.listdir(f"{root}/mon_groups/g")) == ["cpus", "cpus_list", "mon_data", "tasks"]
    assert os.listdir(f"{root}/mon_groups/g/mon_data/mon_L3_03") == [
        "llc_occupancy",
        "mbm_total_bytes",
        "mbm_local_bytes",
    ]
    assert errno_of(lambda: os.mkdir(f"{root}/mon_groups/g")) == errno.EEXIST
    assert errno_of(lambda: os.mkdir(f"{root}/mon_data/x")) == errno.EPERM
    assert errno_of(lambda: os.mkdir(f"{root}/ctrl")) == errno.EPERM
    assert errno_of(lambda: os.rmdir(f"{root}/mon_groups/g/mon_data")) == errno.EPERM
    assert errno_of(lambda: os.unlink(f"{root}/mon_groups/g/tasks")) == errno.EPERM
    new_file = f"{root}/mon_groups/g/new"
    assert errno_of(lambda: os.open(new_file, os.O_CREAT | os.O_WRONLY)) == errno.EACCES
    os.rmdir(f"{root}/mon_groups/g")
    assert os.listdir(f"{root}/mon_groups") == []
    assert errno_of(lambda: os.stat(f"{root}/mon_groups/g")) == errno.ENOENT


def test_rmids_run_out_with_enospc_and_stay_busy_in_limbo(fs: EmulatedResctrl) -> None:
    root = fs.mountpoint
    for name in "abc":
        os.mkdir(f"{root}/mon_groups/{name}")
    assert errno_of(lambda: os.mkdir(f"{root}/mon_groups/d")) == errno.ENOSPC
    assert read(f"{root}/info/last_cmd_status") == "Out of RMIDs\n"
    os.rmdir(f"{root}/mon_groups/a")
    assert errno_of(lambda: os.mkdir(f"{root}/mon_groups/d")) == errno.EBUSY
    fs.tree.release_limbo()
    os.mkdir(f"{root}/mon_groups/d")
    fs.tree.set_num_rmids(5)
    os.mkdir(f"{root}/mon_groups/e")


def test_task_writes_validate_and_move_real_threads(
    fs: EmulatedResctrl, spawn: Callable[[], Child]
) -> None:
    root = fs.mountpoint
    child = spawn()
    worker, ender = int(child.ask("thread")), int(child.ask("thread"))
    os.mkdir(f"{root}/mon_groups/a")
    os.mkdir(f"{root}/mon_groups/b")
    tasks_a, tasks_b = f"{root}/mon_groups/a/tasks", f"{root}/mon_groups/b/tasks"
    for tid in (child.pid, worker, ender):
        write_tid(tasks_a, tid)
    assert read(tasks_a).split() == [str(t) for t in sorted((child.pid, worker, ender))]
    write_tid(tasks_b, worker)
    assert str(worker) not in read(tasks_a).split()
    assert read(tasks_b) == f"{worker}\n"
    # One id per write: newline-separated ids, garbage and exited threads fail.
    fd = os.open(tasks_b, os.O_WRONLY)
    try:
        assert errno_of(lambda: os.write(fd, f"{child.pid}\n{ender}\n".encode())) == errno.EINVAL
        assert errno_of(lambda: os.write(fd, b"garbage\n")) == errno.EINVAL
        assert read(f"{root}/info/last_cmd_status") == "Task list parsing error pid garbage\n"
        child.ask(f"end {ender}")
        wait_gone(ender)
        assert errno_of(lambda: os.write(fd, f"{ender}\n".encode())) == errno.ESRCH
        assert os.write(fd, b"0\n") == 2  # 0 = the writing thread itself
    finally:
        os.close(fd)
    assert str(ender) not in read(tasks_a).split()  # exited: dropped from the list
    assert fs.tree.group_of(threading.get_native_id()) == "b"
    # rmdir of a populated group: its threads go back to the default group.
    os.rmdir(f"{root}/mon_groups/b")
    assert fs.tree.group_of(worker) == ""
    assert fs.tree.group_of(threading.get_native_id()) == ""
    with open(tasks_a, "w") as f:  # a shell's "echo TID > tasks" truncates first
        f.write(f"{worker}\n")
    assert str(worker) in read(tasks_a).split()


def test_counters_are_read_only_and_pread_sees_the_current_value(fs: EmulatedResctrl) -> None:
    root = fs.mountpoint
    os.mkdir(f"{root}/mon_groups/g")
    counter = f"{root}/mon_groups/g/mon_data/mon_L3_03/llc_occupancy"
    assert errno_of(lambda: os.open(counter, os.O_WRONLY)) == errno.EACCES
    assert errno_of(lambda: os.open(counter, os.O_RDWR)) == errno.EACCES
    fd = os.open(counter, os.O_RDONLY)
    try:
        for value in (123456, "Unavailable", "Error", 0):
            fs.tree.set_counter("g", "llc_occupancy", 3, value)
            assert os.pread(fd, 64, 0) == f"{value}\n".encode()
        os.rmdir(f"{root}/mon_groups/g")
        assert errno_of(lambda: os.pread(fd, 64, 0)) == errno.ENODEV
    finally:
        os.close(fd)


def test_multi_domain_and_snc_sums_as_the_production_reader_sees_them(mount_dir: str) -> None:
    tree = ResctrlTree(Topology(domains=(0, 3), snc=2))
    with EmulatedResctrl.serving(tree, mount_dir) as fs:
        assert fs.tree is tree
        root = fs.mountpoint
        os.mkdir(f"{root}/mon_groups/g")
        assert sorted(os.listdir(f"{root}/mon_data/mon_L3_03")) == [
            "llc_occupancy",
            "mbm_local_bytes",
            "mbm_total_bytes",
            "mon_sub_L3_02",
            "mon_sub_L3_03",
        ]
        for sub, value in ((0, 1), (1, 20), (2, 300), (3, 4000)):
            domain = 0 if sub < 2 else 3
            fs.tree.set_counter("g", "llc_occupancy", domain, value, sub=sub)
        group = f"{root}/mon_groups/g"
        assert read(f"{group}/mon_data/mon_L3_00/llc_occupancy") == "21\n"
        assert read(f"{group}/mon_data/mon_L3_03/mon_sub_L3_02/llc_occupancy") == "300\n"
        assert read(f"{group}/mon_data/mon_L3_03/llc_occupancy") == "4300\n"
        assert read_group(group).llc_occupancy == 4321


def test_a_busy_group_shows_more_cache_than_an_idle_one(
    mount_dir: str, spawn: Callable[[], Child]
) -> None:
    busy, idle = spawn(), spawn()
    busy.ask("busy")
    with EmulatedResctrl(mount_dir) as fs:
        root = fs.mountpoint
        for name, child in (("busy", busy), ("idle", idle)):
            os.mkdir(f"{root}/mon_groups/{name}")
            for tid in child.tids():
                write_tid(f"{root}/mon_groups/{name}/tasks", tid)

        def occupancy(name: str) -> int:
            return read_group(f"{root}/mon_groups/{name}").llc_occupancy

        poll_until(
            lambda: occupancy("busy") >= 4 * 1024 * 1024 and occupancy("busy") > occupancy("idle"),
            timeout=15.0,
            interval=0.1,
            what="busy group to fill the cache",
        )
        reading = read_group(f"{root}/mon_groups/busy")
        assert reading.mbm_total is not None and reading.mbm_total > 0
        assert occupancy("idle") < occupancy("busy") // 4
        # The root (a CTRL_MON group) reports itself plus its monitoring groups. The two
        # files are read at slightly different moments while the model moves, so the
        # comparison is retried until one pair of reads falls between two refreshes.
        poll_until(
            lambda: read_group(root).llc_occupancy >= occupancy("busy"),
            timeout=5.0,
            interval=0.05,
            what="the root's occupancy to include the busy group's",
        )


def test_stop_unmounts_even_with_a_file_still_open(mount_dir: str) -> None:
    fs = EmulatedResctrl(mount_dir)
    fs.start()
    assert fs.mounted and is_mounted(fs.mountpoint)
    assert unmount_helpers(fs.mountpoint)  # libfuse's auto-unmount helper, ended by stop()
    fd = os.open(f"{fs.mountpoint}/tasks", os.O_RDONLY)
    try:
        fs.stop(timeout=0.1)  # busy: falls back to a lazy unmount
        assert not is_mounted(fs.mountpoint)
    finally:
        os.close(fd)
    # Once the last file is closed the detached mount goes away and the server ends.
    name = f"resctrl-fuse {fs.mountpoint}"
    poll_until(
        lambda: all(t.name != name for t in threading.enumerate()),
        timeout=5.0,
        what="FUSE server thread to end",
    )
    fs.stop()  # idempotent


def test_separate_process_serves_until_sigterm(mount_dir: str) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resctrl_pipeline.emulator.resctrlfs",
            "--mount",
            mount_dir,
            "--domains",
            "0,3",
            "--num-rmids",
            "8",
            "--no-mbm",
            "--exit-with-parent",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == f"mounted {mount_dir}"
        assert read(f"{mount_dir}/info/L3_MON/mon_features") == "llc_occupancy\n"
        assert read(f"{mount_dir}/info/L3_MON/num_rmids") == "8\n"
        os.mkdir(f"{mount_dir}/mon_groups/g")
        write_tid(f"{mount_dir}/mon_groups/g/tasks", os.getpid())
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert not is_mounted(mount_dir)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
