"""SIGKILL of each actor in turn under a steady load, and of the whole process tree.

Scale: the issue asks for 500 pods at 100 ms. On the 2-core CI machine the FUSE
emulation serves every counter read from Python, and 500 groups cannot be read in
100 ms there (half the ticks are missed before any fault). These tests run 50 pods at
100 ms; ``scripts/soak.py --pods 500`` covers the 500-pod scale (at 1 s sampling).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest

from resctrl_pipeline.supervise.policy import RestartPolicy
from tests.faults.harness import FaultHarness, tick_loss, uids
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

PODS = 50
SAMPLING = 0.1
FLUSH = 1.0
#: First restart delay of the supervisor's policy.
BACKOFF = RestartPolicy().base
#: Snapshot period between actors (= --retry-interval in the harness).
ANTI_ENTROPY = 1.0


@dataclass
class Kill:
    actor: str
    at_ns: int
    #: Seconds from the SIGKILL until the supervisor had started a new process.
    restart_s: float
    #: Seconds from the SIGKILL until the new process sent its first heartbeat.
    started_s: float
    #: Seconds from the SIGKILL until the pipeline was ready and sampling again.
    recovered_s: float
    #: Ticks the sampler skipped and counted (``missed_ticks_sample``) meanwhile.
    skipped: float = 0.0


def _settle(h: FaultHarness, ticks: int = 10) -> None:
    """Wait until the sampler has produced ``ticks`` more ticks' worth of rows."""
    start = h.counter("sampler", "samples")
    poll_until(
        lambda: h.counter("sampler", "samples") >= start + ticks * PODS,
        30,
        interval=0.05,
        what=f"{ticks} more ticks of samples",
    )


def _mark(h: FaultHarness) -> tuple[int, float]:
    """A wall-clock instant and the sampler's skipped ticks as of a heartbeat sent after
    it (``/status`` shows the last heartbeat, up to one heartbeat period old: a count
    read without waiting would charge one window's skips to the next)."""
    at_ns = time.time_ns()
    samples = h.counter("sampler", "samples")
    poll_until(
        lambda: h.counter("sampler", "samples") > samples,
        30,
        interval=0.05,
        what="a sampler heartbeat",
    )
    return at_ns, h.counter("sampler", "missed_ticks_sample")


def _bound_rows(k: Kill) -> int:
    """Rows a kill may cost by design (architecture §2, output.md), plus the ticks the
    sampler skipped and counted (a new Python process competes for the two cores; a
    skipped tick is counted, never made up) and one tick at each end of the window."""
    if k.actor in ("nri-listener", "reconciler"):
        # The sampler keeps reading the groups it knows. Snapshots from a restarted
        # producer replace state, but never before that producer knows the state.
        design = 0.0
    elif k.actor == "sampler":
        # No sampler, no rows: until the new one runs, then the next groups/metadata
        # snapshot reaches it (back-off and start-up are in started_s).
        design = k.started_s + ANTI_ENTROPY + SAMPLING
    else:
        # writer: the rows not flushed yet (one flush interval: it wakes at the flush
        # deadline); the batches sent while it is down wait in the sampler's queue.
        design = FLUSH + SAMPLING
    return (round(design / SAMPLING) + int(k.skipped) + 2) * PODS


