"""Hardware profiles without FUSE: the spec parser, and the AET (PERF_PKG) tree.

Values follow ``shared/reference/resctrl-modern.md`` §3 and the rates stated in
``docs/emulator.md`` (core_energy 6.5 J, activity 0.75 F, unhalted_core_cycles 2.4e9
per CPU-second).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from resctrl_pipeline.emulator.hardware import Hardware, parse_hardware
from resctrl_pipeline.emulator.resctrltree import ROOT, ResctrlTree
from resctrl_pipeline.emulator.telemetry import format_fixed
from resctrl_pipeline.emulator.topology import Topology
from tests.emulator.support import FakeClock, FakeProc
from tests.emulator.test_resctrltree import errno_of, read

# --- the spec --------------------------------------------------------------------------


def test_specs_name_profiles_and_their_arguments() -> None:
    assert parse_hardware("classic") == Hardware()
    assert parse_hardware("snc").snc == 2
    assert parse_hardware("snc:6").snc == 6
    abmc = parse_hardware("abmc:16+classes")
    assert (abmc.abmc, abmc.mbm_counters, abmc.ctrl_mon, abmc.classes) == (
        True,
        16,
        True,
        ("gold", "silver"),
    )
    assert parse_hardware("classes:a,b.c").classes == ("a", "b.c")
    aet = parse_hardware("aet:20+snc:3+runtime-groups")
    assert (aet.aet, aet.perf_pkg_rmids, aet.snc, aet.runtime_groups) == (True, 20, 3, True)
    for spec in ("classic", "snc:3", "abmc:16+classes+runtime-groups", "aet+snc"):
        assert parse_hardware(str(parse_hardware(spec))) == parse_hardware(spec)
    assert str(parse_hardware("classic+abmc")) == "abmc"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mpam", "unknown hardware profile 'mpam'"),
        ("snc:5", "snc must be one of"),
        ("snc:x", "must be a number"),
        ("abmc+snc", "does not combine"),
        ("abmc+aet", "does not combine"),
        ("abmc+abmc", "given twice"),
        ("runtime-groups:1", "takes no argument"),
        ("classes:info", "not a usable class name"),
        ("classes:a,a", "unique"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hardware(spec)


# --- AET ---------------------------------------------------------------------------------


def test_fixed_point_values_print_six_rounded_decimals() -> None:
    assert format_fixed(3 << 18) == "3.000000"
    assert format_fixed((3 << 18) + 1) == "3.000004"  # 1/2^18 = 0.0000038
    assert format_fixed(1 << 17) == "0.500000"
    assert format_fixed((1 << 18) - 1) == "0.999996"
    assert format_fixed(123456 << 18) == "123456.000000"


def aet_tree(tmp_path: Path, clock: FakeClock, num_rmids: int = 64) -> ResctrlTree:
    return ResctrlTree(
        Topology(domains=(0, 1), cpus=2, packages=(0,)),
        hardware=parse_hardware("aet"),
        num_rmids=num_rmids,
        clock=clock,
        proc=str(tmp_path),
    )


def test_aet_layout_info_files_and_the_smaller_rmid_pool(tmp_path: Path) -> None:
    tree = aet_tree(tmp_path, FakeClock())
    assert tree.entries(tree.resolve("/info")) == ["L3_MON", "PERF_PKG_MON", "last_cmd_status"]
    assert read(tree, "/info/PERF_PKG_MON/num_rmids") == "48\n"
    assert read(tree, "/info/L3_MON/num_rmids") == "64\n"
    assert read(tree, "/info/PERF_PKG_MON/mon_features").split() == [
        "core_energy",
        "activity",
        "stalls_llc_hit",
        "c1_res",
        "unhalted_core_cycles",
        "stalls_llc_miss",
        "c6_res",
        "unhalted_ref_cycles",
        "uops_retired",
    ]
    assert tree.entries(tree.resolve("/mon_data")) == ["mon_L3_00", "mon_L3_01", "mon_PERF_PKG_00"]
    assert errno_of(lambda: tree.resolve("/mon_data/mon_PERF_PKG_01")) == errno.ENOENT
    assert errno_of(lambda: tree.resolve("/mon_data/mon_PERF_PKG_00/llc_occupancy")) == (
        errno.ENOENT
    )
    for i in range(47):  # min(64, 48) RMIDs, one of them the root's
        tree.mkdir(f"/mon_groups/g{i}")
    assert errno_of(lambda: tree.mkdir("/mon_groups/one-more")) == errno.ENOSPC
    assert tree.last_cmd_status == "Out of RMIDs\n"
    tree.set_num_rmids(40)  # now L3_MON is the smaller pool
    assert read(tree, "/info/L3_MON/num_rmids") == "40\n"
    tree.rmdir("/mon_groups/g46")  # RMID 47, above the new limit: not reusable
    tree.release_limbo()
    assert errno_of(lambda: tree.mkdir("/mon_groups/g46")) == errno.ENOSPC


def test_aet_values_grow_with_cpu_time_as_fixed_point_and_integers(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=2), FakeClock()
    tree = aet_tree(tmp_path, clock)
    tree.mkdir("/mon_groups/busy")
    tree.mkdir("/mon_groups/idle")
    proc.thread(100, cpu_ticks=0, cpu=1)
    proc.thread(101, cpu_ticks=0, cpu=0)
    tree.write(tree.resolve("/mon_groups/busy/tasks"), b"100\n", writer_tid=1)
    tree.write(tree.resolve("/mon_groups/idle/tasks"), b"101\n", writer_tid=1)
    tree.refresh_counters()
    pkg = "/mon_groups/busy/mon_data/mon_PERF_PKG_00"
    assert read(tree, f"{pkg}/core_energy") == "Unavailable\n"  # never ran yet
    assert read(tree, "/mon_data/mon_PERF_PKG_00/core_energy") == "0.000000\n"
    for step in range(1, 5):  # 2 CPU-seconds on cpu1
        clock.now += 0.5
        proc.thread(100, cpu_ticks=50 * step, cpu=1)
        proc.host[1] += 50
        proc.write_host()
        tree.refresh_counters()
    assert read(tree, f"{pkg}/core_energy") == "13.000000\n"
    assert read(tree, f"{pkg}/activity") == "1.500000\n"
    assert read(tree, f"{pkg}/unhalted_core_cycles") == "4800000000\n"
    assert read(tree, "/mon_groups/idle/mon_data/mon_PERF_PKG_00/core_energy") == "Unavailable\n"
    # The root adds its monitoring groups (and had no time of its own).
    assert read(tree, "/mon_data/mon_PERF_PKG_00/core_energy") == "13.000000\n"
    tree.set_counter("busy", "core_energy", 0, "Error")
    assert read(tree, f"{pkg}/core_energy") == "Error\n"
    tree.set_counter("busy", "activity", 0, 7)
    assert read(tree, f"{pkg}/activity") == "7.000000\n"
    tree.set_counter(ROOT, "uops_retired", 0, 5)
    assert read(tree, "/mon_data/mon_PERF_PKG_00/uops_retired") == "5\n"
    with pytest.raises(ValueError):
        tree.set_counter("busy", "core_energy", 1, 1)


def test_packages_take_the_leaves_in_blocks() -> None:
    topo = Topology(domains=(0, 1, 2, 3), cpus=8, packages=(0, 1))
    assert (topo.package_leaves(0), topo.package_leaves(1)) == (range(0, 2), range(2, 4))
    with pytest.raises(ValueError):
        Topology(domains=(0,), cpus=2, packages=(0, 1))


def test_aet_with_snc_counts_a_package_over_its_sub_numa_nodes(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=4), FakeClock()
    tree = ResctrlTree(
        Topology(domains=(0, 1), snc=2, cpus=4, packages=(0, 1)),
        hardware=parse_hardware("aet+snc"),
        clock=clock,
        proc=str(tmp_path),
    )
    assert tree.entries(tree.resolve("/mon_data")) == [
        "mon_L3_00", "mon_L3_01", "mon_PERF_PKG_00", "mon_PERF_PKG_01",
    ]  # fmt: skip
    tree.mkdir("/mon_groups/g")
    proc.thread(100, cpu_ticks=0, cpu=3)  # CPU 3: SNC node 3, in L3 domain 1, package 1
    tree.write(tree.resolve("/mon_groups/g/tasks"), b"100\n", writer_tid=1)
    tree.refresh_counters()
    clock.now += 1.0
    proc.thread(100, cpu_ticks=100, cpu=3)
    tree.refresh_counters()
    data = "/mon_groups/g/mon_data"
    assert read(tree, f"{data}/mon_PERF_PKG_01/core_energy") == "6.500000\n"
    assert read(tree, f"{data}/mon_PERF_PKG_00/core_energy") == "Unavailable\n"
    assert read(tree, f"{data}/mon_L3_01/mon_sub_L3_03/mbm_total_bytes") == "2000000000\n"
    assert read(tree, f"{data}/mon_L3_01/mbm_total_bytes") == "2000000000\n"
