"""MBM counter passes: gauges, read and write errors, no churn for holders.

Cases the mutation run (docs/testing.md) found unchecked by tests/test_mbm_counters.py,
on the same in-memory kernel (two L3 domains, ``mbm_event`` mode, injected errnos).
"""

from __future__ import annotations

import errno

import pytest

from resctrl_pipeline.messages import PodUp
from tests.test_mbm_counters import check_budget, holders, node, start, uid


def test_gauges_count_assigned_counters_and_pods_without_them() -> None:
    _ops, core = node(32)  # root 2 + room for 15 groups of 2 events
    start(core, 0, 20)
    core.on_retry_timer(100.0)
    core.handle(PodUp(uid(50), "ns", "late"), 101.0)  # arrives after the pass
    gauges = core.statistics().gauges
    assert gauges["mbm_counters_assigned"] == 30  # 15 groups x 2 events, per domain
    assert gauges["pods_mbm_assigned"] == 15
    assert gauges["pods_mbm_unassigned"] == 6  # 5 without room + the one not looked at yet


def test_unreadable_assignments_are_counted_and_the_pass_goes_on() -> None:
    ops, core = node(32)
    start(core, 0, 3)
    ops.fail("read_assignments", errno.EIO)
    core.on_retry_timer(100.0)  # no crash
    assert core.statistics().counters["mbm_read_errors"] == 1
    assert holders(ops) - {""} == {f"pod_{uid(i)}" for i in range(3)}


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EIO])  # vanished, or a write error
def test_a_failed_assignment_does_not_stop_the_others(code: int) -> None:
    ops, core = node(32, assign_on_mkdir=False)
    start(core, 0, 3)
    ops.fail("write_assignments", code)  # pod 0's write
    core.on_retry_timer(100.0)
    assert holders(ops) - {""} == {f"pod_{uid(i)}" for i in (1, 2)}  # in the same pass
    errors = core.statistics().counters.get("mbm_assign_errors", 0)
    assert errors == (1 if code == errno.EIO else 0)
    core.on_retry_timer(200.0)  # the next pass assigns pod 0 too
    assert holders(ops) - {""} == {f"pod_{uid(i)}" for i in range(3)}


def test_group_that_vanishes_before_its_counters_are_read_is_no_error() -> None:
    ops, core = node(32)
    start(core, 0, 2)
    ops.fail("read_assignments", errno.ENOENT)
    core.on_retry_timer(100.0)  # no crash; the next pass sees it again
    assert "mbm_read_errors" not in core.statistics().counters


def test_a_partial_set_of_counters_is_given_back_under_none() -> None:
    ops, core = node(32, ("none",), assign_on_mkdir=False)
    start(core, 0, 2)
    name = f"pod_{uid(0)}"
    ops.assigned[name] = {"mbm_total_bytes": {0}}  # one event in one domain
    core.on_retry_timer(100.0)
    assert not any(ops.assigned.get(name, {}).values())
    assert core.statistics().counters["mbm_freed"] == 1  # only that pod: pod 1 holds none


def test_namespace_selectors_match_namespaces_decoded_from_the_wire() -> None:
    ops, core = node(6, ("".join(["pr", "od"]),), assign_on_mkdir=False)  # room for 2
    start(core, 0, 3, "batch")
    start(core, 10, 1, "".join(["pr", "o", "d"]))  # equal text, another object
    core.on_retry_timer(100.0)
    assert f"pod_{uid(10)}" in holders(ops)


def test_holders_keep_their_counters_when_an_older_group_is_recreated() -> None:
    ops, core = node(32, assign_on_mkdir=False)
    start(core, 0, 20)
    core.on_retry_timer(100.0)
    first = {f"pod_{uid(i)}" for i in range(15)}
    assert holders(ops) - {""} == first
    # Pod 3's group vanishes (its counters come free) and another tool takes them
    # before the pass that recreates the group without counters.
    ops.groups.pop(f"pod_{uid(3)}")
    ops.assigned.pop(f"pod_{uid(3)}")
    ops.assigned["other"] = {e: set(ops.domains) for e in ops.EVENTS}
    core.on_retry_timer(200.0)
    check_budget(ops)
    assert holders(ops) - {"", "other"} == first - {f"pod_{uid(3)}"}  # nobody churned
