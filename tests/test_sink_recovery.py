"""Crash recovery: what a killed writer leaves behind becomes complete files again.

Two kinds of crash: exact "crash images" (a copy of the directory taken between two
operations of a live sink: the bytes a ``kill -9`` would leave, since every write is
synchronous), and a real writer process killed with SIGKILL while it writes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from resctrl_pipeline.sink.policy import journal_name, partial_name
from tests.test_sink_parquet import Ids, assert_all_readable, batch, hidden, ids_in, make_sink

REPO = Path(__file__).resolve().parent.parent


def _journals(out: Path) -> list[Path]:
    return [out / n for n in hidden(out) if n.endswith(".journal")]


def test_every_crash_image_recovers_exactly_the_flushed_rows(tmp_path: Path) -> None:
    live = tmp_path / "live"
    sink = make_sink(live, flush_interval=1.0, flush_rows=25, max_file_bytes=7000)
    sink.recover(0.0)
    ids, images = Ids(), []
    for step in range(40):
        now = step * 0.4
        sink.add(ids.batch(7), now)
        sink.on_timer(now)
        if step % 13 == 5:
            sink.rotate(now)
        image = tmp_path / f"image{step}"
        shutil.copytree(live, image)
        images.append((image, sink.statistics().rows_flushed))
    assert any(_journals(image) for image, _ in images)
    for image, flushed in images:
        report = make_sink(image).recover(0.0)
        assert ids_in(image) == list(range(flushed)), image
        assert hidden(image) == []
        for name in report.files:
            assert b"recovered_at" in pq.read_metadata(image / name).metadata


def test_torn_journal_keeps_its_complete_batches(tmp_path: Path) -> None:
    live = tmp_path / "live"
    sink = make_sink(live, flush_interval=1.0)
    ids = Ids()
    for step in range(8):  # eight flushes into one open file
        sink.add(ids.batch(5), float(step))
        sink.on_timer(float(step) + 1.0)
    [journal] = _journals(live)
    size = journal.stat().st_size
    seen = set()
    for cut in sorted({*range(0, size, max(1, size // 60)), size - 1, size}):
        image = tmp_path / f"cut{cut}"
        shutil.copytree(live, image)
        os.truncate(image / journal.name, cut)
        make_sink(image).recover(0.0)
        got = ids_in(image)
        assert got == list(range(len(got)))  # a prefix: whole flushes, in order
        assert len(got) % 5 == 0
        assert hidden(image) == []
        seen.add(len(got))
    assert max(seen) == 40 and 0 in seen and len(seen) > 4


def test_garbage_after_good_messages_is_ignored(tmp_path: Path) -> None:
    live = tmp_path / "live"
    sink = make_sink(live, flush_interval=1.0)
    sink.add(batch(0, 4), 0.0)
    sink.on_timer(1.0)
    [journal] = _journals(live)
    with open(journal, "ab") as f:
        f.write(b"\xff\xff\xff\xff\x40\x00\x00\x00" + os.urandom(100))
    image = tmp_path / "image"
    shutil.copytree(live, image)
    fresh = make_sink(image)
    report = fresh.recover(0.0)
    assert ids_in(image) == [0, 1, 2, 3]
    assert report.damaged_journals == 1
    assert fresh.statistics().damaged_journals == 1


def test_crash_after_publication_does_not_duplicate_rows(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    sink.add(batch(0, 3), 0.0)
    sink.close(1.0)
    [path] = list(tmp_path.iterdir())
    # The crash came between the rename and the journal's deletion: a journal with
    # the same rows sits beside the final file, and a stale partial too.
    donor = make_sink(tmp_path / "donor", token=lambda: path.name.split("-")[-1][:8])
    donor.add(batch(0, 3), 0.0)
    donor.on_timer(20.0)
    [journal] = _journals(tmp_path / "donor")
    shutil.copy(journal, tmp_path / journal_name(path.name))
    (tmp_path / partial_name(path.name)).write_bytes(b"PAR1 garbage")
    report = make_sink(tmp_path).recover(0.0)
    assert report.files == [] and report.removed == 1
    assert ids_in(tmp_path) == [0, 1, 2]
    assert hidden(tmp_path) == []


def test_leftovers_of_other_writers_are_not_touched(tmp_path: Path) -> None:
    foreign = [
        ".resctrl-occupancy-other-node-20231114T221320Z-00000000.parquet.journal",
        ".resctrl-occupancy-node-1-b-20231114T221320Z-00000000.parquet.journal",
        ".other-prefix-node-1-20231114T221320Z-00000000.parquet.partial",
        ".unrelated",
    ]
    for name in foreign:
        (tmp_path / name).write_bytes(b"x")
    mine = partial_name("resctrl-occupancy-node-1-20231114T221320Z-00000009.parquet")
    (tmp_path / mine).write_bytes(b"orphan partial: no journal, so never flushed")
    report = make_sink(tmp_path).recover(0.0)
    assert report.removed == 1
    assert hidden(tmp_path) == sorted(foreign)


CHILD = r"""
import sys, time
from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.sink import ParquetSink

ROWS = 20
sink = ParquetSink(sys.argv[1], node="crash", flush_interval=0.1, max_file_bytes=30_000)
sink.recover(0.0)
reported = -1
for i in range(1_000_000):
    ids = list(range(i * ROWS, (i + 1) * ROWS))
    sink.add(OccupancyBatch({
        "start_timestamp": [i] * ROWS, "timestamp": [i] * ROWS,
        "pod_namespace": ["ns"] * ROWS, "pod_name": ["p"] * ROWS,
        "pod_uid": [f"uid-{j % 50}" for j in ids], "resctrl_group": ["/g"] * ROWS,
        "total_containers": [1] * ROWS, "reconciled_containers": [1] * ROWS,
        "llc_occupancy_bytes": ids,
    }), i * 0.01)
    sink.on_timer(i * 0.01)
    flushed = sink.statistics().rows_flushed
    if flushed != reported:
        print(flushed, flush=True)
        reported = flushed
sys.exit(3)
"""


@pytest.mark.slow
def test_sigkilled_writer_process_loses_at_most_the_unflushed_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    durable, reports = 0, 0
    try:
        for line in child.stdout:
            durable = int(line)
            reports += 1
            if reports % 8 == 0:
                assert_all_readable(out)  # a reader running while the writer writes
            if reports >= 40:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert reports >= 40
    sink = make_sink(out, node="crash")
    sink.recover(0.0)
    got = ids_in(out)
    assert got == list(range(len(got)))  # no hole, no duplicate
    assert len(got) >= durable  # everything reported durable before the kill
    assert hidden(out) == []
    assert_all_readable(out)
