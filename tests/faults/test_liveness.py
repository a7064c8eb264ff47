"""A hung actor (SIGSTOP) is noticed by ``/ready`` within three heartbeat intervals,
killed and replaced after ``supervisor.liveness_timeout``, and the rows resume."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from resctrl_pipeline import codec
from resctrl_pipeline.messages import ActorStats
from resctrl_pipeline.supervise.health import SILENT_AFTER
from resctrl_pipeline.topology import HEARTBEAT_INTERVAL
from tests.faults.harness import FaultHarness, uids
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

PODS = 10
SAMPLING = 0.2
LIVENESS = 4.0
TOML = f'[output]\nflush_interval = "1s"\n[supervisor]\nliveness_timeout = "{LIVENESS:g}s"\n'
#: Slack for a loaded 2-core machine (process start-up, scheduling).
SLACK = 5.0


def _heartbeat_age(h: FaultHarness, actor: str) -> float:
    _, text = h.node.http("/metrics")
    m = re.search(
        rf'^resctrl_pipeline_actor_heartbeat_age_seconds{{actor="{actor}"}} (\S+)$', text, re.M
    )
    return float(m.group(1)) if m else -1.0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _heartbeat_traffic(h: FaultHarness) -> None:
    """Print what each actor sends the supervisor: messages a second on the stats edge
    (heartbeats, plus the sampler's per-pod summary) and the size of one heartbeat."""
    actors = ("nri-listener", "reconciler", "sampler", "writer")
    before = {a: h.counter(a, "sent_stats") for a in actors}
    t0 = time.monotonic()
    poll_until(lambda: all(h.counter(a, "sent_stats") >= before[a] + 10 for a in actors), 60,
               interval=0.2, what="10 more heartbeats of every actor")  # fmt: skip
    seconds = time.monotonic() - t0
    print("\nactor          stats msgs/s  heartbeat bytes")
    for a in actors:
        entry = h.actor(a)
        beat = ActorStats(a, int(entry["pid"]), float(entry["started_at"]), entry["counters"],
                          entry["gauges"], entry["ready"], entry["info"])  # fmt: skip
        size = len(codec.encode(beat, src=a, seq=1, ts=time.time()))
        rate = (h.counter(a, "sent_stats") - before[a]) / seconds
        print(f"{a:<13} {rate:>13.2f} {size:>16}")


def test_sigstop_each_actor_in_turn(harness: FaultHarness) -> None:
    h = harness
    h.start(sampling=SAMPLING, toml=TOML)
    h.wait_ready()
    pods = h.sleep_pods(PODS)
    h.wait_groups(pods)
    poll_until(lambda: h.counter("writer", "rows_flushed") > 0, 30, what="a flush")
    _heartbeat_traffic(h)
    print(f"\n{'actor':<13} {'503 after s':>11} {'replaced after s':>16} {'reporting after s':>17}")
    for actor in ("nri-listener", "reconciler", "sampler", "writer"):
        old = h.pid(actor)
        assert 0 <= _heartbeat_age(h, actor) < SILENT_AFTER * HEARTBEAT_INTERVAL
        os.kill(old, signal.SIGSTOP)
        t0 = time.monotonic()
        body = poll_until(
            lambda a=actor: (b := h.node.http("/ready"))[0] == 503
            and f"{a}: no heartbeat for" in b[1]
            and b[1],
            SILENT_AFTER * HEARTBEAT_INTERVAL + SLACK,
            interval=0.05,
            what=f"/ready 503 naming {actor}",
        )
        noticed = time.monotonic() - t0
        assert re.search(rf"{actor}: no heartbeat for \d+\.\d s", body), body
        assert _heartbeat_age(h, actor) > SILENT_AFTER * HEARTBEAT_INTERVAL
        new = h.wait_restarted(actor, old, timeout=LIVENESS + SLACK + 30)
        replaced = time.monotonic() - t0
        assert not _alive(old)  # the stopped process was killed, not left behind
        h.wait_ready(timeout=30)
        reporting = time.monotonic() - t0
        print(f"{actor:<13} {noticed:>11.2f} {replaced:>16.2f} {reporting:>17.2f}")
        assert replaced <= LIVENESS + SLACK + 1, (actor, replaced)
        assert new != old
        # The rows resume: new samples are taken and written.
        samples, flushed = h.counter("sampler", "samples"), h.counter("writer", "rows_flushed")
        poll_until(
            lambda s=samples, f=flushed: h.counter("sampler", "samples") > s
            and h.counter("writer", "rows_flushed") > f,
            30,
            interval=0.1,
            what="rows sampled and written again",
        )
        kills = h.log_lines(f"{actor} (pid {old}) sent no heartbeat for")
        assert len(kills) == 1, kills  # logged once
    _, metrics = h.node.http("/metrics")
    for actor in ("nri-listener", "reconciler", "sampler", "writer"):
        assert f'resctrl_pipeline_actor_liveness_kills_total{{actor="{actor}"}} 1.0' in metrics
    assert h.restarts() == {a: 1 for a in ("nri-listener", "reconciler", "sampler", "writer")}
    end_ns = time.time_ns()
    assert h.node.stop_pipeline() == 0
    rows = h.read_all()
    late = [r for r in rows if r["pod_uid"] in uids(pods) and r["start_timestamp"] > end_ns - 3e9]
    assert late, "no rows from the last seconds"
