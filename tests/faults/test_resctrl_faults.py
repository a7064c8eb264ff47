"""The resctrl filesystem misbehaving: read-only, counters reading ``Error``,
unmounted (all groups lost, as on the kernel) and mounted again, and RMIDs running out
under continuous pod churn."""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    PREFIX,
    FaultHarness,
    open_fds,
    uids,
)
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

WRITE_POINTS = ("mkdir", "rmdir", "write_tasks")


def _set_read_only(h: FaultHarness, code: int = errno.EROFS) -> None:
    """Every mkdir, rmdir and tasks write through the mount fails with ``code``
    (plenty for the seconds the test keeps it; :func:`_lift` drains the rest)."""
    for point in WRITE_POINTS:
        h.node.fs.tree.fail_next(point, code, times=1000)  # type: ignore[arg-type]


def _lift(h: FaultHarness) -> None:
    """Writable again: consume the injected errnos that were not raised."""
    tree = h.node.fs.tree
    for point, codes in tree.pending_faults().items():
        for _ in codes:
            with contextlib.suppress(OSError):
                tree.take_fault(point)
    assert not tree.pending_faults()


def _rows_after(h: FaultHarness, uid: str, after_ns: int) -> bool:
    return any(
        r["pod_uid"] == uid and int(r["start_timestamp"]) > after_ns for r in h.rotate_and_rows()
    )


def test_resctrl_read_only_error_counters_unmounted_and_back(harness: FaultHarness) -> None:
    h = harness
    tree = h.node.fs.tree
    h.start()
    h.wait_ready()
    pods = h.sleep_pods(3)
    h.wait_groups(pods)
    fds_before = open_fds(h.pid("sampler"))

    # 1. Read-only: new pods get no group, removed pods keep theirs (retried), the
    #    pods that have groups are still sampled, nothing crashes.
    _set_read_only(h)
    newcomer = h.sleep_pods(1)[0]
    gone, stay = pods[0], pods[1:]
    h.node.stop_pod(gone)
    poll_until(
        lambda: (
            h.counter("reconciler", "mkdir_errors") >= 2
            and h.counter("reconciler", "group_remove_errors") >= 2
        ),
        20,
        what="refused mkdir and rmdir, retried",
    )
    assert PREFIX + newcomer.uid not in tree.groups()
    assert PREFIX + gone.uid in tree.groups()
    mark = time.time_ns()
    poll_until(
        lambda: all(_rows_after(h, p.uid, mark) for p in stay),
        20,
        what="rows of the other pods while read-only",
    )
    _lift(h)
    h.wait_groups([*stay, newcomer])
    poll_until(lambda: PREFIX + gone.uid not in tree.groups(), 20, what="orphan removed")

    # 2. A counter reads "Error": that pod's row is skipped (counted by reason), the
    #    others go on; the pod's rows come back when the counter does.
    bad = stay[0]
    errors = h.counter("sampler", "read_errors_error")
    tree.set_counter(PREFIX + bad.uid, "llc_occupancy", 1, "Error")
    poll_until(
        lambda: h.counter("sampler", "read_errors_error") >= errors + 5,
        20,
        what="read_errors_error counted",
    )
    mark = time.time_ns()
    # Rows of a healthy pod from ticks after mark + 0.5 s exist, the bad pod's do not.
    poll_until(
        lambda: _rows_after(h, stay[1].uid, mark + int(0.5e9)), 20, what="rows of a healthy pod"
    )
    assert not _rows_after(h, bad.uid, mark + int(0.5e9))
    tree.set_counter(PREFIX + bad.uid, "llc_occupancy", 1, None)
    mark = time.time_ns()
    poll_until(lambda: _rows_after(h, bad.uid, mark), 20, what="rows again after the Error")

    # 3. Unmounted: the kernel destroys every group with the mount. /ready says why,
    #    nothing crashes; after a fresh mount every live pod gets a new group.
    live = [*stay, newcomer]
    h.node.fs.stop(timeout=0.5)  # lazy: the sampler still holds counter descriptors
    for name in list(tree.groups()):
        tree.rmdir(f"/mon_groups/{name}")
    poll_until(lambda: "resctrl" in h.node.http("/ready")[1], 20, what="/ready naming resctrl")
    assert h.node.http("/ready")[0] == 503
    poll_until(
        lambda: h.gauge("sampler", "pods_failed") == len(live),
        20,
        what="pods without a group while unmounted",
    )
    h.node.fs.start()
    h.wait_groups(live)
    h.wait_ready()
    assert set(tree.groups()) == h.group_names(live)
    mark = time.time_ns()
    poll_until(
        lambda: all(_rows_after(h, p.uid, mark) for p in live),
        20,
        what="rows of every pod after the remount",
    )
    assert open_fds(h.pid("sampler")) <= fds_before + 6 * len(live) + 4
    assert h.restarts() == dict.fromkeys(h.restarts(), 0), h.restarts()
    assert h.node.stop_pipeline() == 0
    h.read_all()  # every file readable


def test_rmid_exhaustion_with_continuous_churn(
    harness_factory: Callable[..., FaultHarness],
) -> None:
    h = harness_factory(num_rmids=8)  # 7 groups besides the root's
    tree = h.node.fs.tree
    h.start()
    h.wait_ready()
    steady = h.sleep_pods(4)
    h.wait_groups(steady)
    # Churn: 40 pods started and removed back to back, up to 6 alive at a time, so
    # that RMIDs run out (ENOSPC) and freed ones sit in limbo (EBUSY).
    churn: list = []
    for _ in range(40):
        churn += h.sleep_pods(1, namespace="churn")
        if len(churn) > 6:
            h.node.stop_pod(churn.pop(0))
    poll_until(
        lambda: (
            h.counter("reconciler", "mkdir_enospc") + h.counter("reconciler", "mkdir_ebusy") > 0
        ),
        20,
        what="RMID exhaustion",
    )
    assert h.gauge("reconciler", "groups_in_use") <= 7
    # Back under capacity: every live pod is monitored once limbo has drained, and no
    # group of a removed pod is left behind.
    while len(churn) > 3:
        h.node.stop_pod(churn.pop(0))
    live = [*steady, *churn]
    h.wait_groups(live, timeout=30)
    poll_until(
        lambda: set(tree.groups()) == h.group_names(live), 20, what="exactly the live pods' groups"
    )
    poll_until(
        lambda: (
            h.gauge("reconciler", "pods_waiting_rmid") == 0
            and h.gauge("sampler", "pods_failed") == 0
        ),
        20,
        what="nobody waiting",
    )
    mark = time.time_ns()
    poll_until(
        lambda: (
            uids(live)
            <= {r["pod_uid"] for r in h.rotate_and_rows() if int(r["start_timestamp"]) > mark}
        ),
        20,
        what="rows of every live pod",
    )
    ops = tree.operations()
    print(
        f"\nchurn: mkdir={ops.get('mkdir')} rmdir={ops.get('rmdir')} "
        f"enospc={h.counter('reconciler', 'mkdir_enospc'):.0f} "
        f"ebusy={h.counter('reconciler', 'mkdir_ebusy'):.0f}"
    )
    assert ops.get("mkdir", 0) - ops.get("rmdir", 0) == len(live)  # nothing leaked
    assert h.node.stop_pipeline() == 0