def test_sigkill_each_actor_in_turn_under_load(harness: FaultHarness) -> None:
    h = harness
    h.start(sampling=SAMPLING)
    h.wait_ready()
    pods = h.sleep_pods(PODS)
    rmids = h.wait_groups(pods)
    tree = h.node.fs.tree
    ops_before = tree.operations()
    poll_until(lambda: h.counter("writer", "rows_flushed") > 0, 20, what="a flush")
    _settle(h)
    kills: list[Kill] = []
    marks = [_mark(h)]
    for actor in ("nri-listener", "reconciler", "sampler", "writer"):
        # The window of this kill starts at the mark, at least one flush interval before
        # the SIGKILL, so that the writer's unflushed rows fall inside it.
        _settle(h, ticks=round(FLUSH / SAMPLING) + 2)
        old = h.pid(actor)
        _, skipped_at_kill = _mark(h)
        at_ns, t0 = time.time_ns(), time.monotonic()
        os.kill(old, signal.SIGKILL)
        poll_until(
            lambda a=actor, o=old: h.node.pids().get("actors", {}).get(a) not in (None, o),
            BACKOFF + 5,
            interval=0.02,
            what=f"{actor} restarted",
        )
        restart_s = time.monotonic() - t0
        h.wait_fresh(actor, timeout=30)
        started_s = time.monotonic() - t0
        h.wait_ready(timeout=30)
        if actor == "nri-listener":
            poll_until(lambda: h.gauge("nri-listener", "nri_connected") == 1, 20, what="NRI")
        if actor == "reconciler":
            poll_until(lambda: h.gauge("reconciler", "synced") == 1, 20, what="first snapshot")
            assert h.counter("reconciler", "groups_adopted") >= PODS
        _settle(h)
        recovered_s = time.monotonic() - t0
        marks.append(_mark(h))
        # A new sampler counts its skipped ticks from zero.
        counted_from = 0.0 if actor == "sampler" else skipped_at_kill
        skipped = (skipped_at_kill - marks[-2][1]) + (marks[-1][1] - counted_from)
        kills.append(Kill(actor, at_ns, restart_s, started_s, recovered_s, skipped))

    # Groups were adopted, never recreated: same RMIDs, no mkdir, no rmdir.
    assert {n: g.rmid for n, g in tree.groups().items() if n in rmids} == rmids
    ops_after = tree.operations()
    assert ops_after.get("mkdir", 0) == ops_before.get("mkdir", 0), ops_after
    assert ops_after.get("rmdir", 0) == 0, ops_after
    assert set(tree.groups()) == set(rmids)
    assert h.restarts() == {a: 1 for a in ("nri-listener", "reconciler", "sampler", "writer")}

    assert h.node.stop_pipeline() == 0
    assert not h.hidden(), h.hidden()
    rows = h.read_all()  # every file readable
    keys = [(r["pod_uid"], r["start_timestamp"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row was written twice"
    live = uids(pods)
    print(
        f"\n{'actor':<13} {'restart s':>9} {'started s':>9} {'recovered s':>11} "
        f"{'skipped':>7} {'rows lost':>9} {'bound':>6} {'longest gap s':>13}"
    )
    for i, k in enumerate(kills):
        loss = tick_loss(rows, SAMPLING, live, marks[i][0], marks[i + 1][0])
        print(
            f"{k.actor:<13} {k.restart_s:>9.2f} {k.started_s:>9.2f} {k.recovered_s:>11.2f} "
            f"{k.skipped:>7.0f} {loss.rows_lost:>9} {_bound_rows(k):>6} "
            f"{loss.longest_gap_s:>13.2f}"
        )
        # Restarted within the back-off (plus the supervisor's reaction and a fork).
        assert k.restart_s <= BACKOFF + 2.0, k
        assert loss.rows_lost <= _bound_rows(k), (k, loss)


def test_sigkill_whole_tree_then_fresh_up_recovers(harness: FaultHarness) -> None:
    h = harness
    h.start(sampling=SAMPLING, toml='[output]\nflush_interval = "500ms"\n')
    h.wait_ready()
    pods = h.sleep_pods(10)
    rmids = h.wait_groups(pods)
    tree = h.node.fs.tree
    mkdirs = tree.operations().get("mkdir", 0)
    poll_until(lambda: h.counter("writer", "flushes") >= 2, 20, what="two flushes")
    flushed = int(h.counter("writer", "rows_flushed"))
    h.kill_tree()
    # What a crash leaves: the file in progress as a journal and a partial.
    left = [os.path.basename(p) for p in h.hidden()]
    assert any(n.endswith(".journal") for n in left), left
    assert not h.files()

    h.start(sampling=SAMPLING)
    h.wait_ready()
    assert h.log_lines("Start-up recovery: 1 files")
    # The crash's leftovers are gone (the fresh writer may have begun a file of its own).
    still = {os.path.basename(p) for p in h.hidden()} & set(left)
    assert not still, still
    recovered = h.files()
    assert len(recovered) == 1
    table = pq.read_table(recovered[0])
    assert table.num_rows >= flushed  # every flushed row survived the crash
    assert b"recovered_at" in (pq.ParquetFile(recovered[0]).schema_arrow.metadata or {})
    # The groups were adopted by the fresh pipeline, not duplicated or recreated.
    assert {n: g.rmid for n, g in tree.groups().items()} == rmids
    assert tree.operations().get("mkdir", 0) == mkdirs
    assert tree.operations().get("rmdir", 0) == 0
    late = h.sleep_pods(1)
    h.wait_groups(late)
    assert h.node.stop_pipeline() == 0
    assert not h.hidden()
    rows = h.read_all()
    keys = [(r["pod_uid"], r["start_timestamp"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row was written twice"
    assert uids(pods) | uids(late) <= {r["pod_uid"] for r in rows}
