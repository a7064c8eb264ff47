"""Pod groups under resctrl errors (mkdir, listing, rmdir; late passes), and pass outputs.

Cases the mutation run (docs/testing.md) found unchecked by tests/test_reconcile.py,
with the same node (cgroup tree on disk, in-memory resctrl kernel with injected errnos).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from resctrl_pipeline.messages import GroupGone, GroupState, LifecycleSnapshot, PodDown
from tests.test_reconcile import ROOT, Node, states


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


@pytest.mark.parametrize(
    ("code", "why"),
    [(errno.EIO, "error"), (errno.ENOENT, "unavailable")],  # ENOENT: resctrl unmounted
)
def test_failed_mkdir_is_counted_and_retried(
    node: Node, caplog: pytest.LogCaptureFixture, code: int, why: str
) -> None:
    core = node.core()
    node.ops.fail("mkdir", code)
    with caplog.at_level(logging.WARNING):
        out = core.handle(node.start_pod("p1"), now=0)
    assert out == [GroupState("p1", None, 0, 0)]  # reported without a group, not crashed
    assert f"pod p1 has no group ({why})" in caplog.text
    stats = core.statistics()
    assert stats.counters["mkdir_errors"] == 1 and stats.gauges["pods_without_group"] == 1
    assert node.group("p1") is None
    out = core.on_retry_timer(now=10)
    assert out == [GroupState("p1", f"{ROOT}/mon_groups/pod_p1", 0, 0)]
    assert core.statistics().counters["groups_created"] == 1


def test_orphan_is_removed_by_a_pass_that_comes_late(node: Node) -> None:
    core = node.core(retry_interval=10)
    core.handle(LifecycleSnapshot(), now=0)
    node.ops.mkdir("pod_leak")
    core.on_retry_timer(now=10)  # first seen without a pod
    core.on_retry_timer(now=47.3)  # the grace (20 s) is long over: passes drift
    assert node.group("leak") is None
    assert core.statistics().counters["orphans_removed"] == 1


def test_removal_counts_tell_removed_from_already_gone(node: Node) -> None:
    core = node.core()
    for uid in ("p1", "p2", "p3"):
        core.handle(node.start_pod(uid), now=0)
    for uid in ("p2", "p3"):
        node.ops.groups.pop(f"pod_{uid}")  # someone removed them behind our back
    for uid in ("p1", "p2", "p3"):
        core.handle(PodDown(uid), now=1)
    counters = core.statistics().counters
    assert (counters["groups_removed"], counters["groups_already_gone"]) == (1, 2)
    assert node.group("p1") is None


def test_failed_listing_is_counted_and_removes_nothing(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    core = node.core(retry_interval=10)
    core.handle(LifecycleSnapshot(), now=0)
    node.ops.mkdir("pod_leak")
    node.ops.fail("list_groups", errno.EIO, times=10)
    with caplog.at_level(logging.ERROR):
        for now in (10, 40, 70):
            assert states(core.on_retry_timer(now=now)) == {}
    assert "cannot list monitoring groups" in caplog.text
    counters = core.statistics().counters
    assert counters["list_errors"] == 3 and "orphans_removed" not in counters
    assert node.group("leak") == set()  # not removed while we cannot see what is there


def test_the_log_tells_no_free_rmid_from_rmids_in_limbo(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.ops.num_rmids = 2  # root + one group
    core = node.core()
    core.handle(node.start_pod("p1"), now=0)
    with caplog.at_level(logging.WARNING):
        core.handle(node.start_pod("p2"), now=1)
        assert "pod p2 has no group (no_free_rmid)" in caplog.text
        core.handle(PodDown("p1"), now=2)  # its RMID goes to limbo
        core.on_retry_timer(now=10)
        assert "pod p2 has no group (rmids_in_limbo)" in caplog.text


def test_failed_rmdir_is_counted_and_the_sweep_removes_the_group_later(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    core = node.core(retry_interval=10)
    core.handle(LifecycleSnapshot((node.start_pod("p1"),)), now=0)
    node.ops.fail("rmdir", errno.EIO)
    with caplog.at_level(logging.ERROR):
        out = core.handle(PodDown("p1"), now=1)
    assert [type(m).__name__ for m in out] == ["GroupGone"]
    assert "cannot remove group pod_p1" in caplog.text
    counters = core.statistics().counters
    assert counters["group_remove_errors"] == 1 and "groups_removed" not in counters
    assert node.group("p1") == set()  # still there: now an orphan
    core.on_retry_timer(now=10)
    core.on_retry_timer(now=40)  # past the grace
    assert node.group("p1") is None
    assert core.statistics().counters["orphans_removed"] == 1


def test_a_gone_pod_does_not_hide_the_changes_of_the_pods_after_it(node: Node) -> None:
    core = node.core()
    pods = (node.start_pod("a"), node.start_pod("b"))
    core.handle(LifecycleSnapshot(pods, (node.start_container("b", "c1", [10]),)), now=0)
    node.stop_pod("a")  # its PodDown was lost
    node.stop_container("b", "c1")  # exited: b's running containers change
    out = core.on_retry_timer(now=10)
    assert out == [GroupGone("a"), GroupState("b", f"{ROOT}/mon_groups/pod_b", 0, 0)]
    assert core.statistics().counters["snapshots"] == 1
