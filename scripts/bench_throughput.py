#!/usr/bin/env python3
"""End-to-end throughput: occupancy batches → writer actor → Parquet, over real sockets.

A producer pushes ``--batches`` columnar batches of ``--rows`` rows (what a sampler
emits for that many pods) into the writer's PULL socket of a running
``resctrl-pipeline up --actors writer``; the clock stops when the writer has exited
after SIGTERM (drained and finalised). Rows are counted in the files afterwards.

Floor: pyarrow building a table from the same Python columns and writing it with
``pq.ParquetWriter`` (same compression), in this process.

Usage: scripts/bench_throughput.py [--rows 1000] [--batches 300] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from resctrl_pipeline import codec, schema
from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.topology import endpoint


def make_columns(rows: int, tick: int) -> dict[str, list[object]]:
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


def run_pipeline(rows: int, batches: int) -> tuple[float, int]:
    work = tempfile.mkdtemp(prefix="rp-tp-", dir="/tmp")
    run, out = os.path.join(work, "run"), os.path.join(work, "out")
    cmd = [sys.executable, "-m", "resctrl_pipeline.cli", "up", "--actors", "writer",
           "--runtime-dir", run, "--output", out, "--http-addr", "127.0.0.1:0",
           "--log-level", "warning", "--resctrl-root", work]  # fmt: skip
    env = dict(os.environ, RESCTRL_CHANNEL_CAPACITY="100000")
    up = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(run, "pids.json")) as f:
                    if "writer" in json.load(f).get("actors", {}):
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        payloads = [codec.encode(OccupancyBatch(make_columns(rows, t))) for t in range(batches)]
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.LINGER, -1)
        sock.connect(endpoint(run, "occupancy"))
        time.sleep(0.5)  # let the writer's recovery and socket setup finish before timing
        t0 = time.perf_counter()
        for data in payloads:
            sock.send(data)
        sock.close()  # linger -1: returns once every message is handed to the writer
        up.send_signal(signal.SIGTERM)
        up.wait(120)
        elapsed = time.perf_counter() - t0
        written = sum(pq.ParquetFile(f).metadata.num_rows for f in glob.glob(f"{out}/*.parquet"))
        return elapsed, written
    finally:
        if up.poll() is None:
            up.kill()
        shutil.rmtree(work, ignore_errors=True)


def run_floor(rows: int, batches: int) -> float:
    work = tempfile.mkdtemp(prefix="rp-floor-", dir="/tmp")
    try:
        cols = [make_columns(rows, t) for t in range(batches)]
        sch = schema.arrow_schema(with_mbm=False)
        t0 = time.perf_counter()
        with pq.ParquetWriter(os.path.join(work, "f.parquet"), sch, compression="zstd") as w:
            for c in cols:
                w.write_table(pa.Table.from_pydict(c, schema=sch))
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.batches, args.runs = 100, 20, 1
    total = args.rows * args.batches
    pipe, floor = [], []
    for _ in range(args.runs):
        elapsed, written = run_pipeline(args.rows, args.batches)
        if written != total:
            print(f"error: {written} rows written, {total} sent", file=sys.stderr)
            return 1
        pipe.append(total / elapsed)
        floor.append(total / run_floor(args.rows, args.batches))
    print(f"# end-to-end throughput, {args.batches} batches × {args.rows} rows, {args.runs} runs"
          f" — {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    print("| path | median rows/s | worst rows/s | % of floor |")
    print("|---|---|---|---|")
    fm = statistics.median(floor)
    for name, rates in (("pyarrow direct (floor)", floor), ("socket → writer → Parquet", pipe)):
        med = statistics.median(rates)
        print(f"| {name} | {med:,.0f} | {min(rates):,.0f} | {100 * med / fm:.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
