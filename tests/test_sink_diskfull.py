"""Full disk and failing writes: stop once, drop and count, keep files intact, resume.

The main test fills a real, tiny tmpfs (needs root to mount; skipped otherwise). The
others inject EDQUOT/ENOSPC at chosen points so every failure path runs everywhere.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from resctrl_pipeline.sink import ParquetSink
from tests.prerequisites import need, unavailable
from tests.test_sink_parquet import Ids, assert_all_readable, batch, hidden, ids_in, make_sink


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    need("root")  # to mount a tmpfs
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        unavailable(f"mount -t tmpfs not permitted here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path, leave: int) -> None:
    """Fill the filesystem with ``path``, then give back ``leave`` bytes."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
        f.truncate(max(0, f.tell() - leave))


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def _add(sink: ParquetSink, ids: Ids, accepted: set[int], now: float, rows: int = 40) -> bool:
    """Add one batch; record its ids as accepted unless the sink dropped it."""
    first, before = ids.next, sink.statistics().batches_dropped
    sink.add(ids.batch(rows), now)
    dropped = sink.statistics().batches_dropped > before
    if not dropped:
        accepted.update(range(first, ids.next))
    return not dropped


@pytest.mark.slow
def test_full_tmpfs_stops_once_drops_and_resumes(
    tiny_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tiny_fs / "out"
    sink = make_sink(out, flush_rows=200, max_file_bytes=20_000, retry_interval=5.0)
    sink.recover(0.0)
    ballast = tiny_fs / "ballast"
    _fill(ballast, leave=300 * 1024)
    ids, accepted, now = Ids(), set[int](), 0.0
    while not sink.statistics().disk_full:
        assert ids.next < 200_000, "the disk never filled up"
        now += 0.1
        _add(sink, ids, accepted, now)
        sink.on_timer(now)
    stats = sink.statistics()
    assert stats.write_blocked == 1 and stats.last_error.startswith("enospc")
    assert stats.write_errors["enospc"] >= 1
    assert len(_errors(caplog)) == 1
    assert "disk full" in _errors(caplog)[0].getMessage()
    assert stats.files_written >= 1  # some files were finished before the disk filled
    assert_all_readable(out)

    # While full: every batch is dropped and counted, memory does not grow, and the
    # retries fail quietly.
    for _ in range(50):
        now += 0.5
        assert not _add(sink, ids, accepted, now)
        sink.on_timer(now)
    stats = sink.statistics()
    assert stats.batches_dropped >= 50 and stats.disk_full == 1
    assert stats.buffered_rows <= 200
    assert len(_errors(caplog)) == 1
    deadline = sink.next_deadline()
    assert deadline is not None and deadline > now
    assert_all_readable(out)

    ballast.unlink()
    now += 5.0
    sink.on_timer(now)
    assert sink.statistics().disk_full == 0
    assert any("writable again" in r.getMessage() for r in caplog.records)
    for _ in range(20):
        now += 0.1
        assert _add(sink, ids, accepted, now)
    sink.close(now)
    got = ids_in(out)
    assert got == sorted(accepted)  # accepted rows: all written, exactly once
    assert hidden(out) == []
    stats = sink.statistics()
    assert stats.rows_received == stats.rows_written + stats.rows_dropped


def _fsync_fails_with(monkeypatch: pytest.MonkeyPatch, code: int) -> list[bool]:
    """Make every fsync fail with ``code`` while the returned flag is set.

    Data reaches the page cache but cannot be made durable: the journal append fails
    after its bytes were written, which exercises the roll-back.
    """
    failing = [True]
    real = os.fsync

    def fsync(fd: int) -> None:
        if failing[0]:
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failing


def test_quota_error_in_the_journal_rolls_back_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(tmp_path, flush_interval=1.0, retry_interval=2.0)
    sink.add(batch(0, 5), 0.0)
    sink.on_timer(1.0)  # a good flush first
    [journal] = [tmp_path / n for n in hidden(tmp_path) if n.endswith(".journal")]
    good_size = journal.stat().st_size
    failing = _fsync_fails_with(monkeypatch, errno.EDQUOT)
    sink.add(batch(5, 5), 1.5)
    sink.on_timer(2.5)  # this flush fails: the rows stay buffered
    stats = sink.statistics()
    assert (stats.disk_full, stats.write_errors, stats.buffered_rows) == (1, {"edquot": 1}, 5)
    assert journal.stat().st_size == good_size  # the failed append was cut off again
    sink.add(batch(10, 5), 3.0)  # dropped
    sink.on_timer(4.5)  # retry fails quietly
    assert sink.statistics().write_errors == {"edquot": 2}
    failing[0] = False
    sink.on_timer(6.5)
    assert sink.statistics().disk_full == 0
    sink.close(7.0)
    assert ids_in(tmp_path) == list(range(10))
    assert sink.statistics().rows_dropped == 5
    assert len(_errors(caplog)) == 1
    assert hidden(tmp_path) == []


def test_disk_full_during_rotation_keeps_the_rows_for_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = make_sink(tmp_path, flush_interval=1.0, retry_interval=1.0)
    sink.add(batch(0, 5), 0.0)
    sink.on_timer(1.0)
    real_rename = os.rename
    failing = [True]

    def rename(src: str, dst: str) -> None:
        if failing[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    sink.rotate(2.0)
    assert sink.statistics().disk_full == 1
    assert [n for n in hidden(tmp_path) if n.endswith(".partial")] == []  # space given back
    sink.on_timer(3.0)  # still failing
    failing[0] = False
    sink.on_timer(4.0)  # recovery finishes the interrupted file
    stats = sink.statistics()
    assert (stats.disk_full, stats.recovered_files, stats.files_written) == (0, 1, 1)
    sink.close(5.0)
    assert ids_in(tmp_path) == list(range(5))


def test_close_during_an_outage_leaves_the_journal_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = make_sink(tmp_path, flush_interval=1.0)
    sink.add(batch(0, 5), 0.0)
    sink.on_timer(1.0)
    _fsync_fails_with(monkeypatch, errno.ENOSPC)
    sink.add(batch(5, 5), 2.0)
    sink.close(3.0)  # the journal holds rows 0-4; rows 5-9 were only buffered
    assert sink.statistics().rows_dropped == 5
    assert ids_in(tmp_path) == []
    monkeypatch.undo()
    make_sink(tmp_path).recover(10.0)
    assert ids_in(tmp_path) == list(range(5))
    assert hidden(tmp_path) == []
