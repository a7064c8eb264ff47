"""Hardware profiles through real os calls on a FUSE mount (docs/emulator.md).

Needs root, /dev/fuse, fusermount3 and libfuse3; skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.emulator.support import FUSE_MISSING, requires_fuse

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


def write(path: str, data: bytes) -> None:
    """One ``write()`` call, as ``echo`` makes it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_snc_profile_serves_sub_domains_with_the_chosen_node_count(mount_dir: str) -> None:
    with EmulatedResctrl(mount_dir, hardware="snc:3", domains=(0, 1)) as fs:
        assert fs.tree.topology.snc == 3
        l3 = os.path.join(mount_dir, "mon_data", "mon_L3_01")
        assert sorted(os.listdir(l3)) == [
            "llc_occupancy",
            "mbm_local_bytes",
            "mbm_total_bytes",
            "mon_sub_L3_03",
            "mon_sub_L3_04",
            "mon_sub_L3_05",
        ]
        os.mkdir(os.path.join(mount_dir, "mon_groups", "g"))
        fs.tree.set_counter("g", "llc_occupancy", 1, 4096, sub=3)
        fs.tree.set_counter("g", "llc_occupancy", 1, 8192, sub=5)
        fs.tree.set_counter("g", "llc_occupancy", 1, "Unavailable", sub=4)
        group_l3 = os.path.join(mount_dir, "mon_groups", "g", "mon_data", "mon_L3_01")
        assert read(os.path.join(group_l3, "mon_sub_L3_05", "llc_occupancy")) == "8192\n"
        assert read(os.path.join(group_l3, "llc_occupancy")) == "12288\n"
        assert sorted(os.listdir(os.path.join(mount_dir, "info"))) == [
            "L3_MON",
            "last_cmd_status",
        ]


def test_aet_profile_serves_perf_pkg_domains_and_the_smaller_pool(mount_dir: str) -> None:
    with EmulatedResctrl(mount_dir, hardware="aet:3", num_rmids=8) as fs:
        assert read(os.path.join(mount_dir, "info", "PERF_PKG_MON", "num_rmids")) == "3\n"
        assert read(os.path.join(mount_dir, "info", "L3_MON", "num_rmids")) == "8\n"
        assert sorted(os.listdir(os.path.join(mount_dir, "mon_data"))) == [
            "mon_L3_00",
            "mon_L3_01",
            "mon_PERF_PKG_00",
        ]
        pkg = os.path.join(mount_dir, "mon_data", "mon_PERF_PKG_00")
        assert re.fullmatch(r"\d+\.\d{6}\n", read(os.path.join(pkg, "core_energy")))
        assert re.fullmatch(r"\d+\n", read(os.path.join(pkg, "uops_retired")))
        assert errno_of(lambda: os.open(os.path.join(pkg, "activity"), os.O_WRONLY)) == (
            errno.EACCES
        )
        for name in ("a", "b"):
            os.mkdir(os.path.join(mount_dir, "mon_groups", name))
        assert errno_of(lambda: os.mkdir(os.path.join(mount_dir, "mon_groups", "c"))) == (
            errno.ENOSPC
        )
        assert read(os.path.join(mount_dir, "info", "last_cmd_status")) == "Out of RMIDs\n"
        fresh = os.path.join(mount_dir, "mon_groups", "a", "mon_data", "mon_PERF_PKG_00")
        assert read(os.path.join(fresh, "core_energy")) == "Unavailable\n"
        assert fs.tree.hardware.aet


def test_the_server_module_takes_a_profile_and_refuses_a_bad_one(mount_dir: str) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "resctrl_pipeline.emulator.resctrlfs", "--mount", mount_dir,
         "--hardware", "abmc+snc"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "does not combine" in bad.stderr


