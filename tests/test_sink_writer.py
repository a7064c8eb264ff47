"""The writer actor: its core's hooks, and a real ``actors.writer`` process over ipc://."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.messages import PodUp
from resctrl_pipeline.topology import endpoint
from resctrl_pipeline.writer import WriterCore
from tests.support import poll_until
from tests.test_sink_parquet import batch, hidden, ids_in, make_sink, parquet_files

REPO = Path(__file__).resolve().parent.parent


def test_core_hooks_drive_the_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = WriterCore(make_sink(tmp_path, flush_interval=1.0))
    core.on_start(0.0)
    assert core.next_deadline() is None  # nothing buffered: no reason to wake
    core.on_message("occupancy", batch(0, 3), 0.0)
    assert core.next_deadline() == 1.0  # the flush of the oldest row, 1 s after it came
    core.on_message("groups", PodUp("u", "ns", "n"), 0.0)  # not ours: counted, ignored
    core.on_signal("SIGUSR1", 0.5)
    assert len(parquet_files(tmp_path)) == 1
    core.on_message("occupancy", batch(3, 3), 1.0)
    core.on_deadline(2.0)  # flushed into a new file
    stats = core.statistics()
    assert stats.ready == {"output": True}
    assert stats.counters["rows_flushed"] == 6 and stats.counters["unexpected_messages"] == 1

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    core.on_message("occupancy", batch(6, 3), 2.5)
    core.on_deadline(4.0)
    stats = core.statistics()
    assert stats.ready == {"output": False} and "enospc" in stats.info["output"]
    assert stats.gauges["disk_full"] == 1
    monkeypatch.undo()
    core.on_stop(20.0)  # resumes, then finalises
    assert ids_in(tmp_path) == list(range(9))
    assert hidden(tmp_path) == []


@pytest.mark.slow
def test_writer_process_recovers_rotates_and_finalises(short_tmp: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A crash image of an earlier run, for start-up recovery to finish.
    earlier = make_sink(tmp_path / "earlier", node="node-w", flush_interval=1.0)
    earlier.add(batch(1000, 4), 0.0)
    earlier.on_timer(1.0)
    shutil.copytree(tmp_path / "earlier", out)
    config = tmp_path / "writer.toml"
    config.write_text(
        f'[pipeline]\nruntime_dir = "{short_tmp}"\n'
        f'[output]\ndir = "{out}"\nflush_interval = "200ms"\n'
        '[node]\nname = "node-w"\n'
    )
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(endpoint(short_tmp, "occupancy"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.writer", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        poll_until(lambda: len(parquet_files(out)) == 1, 15, what="start-up recovery")
        assert ids_in(out) == [1000, 1001, 1002, 1003]
        for i in range(5):
            push.send(codec.encode(batch(i * 10, 10), src="test", seq=i, ts=time.time()))
        # Flushed within the flush interval: the rows reach the journal, no signal needed.
        poll_until(lambda: _journal_bytes(out) > 0, 15, what="a flush")
        proc.send_signal(signal.SIGUSR1)
        poll_until(lambda: len(parquet_files(out)) == 2, 15, what="rotation on SIGUSR1")
        push.send(codec.encode(batch(50, 10), src="test", seq=9, ts=time.time()))
        poll_until(lambda: _journal_bytes(out) > 0, 15, what="a second flush")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        push.close(0)
    assert proc.returncode == 0, stderr.decode(errors="replace")
    assert ids_in(out) == [*range(60), 1000, 1001, 1002, 1003]
    assert len(parquet_files(out)) == 3
    assert hidden(out) == []


def _journal_bytes(out: Path) -> int:
    return sum((out / n).stat().st_size for n in hidden(out) if n.endswith(".journal"))
