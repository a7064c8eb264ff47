#!/usr/bin/env python3
"""Throughput of the writer's core (ParquetSink) against plain pyarrow, the floor.

Both sides get the same OccupancyBatch columns (``--batch-rows`` rows per batch,
shaped like a real node: one row per pod per tick) and write zstd Parquet with the
same row-group size. The floor converts each batch's columns to Arrow arrays and
writes them with ``pq.ParquetWriter`` — nothing else. The sink additionally
validates batches, journals every flush (Arrow IPC, fsync'd) and publishes files
atomically. Runs alternate between the two; the script prints the median and p99
of the per-run wall time, rows/s at the median, the ratio sink/floor, and the
latency of single ``add`` calls (what the writer's poll loop blocks for).

Usage: .venv/bin/python scripts/bench_writer.py [--runs 7] [--batches 400] ...
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.schema import arrow_schema
from resctrl_pipeline.sink import ParquetSink


def make_batches(count: int, rows: int, seed: int = 1) -> list[OccupancyBatch]:
    """``count`` ticks of ``rows`` pods each, with realistic strings and counters."""
    rng = random.Random(seed)
    uids = [
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
        f"a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
        for _ in range(rows)
    ]
    namespaces = [f"team-{i % 17}" for i in range(rows)]
    names = [
        f"svc-{i % 41}-{rng.getrandbits(24):06x}-{rng.getrandbits(20):05x}" for i in range(rows)
    ]
    groups = [f"/sys/fs/resctrl/mon_groups/pod_{u}" for u in uids]
    batches = []
    for tick in range(count):
        start = 1_700_000_000_000_000_000 + tick * 1_000_000_000
        columns: dict[str, list[Any]] = {
            "start_timestamp": [start] * rows,
            "timestamp": [start + 1000 * i + rng.randrange(1000) for i in range(rows)],
            "pod_namespace": namespaces,
            "pod_name": names,
            "pod_uid": uids,
            "resctrl_group": groups,
            "total_containers": [1 + i % 3 for i in range(rows)],
            "reconciled_containers": [1 + i % 3 for i in range(rows)],
            "llc_occupancy_bytes": [rng.randrange(1 << 26) & ~0xFFFF for _ in range(rows)],
        }
        batches.append(OccupancyBatch(columns))
    return batches


def run_floor(batches: list[OccupancyBatch], out: str, row_group: int) -> None:
    """Plain pyarrow: columns → arrays → ParquetWriter, row groups of ``row_group``."""
    schema = arrow_schema(with_mbm=False)
    with pq.ParquetWriter(f"{out}/floor.parquet", schema, compression="zstd") as writer:
        pending: list[pa.RecordBatch] = []
        rows = 0
        for b in batches:
            arrays = [pa.array(b.columns[f.name], type=f.type) for f in schema]
            pending.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += pending[-1].num_rows
            if rows >= row_group:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=rows)
                pending, rows = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=rows)


def run_sink(
    batches: list[OccupancyBatch], out: str, row_group: int, journal: str | None
) -> list[float]:
    """The sink, flushing by rows; returns the latency of every ``add`` call."""
    sink = ParquetSink(out, node="bench", flush_rows=row_group, journal_compression=journal)
    sink.recover(0.0)
    latencies = []
    clock = time.perf_counter
    for b in batches:
        t0 = clock()
        sink.add(b, 0.0)
        latencies.append(clock() - t0)
    sink.close(0.0)
    stats = sink.statistics()
    assert stats.rows_written == sum(b.num_rows for b in batches), stats
    return latencies


def timed(fn: Callable[[str], object]) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as out:
        t0 = time.perf_counter()
        fn(out)
        return time.perf_counter() - t0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-rows", type=int, default=500)
    parser.add_argument("--row-group", type=int, default=65_536, help="rows per flush")
    parser.add_argument("--journal", default="zstd", help="journal codec: zstd, lz4 or none")
    args = parser.parse_args()
    journal = None if args.journal == "none" else args.journal
    batches = make_batches(args.batches, args.batch_rows)
    rows = args.batches * args.batch_rows

    floor_t: list[float] = []
    sink_t: list[float] = []
    adds: list[float] = []
    for _ in range(args.runs):
        floor_t.append(timed(lambda out: run_floor(batches, out, args.row_group)))
        sink_t.append(
            timed(lambda out: adds.extend(run_sink(batches, out, args.row_group, journal)))
        )

    print(f"{rows} rows per run ({args.batches} batches x {args.batch_rows}), {args.runs} runs,")
    print(f"row group {args.row_group} rows, zstd Parquet, journal {args.journal}\n")
    print(f"{'':8}{'median s':>10}{'p99 s':>10}{'rows/s (median)':>18}")
    for label, times in (("floor", floor_t), ("sink", sink_t)):
        med = statistics.median(times)
        print(f"{label:8}{med:10.3f}{p99(times):10.3f}{rows / med:18,.0f}")
    ratio = statistics.median(floor_t) / statistics.median(sink_t)
    print(f"\nsink / floor throughput: {ratio:.0%} (target >= 50%)")
    ms = sorted(a * 1000 for a in adds)
    print(
        f"sink add() latency ms: median {statistics.median(ms):.2f}, "
        f"p99 {p99(ms):.2f}, max {ms[-1]:.2f} (max = a flush)"
    )


if __name__ == "__main__":
    main()
