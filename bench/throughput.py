"""End-to-end throughput: occupancy batches → writer actor → Parquet, over real sockets.

A producer pushes ``--batches`` columnar batches of ``--rows`` rows (what a sampler
emits for that many pods) into the writer's PULL socket of a running
``resctrl-pipeline up --actors writer``; the clock stops when ``up`` has exited after
SIGTERM (the writer drained its input and finalised its file). Rows are counted in
the files afterwards: every row sent must be there.

Floor: pyarrow building Arrow arrays from the same Python columns and writing them
with ``pq.ParquetWriter`` (same compression, and row groups of
:data:`~resctrl_pipeline.sink.policy.FLUSH_ROWS` rows, as the writer actor writes
them: :func:`bench.writer.run_floor`), in this process. Runs alternate between the
two. pyarrow is imported here only, never by the pipeline's other actors.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import tempfile
import time

import pyarrow.parquet as pq
import zmq

from bench.common import Context, Pipeline, section, wait_for
from bench.report import Section, Table, Target, median, p99
from bench.writer import run_floor
from resctrl_pipeline import codec
from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.sink.policy import FLUSH_ROWS
from resctrl_pipeline.topology import endpoint

__all__ = ["NAME", "TITLE", "add_arguments", "run", "skip_reason"]

NAME = "throughput"
TITLE = "End-to-end throughput: socket → writer → Parquet vs pyarrow direct"
TARGET = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch shape and runs."""
    parser.add_argument("--rows", type=int, default=1000, help="rows per batch")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)


def skip_reason(ctx: Context) -> str | None:
    """Always runs."""
    return None


def make_columns(rows: int, tick: int) -> dict[str, list[object]]:
    """One tick of ``rows`` pods, shaped like the sampler's batches."""
    start = 1_760_000_000_000_000_000 + tick * 1_000_000_000
    return {
        "start_timestamp": [start] * rows,
        "timestamp": [start + i * 1000 for i in range(rows)],
        "pod_namespace": ["bench"] * rows,
        "pod_name": [f"pod-{i}" for i in range(rows)],
        "pod_uid": [f"{i:08x}-1111-2222-3333-444455556666" for i in range(rows)],
        "resctrl_group": [f"/sys/fs/resctrl/mon_groups/pod_{i:08x}" for i in range(rows)],
        "total_containers": [2] * rows,
        "reconciled_containers": [2] * rows,
        "llc_occupancy_bytes": [(i * 7919 + tick) % 40_000_000 for i in range(rows)],
    }


def run_pipeline(work: str, payloads: list[bytes]) -> tuple[float, int, int]:
    """Seconds from the first send until ``up`` exited; rows and row groups in the files."""
    run_dir, out = os.path.join(work, "run"), os.path.join(work, "out")
    up = Pipeline(
        run_dir,
        ["--actors", "writer", "--output", out, "--log-level", "warning", "--resctrl-root", work],
        env={"RESCTRL_CHANNEL_CAPACITY": "100000"},
    )
    try:
        up.actor_pids(["writer"])
        # Its first heartbeat: imports done, socket bound, SIGTERM handled.
        wait_for(lambda: up.counter("writer", "decode_errors") is not None, 60, "writer up")
        zctx = zmq.Context()
        sock: zmq.Socket[bytes] = zctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.LINGER, -1)
        sock.connect(endpoint(run_dir, "occupancy"))
        t0 = time.perf_counter()
        for data in payloads:
            sock.send(data)
        sock.close()
        zctx.term()  # linger -1: returns once every message is handed to the writer
        up.stop()  # the writer drains its input, finalises its file, and exits
        elapsed = time.perf_counter() - t0
    finally:
        up.stop()
    files = [pq.ParquetFile(f).metadata for f in glob.glob(f"{out}/*.parquet")]
    return elapsed, sum(m.num_rows for m in files), sum(m.num_row_groups for m in files)


def time_floor(work: str, batches: list[OccupancyBatch]) -> tuple[float, int]:
    """Seconds pyarrow takes to write the same batches to one zstd Parquet file, in row
    groups of the writer actor's size; the file's row groups."""
    t0 = time.perf_counter()
    run_floor(batches, work, FLUSH_ROWS)
    elapsed = time.perf_counter() - t0
    return elapsed, pq.ParquetFile(os.path.join(work, "floor.parquet")).metadata.num_row_groups


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Alternate floor and pipeline runs; the target is ≥ 50 % of the floor's rows/s."""
    rows, batches, runs = args.rows, args.batches, args.runs
    if ctx.quick:
        rows, batches, runs = 100, 20, 1
    total = rows * batches
    messages = [OccupancyBatch(make_columns(rows, t)) for t in range(batches)]
    payloads = [codec.encode(m) for m in messages]
    times: dict[str, list[float]] = {"floor": [], "pipe": []}
    groups = {"floor": 0, "pipe": 0}  # row groups per file, of the last run
    for i in range(runs):
        work = tempfile.mkdtemp(prefix=f"tp{i}-", dir=ctx.work)
        try:
            elapsed, groups["floor"] = time_floor(work, messages)
            times["floor"].append(elapsed)
            elapsed, written, groups["pipe"] = run_pipeline(work, payloads)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if written != total:
            raise RuntimeError(f"{written} rows written, {total} sent")
        times["pipe"].append(elapsed)
    table = Table(
        f"{batches} batches × {rows:,} rows, {runs} runs (seconds per run → rows/s)",
        ["path", "median s", "p99 s", "rows/s (median)", "floor rows/s", "% of floor"],
    )
    floor = median(times["floor"])
    for key, label in (("floor", "pyarrow direct (floor)"), ("pipe", "socket → writer → Parquet")):
        med = median(times[key])
        table.add(
            label,
            f"{med:.3f}",
            f"{p99(times[key]):.3f}",
            f"{total / med:,.0f}",
            f"{total / floor:,.0f}",
            f"{100 * floor / med:.0f} %",
        )
    table.notes.append(
        "The pipeline's clock includes msgpack decoding, validation, the journal (fsync'd), "
        "Parquet encoding and the final rename; it stops when `up` has exited. "
        f"Both sides write row groups of up to {FLUSH_ROWS:,} rows (the writer's flush size): "
        f"{groups['floor']} in the floor's file, {groups['pipe']} in the pipeline's."
    )
    share = floor / median(times["pipe"])
    out = section(NAME, TITLE, ctx)
    out.tables.append(table)
    out.targets.append(
        Target(f"≥ {TARGET:.0%} of the floor's rows/s", f"{share:.0%}", share >= TARGET)
    )
    return out
