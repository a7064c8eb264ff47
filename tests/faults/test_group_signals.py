"""SIGINT/SIGTERM to the whole process group (Ctrl-C in a terminal; systemd's
``KillMode=control-group``) stop the pipeline exactly like a signal to ``up`` alone."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime

import pytest

from tests.faults.harness import FaultHarness, uids
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

PODS = 20
SAMPLING = 0.1
ACTORS = ("nri-listener", "reconciler", "sampler", "writer")


def _logged_at(line: str) -> float:
    """Wall-clock seconds of a log line (``2026-12-03 18:51:00,123 INFO ...``)."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_group_signal_during_busy_sampling(harness: FaultHarness, sig: signal.Signals) -> None:
    h = harness
    h.start(sampling=SAMPLING, own_group=True)
    h.wait_ready()
    pods = h.sleep_pods(PODS)
    h.wait_groups(pods)
    poll_until(lambda: h.counter("writer", "rows_flushed") > 0, 30, what="a flush")
    poll_until(lambda: h.counter("sampler", "batches") >= 30, 30, what="30 ticks sampled")
    sampler, h_writer = h.pid("sampler"), h.pid("writer")
    up = h.node.up
    assert up is not None
    signalled_ns = time.time_ns()
    os.killpg(up.pid, sig)  # up and every actor at once

    assert up.wait(60) == 0, h.log_text()[-4000:]
    log = h.log_text()
    for actor in ACTORS:  # each exited by itself, nothing killed by a signal
        assert f"stopped {actor} (exit code 0)" in log, log[-4000:]
    assert not re.search(r"exit code -\d", log), log[-4000:]
    assert "restarting" not in log
    assert not h.hidden(), h.hidden()  # the writer finalised its file

    # The sampler sampled until up asked it to stop (after the listener and the
    # reconciler had stopped); the last tick it took before that is in the file.
    asked = [ln for ln in log.splitlines()
             if f"[{sampler}]: stop requested by the supervisor" in ln]  # fmt: skip
    assert len(asked) == 1, log[-4000:]
    asked_ns = int(_logged_at(asked[0]) * 1e9)
    rows = h.read_all()
    live = uids(pods)
    last = max(int(r["start_timestamp"]) for r in rows if r["pod_uid"] in live)
    assert last >= asked_ns - int(3 * SAMPLING * 1e9), (last, asked_ns)
    assert asked_ns >= signalled_ns - int(0.1 * 1e9)
    # Nothing sampled was lost: every batch the sampler sent reached the writer, and
    # each is one tick in the files.
    sent = _tally(log, sampler, "sent", "occupancy")
    received = _tally(log, h_writer, "received", "occupancy")
    ticks = {int(r["start_timestamp"]) for r in rows}
    keys = [(r["pod_uid"], r["start_timestamp"]) for r in rows]
    assert len(keys) == len(set(keys))
    print(f"\n{sig.name} to the group: last tick {(last - signalled_ns) / 1e9:+.2f} s after the "
          f"signal, {(asked_ns - last) / 1e9:.2f} s before the sampler was asked to stop; "
          f"batches sent {sent}, received {received}, ticks in the files {len(ticks)}: "
          f"{(sent - len(ticks)) * PODS} rows lost")  # fmt: skip
    assert sent == received == len(ticks)


def _tally(log: str, pid: int, way: str, edge: str) -> int:
    """The count an actor's shell logged for ``edge`` at its orderly stop."""
    lines = [ln for ln in log.splitlines() if f"[{pid}]: orderly stop; " in ln]
    assert len(lines) == 1, lines
    m = re.search(rf"{way} [^;]*\b{edge}=(\d+)", lines[0])
    assert m, lines[0]
    return int(m.group(1))
