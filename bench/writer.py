"""Throughput of the writer's core (ParquetSink) against plain pyarrow, the floor.

Both sides get the same OccupancyBatch columns (``--batch-rows`` rows per batch,
shaped like a real node: one row per pod per tick) and write zstd Parquet with the
same row-group size. The floor converts each batch's columns to Arrow arrays and
writes them with ``pq.ParquetWriter`` — nothing else. The sink additionally
validates batches, journals every flush (Arrow IPC, fsync'd) and publishes files
atomically. Runs alternate between the two. Also reported: the latency of single
``add`` calls (what the writer's poll loop blocks for; the maximum is a flush).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import Context, section
from bench.report import Section, Table, Target, median, p99
from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.schema import arrow_schema
from resctrl_pipeline.sink import ParquetSink
from resctrl_pipeline.sink.policy import FLUSH_ROWS

__all__ = ["NAME", "TITLE", "add_arguments", "make_batches", "run", "skip_reason"]

NAME = "writer"
TITLE = "Writer core (ParquetSink) vs pyarrow direct"
TARGET = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch shape, flush size, journal codec and runs."""
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-rows", type=int, default=500)
    parser.add_argument(
        "--row-group", type=int, default=FLUSH_ROWS, help="rows per flush (default: the writer's)"
    )
    parser.add_argument("--journal", default="zstd", help="journal codec: zstd, lz4 or none")


def skip_reason(ctx: Context) -> str | None:
    """Always runs."""
    return None


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
    if stats.rows_written != sum(b.num_rows for b in batches):
        raise RuntimeError(f"sink wrote {stats.rows_written} rows: {stats}")
    return latencies


def _timed(fn: Callable[[str], object], parent: str) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-writer-", dir=parent) as out:
        t0 = time.perf_counter()
        fn(out)
        return time.perf_counter() - t0


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Alternate floor and sink runs; the target is ≥ 50 % of the floor's rows/s."""
    runs, count, size, row_group = args.runs, args.batches, args.batch_rows, args.row_group
    if ctx.quick:
        runs, count, size, row_group = 1, 20, 100, 1000
    journal = None if args.journal == "none" else args.journal
    batches = make_batches(count, size)
    rows = count * size
    floor_t: list[float] = []
    sink_t: list[float] = []
    adds: list[float] = []
    for _ in range(runs):
        floor_t.append(_timed(lambda out: run_floor(batches, out, row_group), ctx.work))
        sink_t.append(
            _timed(lambda out: adds.extend(run_sink(batches, out, row_group, journal)), ctx.work)
        )
    table = Table(
        f"{rows:,} rows per run ({count} batches × {size}), {runs} runs, row group "
        f"{row_group:,} rows, zstd Parquet, journal {args.journal}",
        ["path", "median s", "p99 s", "rows/s (median)", "floor rows/s", "% of floor"],
    )
    floor = median(floor_t)
    for label, times in (("pyarrow direct (floor)", floor_t), ("ParquetSink", sink_t)):
        med = median(times)
        table.add(
            label,
            f"{med:.3f}",
            f"{p99(times):.3f}",
            f"{rows / med:,.0f}",
            f"{rows / floor:,.0f}",
            f"{100 * floor / med:.0f} %",
        )
    table.notes.append(
        f"`add()` latency: median {median(adds) * 1e3:.2f} ms, p99 {p99(adds) * 1e3:.2f} ms, "
        f"max {max(adds) * 1e3:.2f} ms (the maximum is a flush)."
    )
    share = floor / median(sink_t)
    out = section(NAME, TITLE, ctx)
    out.tables.append(table)
    out.targets.append(
        Target(f"≥ {TARGET:.0%} of the floor's rows/s", f"{share:.0%}", share >= TARGET)
    )
    return out
