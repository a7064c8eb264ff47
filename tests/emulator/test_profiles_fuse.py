"""Hardware profiles through real os calls on a FUSE mount (docs/emulator.md).

Needs root, /dev/fuse, fusermount3 and libfuse3; skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from resctrl_pipeline.messages import GroupState
from resctrl_pipeline.resctrl.mondata import PreadReader
from resctrl_pipeline.sampling import Sampler
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


@pytest.mark.parametrize(
    "zeroed",
    [
        (0, 1),
        (1,),
    ],
    ids=["every-L3-zero", "one-L3-zero"],
)  # fmt: skip
def test_snc_profile_rows_from_the_sampler_reader_count_each_node_once(
    mount_dir: str, caplog: pytest.LogCaptureFixture, zeroed: tuple[int, ...]
) -> None:
    """The sampler with its production reader on an SNC-3 mount: a pod's row holds the
    sum over the sub-NUMA nodes, counted once (reading both levels would double it).
    After the kernel bug of resctrl-modern.md §2 (L3-level sums read 0 once an SNC
    node's first CPU went offline; pinned here, the emulator has no CPU hotplug) in the
    ``zeroed`` L3 domains, the row keeps the nodes' sum and the log names the missing
    kernel fix, once."""
    with EmulatedResctrl(mount_dir, hardware="snc:3", domains=(0, 1)) as fs:
        group = os.path.join(mount_dir, "mon_groups", "pod_u1")
        os.mkdir(group)
        nodes = {0: 1_000, 1: 20_000, 2: 300_000, 3: 4_000_000, 4: 50_000_000, 5: 600_000_000}
        for node, value in nodes.items():
            fs.tree.set_counter("pod_u1", "llc_occupancy", node // 3, value, sub=node)
            fs.tree.set_counter("pod_u1", "mbm_total_bytes", node // 3, 2 * value, sub=node)
        reader = PreadReader()
        sampler = Sampler(reader, with_mbm=True)
        sampler.handle_resctrl_event(GroupState("u1", group, 1, 1))

        def row() -> dict[str, Any]:
            batch = sampler.handle_sample_timer()
            assert batch is not None and batch.num_rows == 1
            return {name: values[0] for name, values in batch.columns.items()}

        try:
            with caplog.at_level(logging.WARNING):
                for _ in range(2):  # the first tick opens the files, the next reuses them
                    tick = row()
                    assert tick["llc_occupancy_bytes"] == 654_321_000
                    assert tick["mbm_total_bytes"] == 1_308_642_000
                assert "594902c986e2" not in caplog.text
                for domain in zeroed:  # the L3-level sum reads 0, its nodes still count
                    fs.tree.set_counter("pod_u1", "llc_occupancy", domain, 0)
                    l3 = os.path.join(group, "mon_data", f"mon_L3_{domain:02d}")
                    assert read(os.path.join(l3, "llc_occupancy")) == "0\n"
                for _ in range(3):
                    assert row()["llc_occupancy_bytes"] == 654_321_000
            assert caplog.text.count("lacks fix 594902c986e2") == 1, caplog.text
            assert reader.reads_sub_nodes
        finally:
            reader.close()  # open descriptors would keep the mount busy


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
