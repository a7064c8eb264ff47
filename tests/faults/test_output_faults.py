"""The output side failing: the disk fills up during writing and during a rotation (a
small tmpfs as the output), and the output directory is removed under the writer."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from tests.faults.harness import FaultHarness, uids
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

TOML = '[output]\nflush_interval = "300ms"\n'


@contextlib.contextmanager
def tmpfs(path: str, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` mounted at ``path`` (root only) for the duration."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(path: str) -> str:
    """Write a file into ``path``'s filesystem until it is full; returns its name."""
    filler = os.path.join(os.path.dirname(path), "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    return filler


def _snapshot(files: list[str]) -> dict[str, tuple[int, int]]:
    return {f: (os.path.getsize(f), pq.read_metadata(f).num_rows) for f in files}


def test_disk_full_during_writing_and_rotation(harness: FaultHarness) -> None:
    h = harness
    disk = os.path.join(h.work, "disk")
    with tmpfs(disk, "3m"):
        h.output = os.path.join(disk, "out")
        try:
            h.start(toml=TOML)
            h.wait_ready()
            pods = h.sleep_pods(5)
            h.wait_groups(pods)

            # A pod's first row waits for its group state to reach the sampler.
            def rows_of_every_pod() -> list[dict[str, object]] | None:
                rows = h.rotate_and_rows()
                return rows if uids(pods) <= {r["pod_uid"] for r in rows} else None

            rows_before = poll_until(rows_of_every_pod, 20, what="rows of every pod")
            finished = _snapshot(h.files())

            # Full while writing: the next flush fails; one error line, gauges, /ready.
            filler = fill(h.output)
            poll_until(lambda: h.gauge("writer", "disk_full") == 1, 20, what="disk_full=1")
            assert "output" in h.node.http("/ready")[1]
            assert len(h.log_lines("disk full or quota reached")) == 1
            # And a rotation during the outage: refused the same way, nothing crashes.
            up = h.node.up
            assert up is not None
            up.send_signal(signal.SIGUSR1)
            poll_until(
                lambda: h.counter("writer", "batches_dropped") > 0,
                20,
                what="batches dropped during the outage",
            )
            assert _snapshot(list(finished)) == finished  # finished files untouched
            assert h.gauge("writer", "write_blocked") == 1

            os.unlink(filler)  # space is back: writing resumes by itself
            poll_until(lambda: h.gauge("writer", "write_blocked") == 0, 20, what="writable again")
            assert h.log_lines("is writable again")
            mark = time.time_ns()
            poll_until(
                lambda: (
                    uids(pods)
                    <= {
                        r["pod_uid"]
                        for r in h.rotate_and_rows()
                        if int(r["start_timestamp"]) > mark
                    }
                ),
                20,
                what="rows after the outage",
            )

            # Full exactly while finalising: the rotation itself hits ENOSPC.
            writer = h.pid("writer")
            os.kill(writer, signal.SIGSTOP)
            try:
                filler = fill(h.output)
                up.send_signal(signal.SIGUSR1)
            finally:
                os.kill(writer, signal.SIGCONT)
            poll_until(lambda: h.gauge("writer", "write_blocked") == 1, 20, what="blocked")
            os.unlink(filler)
            poll_until(lambda: h.gauge("writer", "write_blocked") == 0, 20, what="unblocked")
            assert h.restarts()["writer"] == 0
            assert h.node.stop_pipeline() == 0
        finally:
            h.node.stop_pipeline()
        assert not h.hidden(), h.hidden()
        rows = h.read_all()  # every file readable
        print(
            f"\ndisk full: {len(h.files())} files, {len(rows)} rows, "
            f"{len(h.log_lines('Traceback'))} tracebacks"
        )
        assert not h.log_lines("Traceback")
        keys = [(r["pod_uid"], r["start_timestamp"]) for r in rows]
        assert len(keys) == len(set(keys))
        before = {(r["pod_uid"], r["start_timestamp"]) for r in rows_before}
        assert before <= set(keys)  # nothing written before the outage was lost
        shutil.rmtree(h.output, ignore_errors=True)


def test_output_directory_removed(harness: FaultHarness) -> None:
    h = harness
    h.start(toml=TOML)
    h.wait_ready()
    pods = h.sleep_pods(3)
    h.wait_groups(pods)
    poll_until(lambda: h.counter("writer", "flushes") >= 2, 20, what="flushes")
    removed_at = time.time_ns()
    shutil.rmtree(h.output)
    poll_until(lambda: h.counter("writer", "dir_recreated") >= 1, 20, what="dir re-created")
    assert h.log_lines("was missing; re-created it")
    mark = time.time_ns()
    poll_until(
        lambda: (
            uids(pods)
            <= {r["pod_uid"] for r in h.rotate_and_rows() if int(r["start_timestamp"]) > mark}
        ),
        20,
        what="rows after the removal",
    )
    assert h.restarts()["writer"] == 0
    assert h.node.stop_pipeline() == 0
    assert not h.hidden()
    rows = h.read_all()
    # The file in progress at the removal was rebuilt from the writer's descriptor:
    # rows from before the removal are still there.
    assert any(int(r["start_timestamp"]) < removed_at for r in rows)
