"""Finding a running pipeline (runtime dir or HTTP address), `rotate`'s target check,
and exclusive ownership of the runtime and output directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from resctrl_pipeline.instance import process_start_ticks
from tests.integration.pipeline import RunningPipeline
from tests.integration.test_supervisor import feed_sampler
from tests.support import make_group, make_resctrl_tree, poll_until

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resctrl_pipeline.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def up_args(tmp: str, out: str) -> list[str]:
    return ["--actors", "sampler,writer", "--resctrl-root", os.path.join(tmp, "resctrl"),
            "--output", out, "--sampling-interval", "100ms", "--retry-interval", "1s",
            "--nri-socket", os.path.join(tmp, "nri.sock")]  # fmt: skip


@pytest.fixture
def pipeline(short_tmp: str) -> Iterator[RunningPipeline]:
    resctrl = os.path.join(short_tmp, "resctrl")
    make_resctrl_tree(resctrl)
    make_group(os.path.join(resctrl, "mon_groups", "pod_u1"), value=1000)
    p = RunningPipeline(os.path.join(short_tmp, "run"),
                        up_args(short_tmp, os.path.join(short_tmp, "out")),
                        os.path.join(short_tmp, "up.log"))  # fmt: skip
    p.wait_serving(("sampler", "writer"))
    yield p
    p.kill()


def test_status_and_rotate_find_the_pipeline_by_runtime_dir_or_http_addr(
    pipeline: RunningPipeline,
) -> None:
    port = pipeline.pids()["http_port"]
    by_dir = cli("status", "--runtime-dir", pipeline.runtime_dir)
    assert by_dir.returncode == 0, by_dir.stderr
    assert "writer" in by_dir.stdout and "sampler" in by_dir.stdout
    by_addr = cli("status", "--http-addr", f"127.0.0.1:{port}", "--json")
    assert by_addr.returncode == 0, by_addr.stderr
    assert set(json.loads(by_addr.stdout)["actors"]) == {"sampler", "writer"}
    writer = pipeline.pids()["actors"]["writer"]
    for how in (["--runtime-dir", pipeline.runtime_dir], ["--http-addr", f"127.0.0.1:{port}"]):
        rotated = cli("rotate", *how)
        assert rotated.returncode == 0, rotated.stderr
        assert f"pid {writer}" in rotated.stdout
    assert pipeline.proc.poll() is None
    assert pipeline.pids()["actors"]["writer"] == writer  # SIGUSR1 rotates, it does not kill


def test_status_without_a_pipeline_says_where_it_looked(short_tmp: str) -> None:
    result = cli("status", "--runtime-dir", short_tmp)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no running pipeline in {short_tmp} (no pids.json); point at one with "
        "--runtime-dir DIR or --http-addr HOST:PORT"
    ]


def write_pids(runtime_dir: str, pid: int, ticks: int | None) -> None:
    started = {"supervisor": ticks, "writer": ticks} if ticks is not None else {}
    with open(os.path.join(runtime_dir, "pids.json"), "w") as f:
        json.dump({"supervisor": pid, "http_addr": "127.0.0.1:1", "http_port": 1,
                   "actors": {"writer": pid}, "started": started}, f)  # fmt: skip


def test_rotate_refuses_a_stale_pids_file_naming_an_unrelated_process(short_tmp: str) -> None:
    other = subprocess.Popen(["sleep", "300"])
    try:
        write_pids(short_tmp, other.pid, process_start_ticks(other.pid))
        result = cli("rotate", "--runtime-dir", short_tmp)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {other.pid}" in lines[0], result.stderr
        assert "'sleep 300'" in lines[0] and "stale" in lines[0]
        assert other.poll() is None  # SIGUSR1 would have killed sleep
    finally:
        other.kill()
        other.wait()


def test_rotate_refuses_a_pid_reused_by_a_later_pipeline_process(short_tmp: str) -> None:
    # Same command line as ours, but not the recorded start time: a later holder of the pid.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                              "resctrl_pipeline"])  # fmt: skip
    try:
        ticks = poll_until(lambda: process_start_ticks(other.pid), 10, what="the process")
        write_pids(short_tmp, other.pid, ticks - 100)
        result = cli("rotate", "--runtime-dir", short_tmp)
        assert result.returncode == 1
        assert "stale" in result.stderr and f"pid {other.pid}" in result.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_second_up_on_the_same_directories_refuses_and_the_first_keeps_every_row(
    pipeline: RunningPipeline, short_tmp: str
) -> None:
    resctrl = os.path.join(short_tmp, "resctrl")
    out = os.path.join(short_tmp, "out")

    def rows_received() -> int:
        feed_sampler(pipeline.runtime_dir, resctrl)
        return int(pipeline.status()["actors"]["writer"]["counters"].get("rows_received", 0))

    poll_until(rows_received, 20, interval=0.2, what="rows at the first writer")
    holder = pipeline.proc.pid
    same_run = RunningPipeline(pipeline.runtime_dir, up_args(short_tmp, out),
                               os.path.join(short_tmp, "second.log"))  # fmt: skip
    assert same_run.proc.wait(30) == 1
    same_run.kill()
    assert (f"error: runtime dir {pipeline.runtime_dir} is in use by another resctrl-pipeline "
            f"(pid {holder})") in same_run.log()  # fmt: skip
    same_out = RunningPipeline(os.path.join(short_tmp, "run2"), up_args(short_tmp, out),
                               os.path.join(short_tmp, "third.log"))  # fmt: skip
    assert same_out.proc.wait(30) == 1
    same_out.kill()
    assert f"error: output dir {out} is in use by another resctrl-pipeline (pid {holder})" in (
        same_out.log()
    )
    # The first is untouched: its sockets and pids.json are still its own, it keeps writing.
    assert pipeline.pids()["supervisor"] == holder
    before = rows_received()
    poll_until(lambda: rows_received() > before, 20, interval=0.2, what="more rows")
    received = rows_received()
    assert pipeline.terminate() == 0, pipeline.log()
    names = os.listdir(out)
    assert names and all(n.endswith(".parquet") for n in names), names  # nothing partial
    rows = sum(pq.read_table(os.path.join(out, n)).num_rows for n in names)
    assert rows >= received
    assert "vanished" not in pipeline.log()