def test_abmc_files_through_the_mount(mount_dir: str) -> None:
    with EmulatedResctrl(mount_dir, hardware="abmc:4", domains=(0, 3)):
        info = os.path.join(mount_dir, "info", "L3_MON")
        assert read(os.path.join(info, "mbm_assign_mode")) == "[mbm_event]\ndefault\n"
        assert read(os.path.join(info, "num_mbm_cntrs")) == "0=4;3=4\n"
        assert errno_of(lambda: os.open(os.path.join(info, "num_mbm_cntrs"), os.O_WRONLY)) == (
            errno.EACCES
        )
        group = os.path.join(mount_dir, "mon_groups", "g")
        os.mkdir(group)
        os.mkdir(os.path.join(mount_dir, "mon_groups", "h"))  # no counters left
        status = read(os.path.join(mount_dir, "info", "last_cmd_status"))
        assert status.startswith("Failed to allocate counter for mbm_total_bytes in domain 0\n")
        late = os.path.join(mount_dir, "mon_groups", "h", "mon_data", "mon_L3_03")
        assert read(os.path.join(late, "mbm_total_bytes")) == "Unassigned\n"
        assignments = os.path.join(group, "mbm_L3_assignments")
        assert errno_of(lambda: write(assignments, b"mbm_local_bytes:*=_")) == errno.EINVAL
        write(assignments, b"mbm_local_bytes:*=_\n")
        assert read(assignments) == "mbm_total_bytes:0=e;3=e\nmbm_local_bytes:0=_;3=_\n"
        assert read(os.path.join(info, "available_mbm_cntrs")) == "0=1;3=1\n"
        other = os.path.join(mount_dir, "mon_groups", "h", "mbm_L3_assignments")
        write(other, b"mbm_total_bytes:3=e\n")
        assert errno_of(lambda: write(other, b"mbm_total_bytes:3=e\nmbm_local_bytes:3=e\n")) == (
            errno.ENOSPC  # the first line is a no-op, the second finds no counter
        )
        assert read(os.path.join(mount_dir, "info", "last_cmd_status")) == (
            "Failed to allocate counter for mbm_local_bytes in domain 3\n"
            "Assign operation 'mbm_local_bytes:3=e' failed\n"
        )
        assert read(os.path.join(late, "mbm_total_bytes")) == "Unavailable\n"  # just assigned
        assert re.fullmatch(r"\d+\n", read(os.path.join(late, "mbm_total_bytes")))
        write(os.path.join(info, "mbm_assign_mode"), b"default\n")
        assert errno_of(lambda: read(assignments)) == errno.EINVAL


def test_classes_and_runtime_groups_through_the_mount(mount_dir: str, spawn: Any) -> None:
    from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
    from resctrl_pipeline.emulator.runtime_rdt import RuntimeRdt

    child = spawn()
    with EmulatedResctrl(mount_dir, hardware="classes+runtime-groups") as fs:
        rdt = RuntimeRdt(mount_dir, monitoring=fs.tree.hardware.runtime_groups)
        sock = os.path.join(os.path.dirname(mount_dir), "nri.sock")
        with EmulatedNriRuntime(sock, rdt=rdt) as runtime:
            runtime.add_pod("uid-1", "ns", "pod")
            runtime.add_container("c1", "uid-1", pid=child.pid, rdt_class="gold")
            group = os.path.join(mount_dir, "gold", "mon_groups", "c1")
            assert child.pid in {int(t) for t in read(os.path.join(group, "tasks")).split()}
            assert fs.tree.group_of(child.pid) == "gold/c1"
            # An agent writing the thread into its pod group under the root fails.
            os.mkdir(os.path.join(mount_dir, "mon_groups", "pod_uid-1"))
            tasks = os.path.join(mount_dir, "mon_groups", "pod_uid-1", "tasks")
            assert errno_of(lambda: write(tasks, f"{child.pid}\n".encode())) == errno.EINVAL
            assert read(os.path.join(mount_dir, "info", "last_cmd_status")) == (
                "Can't move task to different control group\n"
                f"Error while processing task {child.pid}\n"
            )
            os.mkdir(os.path.join(mount_dir, "gold", "mon_groups", "pod_uid-1"))
            runtime.add_container("c2", "uid-1", pid=0)  # closID "/": the root's mon_groups
            assert os.path.isdir(os.path.join(mount_dir, "mon_groups", "c2"))
            pruned = runtime.restart()  # goresctrl at start-up: every empty MON group goes
            assert sorted(os.path.relpath(p, mount_dir) for p in pruned) == [
                "gold/mon_groups/pod_uid-1",
                "mon_groups/c2",
                "mon_groups/pod_uid-1",
            ]
            assert sorted(os.listdir(os.path.join(mount_dir, "mon_groups"))) == []
            assert os.listdir(os.path.join(mount_dir, "gold", "mon_groups")) == ["c1"]
            runtime.remove_container("c1")
            assert os.listdir(os.path.join(mount_dir, "gold", "mon_groups")) == []
            assert fs.tree.group_of(child.pid) == "gold/"  # back to its class
            runtime.remove_pod("uid-1")  # c2's group is gone already: ENOENT ignored
        # rename(2) moves a MON group to another class, threads and all.
        moved = os.path.join(mount_dir, "gold", "mon_groups", "m")
        os.mkdir(moved)
        write(os.path.join(moved, "tasks"), f"{child.pid}\n".encode())
        os.rename(os.path.join(mount_dir, "gold", "mon_groups", "m"),
                  os.path.join(mount_dir, "silver", "mon_groups", "m"))  # fmt: skip
        assert fs.tree.group_of(child.pid) == "silver/m"
        assert errno_of(lambda: os.rename(os.path.join(mount_dir, "silver"),
                                          os.path.join(mount_dir, "gold", "mon_groups", "s"))) == (
            errno.EPERM
        )  # fmt: skip
