"""MBM counter assignment (AMD ABMC, ``mbm_event`` mode): file formats, the errno and
``last_cmd_status`` table of ``mbm_L3_assignments``, the policies, and counts that
survive counter resets.

The kernel is :class:`tests.memory_resctrl.MemoryResctrlOps` with ``mbm_counters``,
which follows ``resctrl-modern.md`` §1 (formats, errors, mkdir assignment, limits).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from resctrl_pipeline.counter_resets import CounterResets
from resctrl_pipeline.messages import GroupState, PodDown, PodUp
from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.reconcile.mbm_counters import CounterPolicy
from resctrl_pipeline.resctrl.counters import (
    assignment_request,
    fully_assigned,
    parse_assignments,
)
from resctrl_pipeline.resctrl.errnos import (
    AssignmentRefused,
    CountersExhausted,
    GroupVanished,
    PermissionProblem,
)
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from tests.memory_resctrl import MemoryResctrlOps


class NoCgroups:
    """Pods without containers: counter assignment needs no thread."""

    def exists(self, path: str) -> bool:
        return True

    def find_pod(self, parent: str, uid: str) -> str | None:
        return None

    def find_container(self, *args: object) -> str | None:
        return None

    def threads(self, directory: str) -> set[int]:
        return set()


def uid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def node(counters: int = 32, policy: tuple[str, ...] = ("auto",), **kw: object) -> tuple[
    MemoryResctrlOps, Reconciler
]:
    ops = MemoryResctrlOps(num_rmids=1024, mbm_counters=counters, **kw)  # type: ignore[arg-type]
    core = Reconciler(ResctrlGroups(ops), NoCgroups(), mbm_policy=CounterPolicy(policy))  # type: ignore[arg-type]
    return ops, core


def holders(ops: MemoryResctrlOps) -> set[str]:
    """Groups with a counter for every event in every domain."""
    return {
        g
        for g, events in ops.assigned.items()
        if all(set(events.get(e, ())) == set(ops.domains) for e in ops.EVENTS)
    }


def check_budget(ops: MemoryResctrlOps) -> None:
    """Never more counters assigned than the hardware has, in any domain."""
    for d in ops.domains:
        assert ops.free_counters(d) >= 0


# --- formats ------------------------------------------------------------------------------


def test_assignment_file_round_trip() -> None:
    parsed = parse_assignments("mbm_total_bytes:0=e;1=e\nmbm_local_bytes:0=e;1=_\n")
    assert parsed == {"mbm_total_bytes": {0: True, 1: True}, "mbm_local_bytes": {0: True, 1: False}}
    assert fully_assigned(parsed, ["mbm_total_bytes"])
    assert not fully_assigned(parsed, ["mbm_total_bytes", "mbm_local_bytes"])
    assert assignment_request(["mbm_total_bytes", "mbm_local_bytes"], False) == (
        "mbm_total_bytes:*=_\nmbm_local_bytes:*=_\n"
    )


# --- the errno / last_cmd_status table of mbm_L3_assignments -----------------------------


@pytest.mark.parametrize(
    ("text", "exc", "code", "status"),
    [
        ("mbm_bogus_bytes:0=e\n", AssignmentRefused, errno.ENOENT, "Invalid event mbm_bogus_bytes"),
        ("mbm_total_bytes:x=e\n", AssignmentRefused, errno.EINVAL, "Missing domain id"),
        ("mbm_total_bytes:7=e\n", AssignmentRefused, errno.EINVAL, "Invalid domain id 7"),
        ("mbm_total_bytes:0=q\n", AssignmentRefused, errno.EINVAL,
         "Assign operation 'mbm_total_bytes:0=q' failed"),
        # No trailing newline: refused before any command runs (no status of its own).
        ("mbm_total_bytes:0=e", AssignmentRefused, errno.EINVAL, None),
    ],
)  # fmt: skip
def test_assignment_errors_are_classified_with_the_kernel_reason(
    text: str, exc: type[Exception], code: int, status: str | None
) -> None:
    ops = MemoryResctrlOps(mbm_counters=4)
    groups = ResctrlGroups(ops)
    groups.create("pod_a")
    with pytest.raises(exc) as caught:
        groups.write_assignments("pod_a", text)
    assert caught.value.errno == code  # type: ignore[attr-defined]
    if status is not None:
        assert caught.value.status == status  # type: ignore[attr-defined]
    assert ResctrlGroups(ops).assignments("pod_a") == {
        "mbm_total_bytes": {0: True, 1: True}, "mbm_local_bytes": {0: True, 1: True}
    }  # nothing changed


def test_no_free_counter_is_enospc_with_both_status_lines_and_earlier_domains_kept() -> None:
    ops = MemoryResctrlOps(mbm_counters=3, assign_on_mkdir=False)  # root holds 2 per domain
    groups = ResctrlGroups(ops)
    groups.create("pod_a")
    groups.create("pod_b")
    groups.set_counters("pod_a", ["mbm_total_bytes"], True)
    ops.assigned["pod_b"] = {"mbm_total_bytes": set(), "mbm_local_bytes": set()}
    ops.assigned["other"] = {"mbm_total_bytes": {1}}  # a foreign holder in domain 1 only
    with pytest.raises(CountersExhausted) as caught:
        groups.set_counters("pod_b", ["mbm_total_bytes"], True)
    assert caught.value.status.splitlines() == [
        "Failed to allocate counter for mbm_total_bytes in domain 0",
        "Assign operation 'mbm_total_bytes:*=e' failed",
    ]
    assert groups.assignments("pod_a")["mbm_total_bytes"] == {0: True, 1: True}


def test_default_mode_refuses_assignment() -> None:
    ops = MemoryResctrlOps()  # no ABMC
    groups = ResctrlGroups(ops)
    groups.create("pod_a")
    with pytest.raises(AssignmentRefused) as caught:
        groups.set_counters("pod_a", ["mbm_total_bytes"], True)
    assert caught.value.status == "mbm_event mode is not enabled"
    assert not groups.counter_budget().assignable


@pytest.mark.parametrize(
    ("code", "exc"), [(errno.ENOENT, GroupVanished), (errno.EACCES, PermissionProblem),
                      (errno.EPERM, PermissionProblem), (errno.ENOSPC, CountersExhausted)],
)  # fmt: skip
def test_injected_errnos_on_assignment(code: int, exc: type[Exception]) -> None:
    ops = MemoryResctrlOps(mbm_counters=8)
    groups = ResctrlGroups(ops)
    groups.create("pod_a")
    ops.status = "ok"
    ops.fail("write_assignments", code)
    with pytest.raises(exc):
        groups.set_counters("pod_a", ["mbm_total_bytes"], True)


def test_budget_reads_the_info_files() -> None:
    ops = MemoryResctrlOps(mbm_counters=32, domains=(0, 1))
    budget = ResctrlGroups(ops).counter_budget()
    assert budget.assignable
    assert (budget.total, budget.free) == (32, 30)  # the root took 2 per domain at mount


# --- policies ---------------------------------------------------------------------------------


def start(core: Reconciler, first: int, count: int, namespace: str = "ns", **labels: str) -> None:
    for i in range(first, first + count):
        core.handle(PodUp(uid(i), namespace, f"p{i}", labels=dict(labels)), float(i))


def test_auto_500_pods_32_counters_the_oldest_15_keep_them() -> None:
    ops, core = node(32)
    start(core, 0, 500)
    core.on_retry_timer(1000.0)
    check_budget(ops)
    mine = holders(ops) - {""}
    assert mine == {f"pod_{uid(i)}" for i in range(15)}  # 30 free counters, 2 per group
    gauges = core.statistics().gauges
    assert gauges["pods_mbm_assigned"] == 15
    assert gauges["pods_mbm_unassigned"] == 485
    assert gauges["mbm_counters_available"] == 0
    assert gauges["mbm_counters_per_domain"] == 32
    # A holder leaves: its counters go to the oldest pod without one, at the next pass.
    core.handle(PodDown(uid(3)), 1001.0)
    core.on_retry_timer(1002.0)
    assert holders(ops) - {""} == {f"pod_{uid(i)}" for i in (*range(3), *range(4, 16))}


def test_none_frees_what_the_kernel_gave_at_mkdir() -> None:
    ops, core = node(32, ("none",))
    start(core, 0, 20)
    assert len(holders(ops) - {""}) == 15  # mkdir assigned them in creation order
    core.on_retry_timer(100.0)
    assert holders(ops) == {""}  # the root's counters are not ours: kept
    assert core.statistics().gauges["pods_mbm_assigned"] == 0


def test_selectors_first_taking_only_from_our_own_groups() -> None:
    ops, core = node(32, ("prod", "tier=critical"))
    ResctrlGroups(ops).create("runtime-group")  # a foreign group: mkdir gave it counters
    start(core, 0, 20, "batch")
    core.on_retry_timer(100.0)
    assert len(holders(ops) - {"", "runtime-group"}) == 14
    start(core, 100, 5, "prod")
    start(core, 200, 3, "batch", tier="critical")
    core.on_retry_timer(300.0)
    check_budget(ops)
    mine = holders(ops) - {""}
    assert "runtime-group" in mine  # never taken
    assert {f"pod_{uid(i)}" for i in (*range(100, 105), *range(200, 203))} <= mine
    assert len(mine) == 15  # 14 of ours + the foreign one
    # The batch pods that kept counters are the oldest ones.
    assert {g for g in mine if g.startswith("pod_") and int(g[-12:]) < 100} == {
        f"pod_{uid(i)}" for i in range(6)
    }


class RacingKernel(MemoryResctrlOps):
    """Another tool takes two counters in domain 1 while the agent is assigning."""

    def write_assignments(self, name: str, text: str) -> None:
        if self.assignments_written == 4 and "other" not in self.assigned:
            self.assigned["other"] = {"mbm_total_bytes": {1}, "mbm_local_bytes": {1}}
        super().write_assignments(name, text)


def test_counters_that_run_out_midway_are_given_back() -> None:
    ops = RacingKernel(num_rmids=1024, mbm_counters=32, assign_on_mkdir=False)
    core = Reconciler(ResctrlGroups(ops), NoCgroups())  # type: ignore[arg-type]
    start(core, 0, 16)
    core.on_retry_timer(100.0)
    check_budget(ops)
    assert core.statistics().counters["mbm_assign_enospc"] == 1
    for name, events in ops.assigned.items():
        if name.startswith("pod_"):
            doms = [d for e in ops.EVENTS for d in events.get(e, ())]
            assert len(doms) in (0, 4), f"{name} holds a partial set {events}"
    assert len(holders(ops) - {"", "other"}) == 14
    assert ops.assigned["other"] == {"mbm_total_bytes": {1}, "mbm_local_bytes": {1}}


def test_assignment_bumps_the_epoch_reported_to_the_sampler() -> None:
    _ops, core = node(6, assign_on_mkdir=False)  # root 2 + room for 2 groups
    start(core, 0, 3)
    out = core.on_retry_timer(100.0)
    epochs = {m.pod_uid: m.mbm_epoch for m in out if isinstance(m, GroupState)}
    assert epochs == {uid(0): 1, uid(1): 1}
    core.handle(PodDown(uid(0)), 101.0)
    out = core.on_retry_timer(102.0)
    assert {m.pod_uid: m.mbm_epoch for m in out if isinstance(m, GroupState)} == {uid(2): 1}


# --- counts across resets -------------------------------------------------------------------


def test_counts_never_drop_across_a_reassignment_or_a_recreated_group() -> None:
    resets = CounterResets()

    def report(epoch: int, total: int | None, local: int | None) -> tuple[int | None, ...]:
        totals, locals_ = [total], [local]
        resets.apply(["g"], [epoch], totals, locals_)
        return totals[0], locals_[0]

    assert report(0, 100, 10) == (100, 10)
    assert report(0, 250, 30) == (250, 30)
    assert report(0, None, None) == (None, None)  # unassigned: nothing counted
    # Reassigned: the hardware restarted at 0 and has counted 900 since; epoch says so.
    assert report(1, 900, 20) == (1150, 50)
    # A re-created group restarts without a new epoch: seen as a drop.
    assert report(1, 5, 1) == (1155, 51)
    assert report(1, 15, 2) == (1165, 52)


def test_sampler_rows_continue_across_an_assignment(tmp_path: Path) -> None:
    from resctrl_pipeline.messages import PodLabels
    from resctrl_pipeline.resctrl.mondata import PreadReader
    from resctrl_pipeline.sampling import Sampler
    from tests.support import make_group, set_counter

    g = make_group(str(tmp_path / "pod_u1"), domains=(0,), value=0)
    s = Sampler(PreadReader(), with_mbm=True)
    s.handle_metadata_event(PodLabels("u1", "ns", "p"))
    s.handle_resctrl_event(GroupState("u1", g, 1, 1, mbm_epoch=1))
    set_counter(g, 0, "mbm_total_bytes", "4000\n")
    assert s.handle_sample_timer().columns["mbm_total_bytes"] == [4000]  # type: ignore[union-attr]
    set_counter(g, 0, "mbm_total_bytes", "Unassigned\n")
    batch = s.handle_sample_timer()
    assert batch is not None
    assert batch.columns["mbm_total_bytes"] == [None]
    assert batch.columns["mbm_state"] == ["unassigned"]
    s.handle_resctrl_event(GroupState("u1", g, 1, 1, mbm_epoch=2))
    set_counter(g, 0, "mbm_total_bytes", "7000\n")  # counted since the new assignment
    assert s.handle_sample_timer().columns["mbm_total_bytes"] == [11000]  # type: ignore[union-attr]
