"""The ``abmc`` profile without FUSE: counter assignment files, formats, errnos, reads.

Expected texts are those of ``shared/reference/resctrl-modern.md`` §1 (kernel v6.18).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline.emulator.hardware import Hardware, parse_hardware
from resctrl_pipeline.emulator.resctrltree import ROOT, ResctrlTree
from resctrl_pipeline.emulator.topology import Topology
from tests.emulator.support import FakeClock, FakeProc
from tests.emulator.test_resctrltree import errno_of, read, write

INFO = "/info/L3_MON"
BOTH = "mbm_total_bytes:0=e;1=e\nmbm_local_bytes:0=e;1=e\n"
NONE = "mbm_total_bytes:0=_;1=_\nmbm_local_bytes:0=_;1=_\n"


def abmc_tree(counters: int = 32, **kwargs: object) -> ResctrlTree:
    hw = Hardware(abmc=True, mbm_counters=counters)
    return ResctrlTree(Topology(domains=(0, 1), cpus=2), hardware=hw, **kwargs)  # type: ignore[arg-type]


def test_info_files_at_mount_with_the_root_holding_two_counters_per_domain() -> None:
    tree = abmc_tree()
    assert tree.entries(tree.resolve("/info/L3_MON")) == [
        "max_threshold_occupancy",
        "mon_features",
        "num_rmids",
        "available_mbm_cntrs",
        "mbm_assign_mode",
        "mbm_assign_on_mkdir",
        "num_mbm_cntrs",
    ]
    assert read(tree, f"{INFO}/mbm_assign_mode") == "[mbm_event]\ndefault\n"
    assert read(tree, f"{INFO}/num_mbm_cntrs") == "0=32;1=32\n"
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=30;1=30\n"
    assert read(tree, f"{INFO}/mbm_assign_on_mkdir") == "1\n"
    assert read(tree, "/mbm_L3_assignments") == BOTH
    tree.mkdir("/mon_groups/g")
    assert "mbm_L3_assignments" in tree.entries(tree.resolve("/mon_groups/g"))
    assert read(tree, "/mon_groups/g/mbm_L3_assignments") == BOTH
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=28;1=28\n"
    assert tree.assigned("g") == {(e, d) for e in ("mbm_total_bytes", "mbm_local_bytes")
                                  for d in (0, 1)}  # fmt: skip


def test_classic_has_none_of_the_abmc_files() -> None:
    tree = ResctrlTree(Topology(cpus=2))
    tree.mkdir("/mon_groups/g")
    for path in ("/mbm_L3_assignments", "/mon_groups/g/mbm_L3_assignments",
                 f"{INFO}/mbm_assign_mode", f"{INFO}/num_mbm_cntrs"):  # fmt: skip
        assert errno_of(lambda p=path: tree.resolve(p)) == errno.ENOENT, path


def test_mkdir_succeeds_when_counters_run_out_and_says_which_failed() -> None:
    tree = abmc_tree()
    for i in range(15):  # 32 counters, root 2: 15 more fully monitored groups
        tree.mkdir(f"/mon_groups/g{i}")
        assert tree.last_cmd_status == "ok\n"
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=0;1=0\n"
    tree.mkdir("/mon_groups/late")
    assert tree.last_cmd_status == (
        "Failed to allocate counter for mbm_total_bytes in domain 0\n"
        "Failed to allocate counter for mbm_local_bytes in domain 0\n"
    )
    assert read(tree, "/mon_groups/late/mbm_L3_assignments") == NONE
    for event in ("mbm_total_bytes", "mbm_local_bytes"):
        assert read(tree, f"/mon_groups/late/mon_data/mon_L3_01/{event}") == "Unassigned\n"
    assert read(tree, "/mon_groups/late/mon_data/mon_L3_01/llc_occupancy") == "0\n"
    tree.rmdir("/mon_groups/g0")  # counters are free at once (no limbo)
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=2;1=2\n"


def test_an_event_stops_at_its_first_failing_domain_and_local_is_still_tried() -> None:
    tree = abmc_tree(counters=5)  # root 2 → 3 left; g1 2 → 1 left
    tree.mkdir("/mon_groups/g1")
    tree.mkdir("/mon_groups/g2")  # total takes the last counter of both domains
    assert tree.last_cmd_status == "Failed to allocate counter for mbm_local_bytes in domain 0\n"
    assert read(tree, "/mon_groups/g2/mbm_L3_assignments") == (
        "mbm_total_bytes:0=e;1=e\nmbm_local_bytes:0=_;1=_\n"
    )


def test_one_counter_per_group_when_configured() -> None:
    tree = ResctrlTree(
        Topology(domains=(0, 1), cpus=2),
        hardware=Hardware(abmc=True, mbm_counters=4, counters_per_group=1),
    )
    tree.mkdir("/mon_groups/g")
    assert read(tree, "/mon_groups/g/mbm_L3_assignments") == (
        "mbm_total_bytes:0=e;1=e\nmbm_local_bytes:0=_;1=_\n"
    )
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=2;1=2\n"
    assert parse_hardware("abmc:4").mbm_counters == 4


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        (b"mbm_total_bytes:0=e", errno.EINVAL, "ok\n"),  # no trailing newline: untouched
        (b"mbm_foo_bytes:0=e\n", errno.ENOENT, "Invalid event mbm_foo_bytes\n"),
        (b"llc_occupancy:0=e\n", errno.ENOENT, "Invalid event llc_occupancy\n"),
        (b"mbm_total_bytes:x=e\n", errno.EINVAL, "Missing domain id\n"),
        (b"mbm_total_bytes:=e\n", errno.EINVAL, "Missing domain id\n"),
        (b"mbm_total_bytes:7=e\n", errno.EINVAL, "Invalid domain id 7\n"),
        (b"mbm_total_bytes:0=x\n", errno.EINVAL, "Assign operation 'mbm_total_bytes:0=x' failed\n"),
    ],
)
def test_assignment_write_errors(data: bytes, code: int, status: str) -> None:
    tree = abmc_tree()
    tree.mkdir("/mon_groups/g")
    assert errno_of(lambda: write(tree, "/mon_groups/g/mbm_L3_assignments", data)) == code
    assert tree.last_cmd_status == status
    assert read(tree, "/mon_groups/g/mbm_L3_assignments") == BOTH  # nothing changed


def test_assign_unassign_and_the_star_walk_that_stops_at_the_first_full_domain() -> None:
    tree = abmc_tree(counters=3)  # root 2 → one free counter per domain
    tree.mkdir("/mon_groups/a")  # takes both free counters (total), local fails
    write(tree, "/mon_groups/a/mbm_L3_assignments", b"mbm_total_bytes:*=_\n")
    assert tree.last_cmd_status == "ok\n"
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=1;1=1\n"
    write(tree, f"{INFO}/mbm_assign_on_mkdir", b"0\n")
    tree.mkdir("/mon_groups/b")
    assert read(tree, "/mon_groups/b/mbm_L3_assignments") == NONE
    write(tree, "/mon_groups/b/mbm_L3_assignments", b"mbm_local_bytes:1=e\n")
    code = errno_of(
        lambda: write(tree, "/mon_groups/a/mbm_L3_assignments", b"mbm_total_bytes:*=e\n")
    )
    assert code == errno.ENOSPC
    assert tree.last_cmd_status == (
        "Failed to allocate counter for mbm_total_bytes in domain 1\n"
        "Assign operation 'mbm_total_bytes:*=e' failed\n"
    )
    assert read(tree, "/mon_groups/a/mbm_L3_assignments") == (
        "mbm_total_bytes:0=e;1=_\nmbm_local_bytes:0=_;1=_\n"  # domain 0 stays assigned
    )
    # Several lines in one write; unassigning an unassigned event is a no-op.
    write(tree, "/mon_groups/b/mbm_L3_assignments",
          b"mbm_local_bytes:1=_;0=_\nmbm_total_bytes:0=_\n")  # fmt: skip
    assert read(tree, "/mon_groups/b/mbm_L3_assignments") == NONE
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=0;1=1\n"
    write(tree, "/mbm_L3_assignments", b"mbm_local_bytes:*=_\n")  # frees one per domain
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=1;1=2\n"


def test_reads_unassigned_partial_sums_and_a_restart_on_every_assignment(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=2), FakeClock()
    tree = abmc_tree(clock=clock, proc=str(tmp_path))
    write(tree, "/mbm_L3_assignments", b"mbm_total_bytes:*=_\n")
    tree.mkdir("/mon_groups/g")
    proc.thread(100, cpu_ticks=0, cpu=1)
    write(tree, "/mon_groups/g/tasks", b"100\n")
    total = "/mon_groups/g/mon_data/mon_L3_01/mbm_total_bytes"
    root_total = "/mon_data/mon_L3_01/mbm_total_bytes"
    tree.refresh_counters()

    def run(seconds: float) -> None:  # the thread keeps cpu1 busy
        ticks = round(seconds * 100)
        clock.now += seconds
        proc.host[1] += ticks
        proc.write_host()
        run.ticks += ticks  # type: ignore[attr-defined]
        proc.thread(100, cpu_ticks=run.ticks, cpu=1)  # type: ignore[attr-defined]
        tree.refresh_counters()

    run.ticks = 0  # type: ignore[attr-defined]
    assert read(tree, total) == "Unavailable\n"  # first read after the assignment
    run(1.0)
    assert read(tree, total) == "2000000000\n"  # 2 GB per CPU-second
    # The root's own counter is unassigned: its file sums only the assigned child.
    assert read(tree, root_total) == "2000000000\n"
    write(tree, "/mon_groups/g/mbm_L3_assignments", b"mbm_total_bytes:1=_\n")
    assert read(tree, total) == "Unassigned\n"
    assert read(tree, root_total) == "Unassigned\n"  # neither it nor a child has one
    run(1.0)
    write(tree, "/mon_groups/g/mbm_L3_assignments", b"mbm_total_bytes:1=e\n")
    assert read(tree, total) == "Unavailable\n"
    assert read(tree, total) == "0\n"  # counting restarted at the assignment
    run(0.5)
    assert read(tree, total) == "1000000000\n"
    # Assigning an assigned event changes nothing (no restart).
    write(tree, "/mon_groups/g/mbm_L3_assignments", b"mbm_total_bytes:1=e\n")
    assert read(tree, total) == "1000000000\n"
    tree.set_counter("g", "mbm_total_bytes", 1, 5)
    assert read(tree, total) == "5\n"


def test_mode_switches_free_everything_and_restart_the_counts(tmp_path: Path) -> None:
    proc, clock = FakeProc(tmp_path, cpus=2), FakeClock()
    tree = abmc_tree(clock=clock, proc=str(tmp_path))
    tree.mkdir("/mon_groups/g")
    proc.thread(100, cpu_ticks=0, cpu=0)
    write(tree, "/mon_groups/g/tasks", b"100\n")
    tree.refresh_counters()
    clock.now += 1.0
    proc.thread(100, cpu_ticks=100, cpu=0)
    tree.refresh_counters()
    local = "/mon_groups/g/mon_data/mon_L3_00/mbm_local_bytes"
    read(tree, local)  # the fresh assignment's Unavailable
    assert read(tree, local) == "1600000000\n"
    for bad, status in ((b"default", "ok\n"), (b"abmc\n", "Unsupported assign mode\n")):
        assert errno_of(lambda b=bad: write(tree, f"{INFO}/mbm_assign_mode", b)) == errno.EINVAL
        assert tree.last_cmd_status == status
    write(tree, f"{INFO}/mbm_assign_mode", b"default\n")
    assert read(tree, f"{INFO}/mbm_assign_mode") == "[default]\nmbm_event\n"
    assert read(tree, local) == "0\n"  # counting, from 0 again
    assert read(tree, f"{INFO}/num_mbm_cntrs") == "0=32;1=32\n"
    not_enabled = "mbm_event counter assignment mode is not enabled\n"
    for path in (f"{INFO}/available_mbm_cntrs", f"{INFO}/mbm_assign_on_mkdir",
                 "/mon_groups/g/mbm_L3_assignments"):  # fmt: skip
        assert errno_of(lambda p=path: read(tree, p)) == errno.EINVAL, path
        assert tree.last_cmd_status == not_enabled
    assign = b"mbm_total_bytes:0=e\n"
    code = errno_of(lambda: write(tree, "/mon_groups/g/mbm_L3_assignments", assign))
    assert code == errno.EINVAL
    assert tree.last_cmd_status == "mbm_event mode is not enabled\n"
    assert errno_of(lambda: write(tree, f"{INFO}/mbm_assign_on_mkdir", b"1\n")) == errno.EINVAL
    write(tree, f"{INFO}/mbm_assign_mode", b"default\n")  # same mode: nothing happens
    write(tree, f"{INFO}/mbm_assign_mode", b"mbm_event\n")
    assert read(tree, f"{INFO}/mbm_assign_on_mkdir") == "1\n"
    assert read(tree, f"{INFO}/available_mbm_cntrs") == "0=32;1=32\n"
    assert read(tree, "/mbm_L3_assignments") == NONE  # nothing assigned, root included
    assert read(tree, local) == "Unassigned\n"
    assert read(tree, "/mon_data/mon_L3_00/mbm_total_bytes") == "Unassigned\n"


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"0\n", "0\n"),
        (b"1\n", "1\n"),
        (b"n", "0\n"),
        (b"Y\n", "1\n"),
        (b"off\n", "0\n"),
        (b"on\n", "1\n"),
    ],
)
def test_mbm_assign_on_mkdir_takes_kstrtobool(data: bytes, value: str) -> None:
    tree = abmc_tree()
    write(tree, f"{INFO}/mbm_assign_on_mkdir", b"0\n" if value == "1\n" else b"1\n")
    write(tree, f"{INFO}/mbm_assign_on_mkdir", data)
    assert read(tree, f"{INFO}/mbm_assign_on_mkdir") == value


def test_mbm_assign_on_mkdir_refuses_other_words() -> None:
    tree = abmc_tree()
    assert errno_of(lambda: write(tree, f"{INFO}/mbm_assign_on_mkdir", b"maybe\n")) == (
        errno.EINVAL
    )
    assert read(tree, f"{INFO}/mbm_assign_on_mkdir") == "1\n"
    assert errno_of(lambda: write(tree, f"{INFO}/num_mbm_cntrs", b"1\n")) == errno.EACCES
    assert read(tree, "/mbm_L3_assignments") == BOTH
    assert len(tree.assigned(ROOT)) == 4


_LINES = st.sampled_from(
    [
        b"mbm_total_bytes:*=e\n",
        b"mbm_local_bytes:*=e\n",
        b"mbm_total_bytes:0=e;1=_\n",
        b"mbm_local_bytes:1=e\n",
        b"mbm_total_bytes:*=_\n",
        b"mbm_local_bytes:0=_\nmbm_total_bytes:1=e\n",
        b"mbm_total_bytes:2=e\n",
        b"mbm_local_bytes:0=q\n",
    ]
)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("mkdir"), st.integers(0, 5)),
            st.tuples(st.just("rmdir"), st.integers(0, 5)),
            st.tuples(st.just("write"), st.integers(0, 5), _LINES),
            st.tuples(st.just("mode"), st.sampled_from([b"default\n", b"mbm_event\n"])),
        ),
        max_size=30,
    )
)
def test_counters_are_never_lost_nor_double_booked(steps: list[tuple[object, ...]]) -> None:
    """Whatever happens, per domain: free + held by the groups = the counters, and
    every group's mbm_L3_assignments shows exactly what it holds."""
    tree = abmc_tree(counters=5)
    names: set[str] = set()
    for step in steps:
        kind = step[0]
        if kind == "mkdir" and f"g{step[1]}" not in names:
            tree.mkdir(f"/mon_groups/g{step[1]}")
            names.add(f"g{step[1]}")
        elif kind == "rmdir" and f"g{step[1]}" in names:
            tree.rmdir(f"/mon_groups/g{step[1]}")
            names.discard(f"g{step[1]}")
        elif kind == "write" and f"g{step[1]}" in names:
            path = f"/mon_groups/g{step[1]}/mbm_L3_assignments"
            try:
                write(tree, path, step[2])  # type: ignore[arg-type]
            except OSError as err:
                assert err.errno in (errno.ENOSPC, errno.EINVAL, errno.ENOENT)
        elif kind == "mode":
            write(tree, f"{INFO}/mbm_assign_mode", step[1])  # type: ignore[arg-type]
        if read(tree, f"{INFO}/mbm_assign_mode").startswith("[default]"):
            continue
        free = dict(
            item.split("=") for item in read(tree, f"{INFO}/available_mbm_cntrs").strip().split(";")
        )
        for domain in (0, 1):
            held = sum(
                (event, domain) in tree.assigned(group)
                for group in [ROOT, *names]
                for event in ("mbm_total_bytes", "mbm_local_bytes")
            )
            assert int(free[str(domain)]) + held == 5
        for group in names:
            shown = read(tree, f"/mon_groups/{group}/mbm_L3_assignments")
            expected = "".join(
                f"{event}:"
                + ";".join(f"{d}={'e' if (event, d) in tree.assigned(group) else '_'}"
                           for d in (0, 1))
                + "\n"
                for event in ("mbm_total_bytes", "mbm_local_bytes")
            )  # fmt: skip
            assert shown == expected
