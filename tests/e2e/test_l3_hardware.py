"""L3 on the emulated node, per hardware profile (docs/emulator.md): one short pipeline
run each, judged by what a user sees — Parquet rows and the resctrl tree."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.e2e.test_l3_emulated import Harness
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]


@pytest.fixture
def hw(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """An emulated node with the hardware profile the test is parametrised with."""
    work = tempfile.mkdtemp(prefix="rp-l3hw-", dir="/tmp")
    h = Harness(work, hardware=request.param)
    try:
        yield h
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


def rows_of(h: Harness, uids: set[str], want: object = None) -> list[dict[str, object]]:
    """The latest row of each pod once every pod has one (and ``want(row)`` holds)."""
    latest: dict[str, dict[str, object]] = {}
    for r in h.rotate_and_rows():
        if r["pod_uid"] in uids and (want is None or want(r)):  # type: ignore[operator]
            latest[str(r["pod_uid"])] = r
    return list(latest.values()) if set(latest) == uids else []


@pytest.mark.parametrize("hw", ["abmc:4"], indirect=True)
def test_l3_abmc_counters_go_by_policy_and_rows_say_why_mbm_is_missing(hw: Harness) -> None:
    """4 counters per domain, 2 held by the root: one pod can have MBM."""
    hw.start()
    hw.wait_ready()
    pods = [hw.node.new_pod("busy", name=f"p{i}") for i in range(3)]
    for pod in pods:
        hw.node.start_pod(pod)
    uids = {p.uid for p in pods}
    rows = poll_until(lambda: rows_of(hw, uids), 40, interval=0.5, what="rows of 3 pods")
    states = sorted(str(r["mbm_state"]) for r in rows)
    assert states in (["assigned", "unassigned", "unassigned"],
                      ["unassigned", "unassigned", "unavailable"]), states  # fmt: skip
    for r in rows:
        if r["mbm_state"] == "unassigned":
            assert r["mbm_total_bytes"] is None and r["mbm_local_bytes"] is None
            assert r["llc_occupancy_bytes"] is not None  # the row is there all the same
    tree = hw.node.fs.tree
    assert len(tree.assigned("")) == 4  # the root's counters were never taken
    mine = [p for p in pods if tree.assigned(f"pod_{p.uid}")]
    assert len(mine) == 1 and mine[0] is pods[0]  # the oldest (auto)


@pytest.mark.parametrize("hw", ["aet"], indirect=True)
def test_l3_aet_events_are_float_columns(hw: Harness) -> None:
    hw.start()
    hw.wait_ready()
    pod = hw.node.new_pod("busy")
    hw.node.start_pod(pod)
    rows = poll_until(
        lambda: rows_of(hw, {pod.uid}, lambda r: r.get("core_energy_joules") is not None),
        40, interval=0.5, what="a row with core_energy_joules",
    )  # fmt: skip
    energy = rows[0]["core_energy_joules"]
    assert isinstance(energy, float) and energy >= 0.0
    assert "activity" in rows[0]


@pytest.mark.parametrize("hw", ["classes"], indirect=True)
def test_l3_a_pod_in_a_class_is_followed_when_it_changes_class(hw: Harness) -> None:
    hw.start()
    hw.wait_ready()
    pod = hw.node.new_pod("busy", rdt_class="gold")
    hw.node.start_pod(pod)
    assert pod.proc is not None
    tree = hw.node.fs.tree
    pid = pod.proc.pid
    poll_until(lambda: tree.group_of(pid) == f"gold/pod_{pod.uid}", 30, what="in gold's group")
    gold_row = poll_until(
        lambda: rows_of(hw, {pod.uid}, lambda r: r["llc_occupancy_bytes"] is not None), 30,
        interval=0.5, what="a row of the pod")  # fmt: skip
    assert gold_row[0]["resctrl_group"] == hw.group(pod)
    # An RDT policy moves the pod to silver, as a runtime does: its tasks to silver/tasks.
    with open(os.path.join(hw.node.resctrl_root, "silver", "tasks"), "w") as f:
        f.write(str(pid))
    moved = time.monotonic()
    poll_until(lambda: tree.group_of(pid) == f"silver/pod_{pod.uid}", 30,
               interval=0.05, what="followed into silver")  # fmt: skip
    followed = time.monotonic() - moved
    print(f"class change followed in {followed:.2f} s (retry interval 1 s)")
    assert followed < 10
    poll_until(lambda: f"gold/pod_{pod.uid}" not in tree.groups(), 30, what="gold's group gone")
