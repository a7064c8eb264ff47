"""``resctrl-pipeline report``: per-pod summary (and plot) over the Parquet output.

Reads files or directories (``*.parquet`` inside, recursively; temporary files of a
running writer are never matched), aggregates per pod with Arrow's group-by, and
renders a text table: namespace/name, samples, mean/p95/max occupancy, containers
(reconciled/total, the largest seen) and first/last seen. ``plot`` draws occupancy
over time per pod with matplotlib, an optional extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from resctrl_pipeline.errors import PipelineError

__all__ = ["PodSummary", "ReportError", "find_files", "format_report", "load", "plot", "summarise"]


class ReportError(PipelineError):
    """The input cannot be reported on (no files, unreadable file, missing matplotlib)."""


@dataclass(frozen=True, slots=True)
class PodSummary:
    """Aggregates of one pod's rows."""

    pod_uid: str
    namespace: str | None
    name: str | None
    samples: int
    mean_bytes: float
    p95_bytes: float
    max_bytes: int
    reconciled: int
    total: int
    first_ns: int
    last_ns: int


def find_files(paths: Iterable[str]) -> list[str]:
    """Expand directories to the ``*.parquet`` files below them, sorted.

    Raises:
        ReportError: a path does not exist, or nothing was found.
    """
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for dirpath, _, names in os.walk(path):
                files.extend(os.path.join(dirpath, n) for n in names if n.endswith(".parquet"))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ReportError(f"{path}: no such file or directory")
    if not files:
        raise ReportError("no *.parquet files found in " + ", ".join(paths))
    return sorted(files)


def load(files: list[str]) -> pa.Table:
    """Read and concatenate the files (columns after the first nine may differ).

    Raises:
        ReportError: naming the first unreadable file.
    """
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (OSError, pa.ArrowInvalid) as err:
            raise ReportError(f"{f}: not a readable Parquet file: {err}") from err
    return pa.concat_tables(tables, promote_options="default")


def summarise(table: pa.Table) -> list[PodSummary]:
    """One :class:`PodSummary` per pod uid, busiest (highest mean) first."""
    if table.num_rows == 0:
        return []
    occ = "llc_occupancy_bytes"
    grouped = table.group_by(["pod_uid"], use_threads=False).aggregate([
        ("pod_namespace", "max"), ("pod_name", "max"),
        (occ, "count"), (occ, "mean"), (occ, "max"),
        (occ, "tdigest", pc.TDigestOptions(q=0.95)),
        ("reconciled_containers", "max"), ("total_containers", "max"),
        ("timestamp", "min"), ("timestamp", "max"),
    ])  # fmt: skip
    out = []
    for row in grouped.to_pylist():
        p95 = row[f"{occ}_tdigest"]
        out.append(PodSummary(
            pod_uid=row["pod_uid"], namespace=row["pod_namespace_max"],
            name=row["pod_name_max"], samples=row[f"{occ}_count"],
            mean_bytes=row[f"{occ}_mean"], p95_bytes=p95[0] if p95 else 0.0,
            max_bytes=row[f"{occ}_max"], reconciled=row["reconciled_containers_max"],
            total=row["total_containers_max"], first_ns=row["timestamp_min"],
            last_ns=row["timestamp_max"],
        ))  # fmt: skip
    out.sort(key=lambda s: -s.mean_bytes)
    return out


def _mib(value: float) -> str:
    return f"{value / 2**20:.2f}"


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_report(pods: list[PodSummary]) -> str:
    """The per-pod table (occupancy in MiB)."""
    header = ("POD", "UID", "SAMPLES", "MEAN MiB", "P95 MiB", "MAX MiB", "CONTAINERS",
              "FIRST SEEN", "LAST SEEN")  # fmt: skip
    rows = [header]
    for p in pods:
        label = f"{p.namespace}/{p.name}" if p.namespace is not None else "(no labels)"
        rows.append((label, p.pod_uid[:13], str(p.samples), _mib(p.mean_bytes),
                     _mib(p.p95_bytes), _mib(p.max_bytes), f"{p.reconciled}/{p.total}",
                     _when(p.first_ns), _when(p.last_ns)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def plot(table: pa.Table, out_png: str) -> None:
    """Draw occupancy over time, one line per pod, into ``out_png``.

    Raises:
        ReportError: matplotlib is not installed (says how to install it).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ReportError(
            "--plot needs matplotlib: pip install 'resctrl-pipeline[plot]' "
            "(or .venv/bin/pip install matplotlib)"
        ) from err
    fig, ax = plt.subplots(figsize=(10, 5))
    data = table.select(["pod_uid", "pod_namespace", "pod_name", "timestamp",
                         "llc_occupancy_bytes"]).to_pydict()  # fmt: skip
    series: dict[str, tuple[str, list[float], list[float]]] = {}
    for uid, ns, name, ts, occ in zip(*data.values(), strict=True):
        label = f"{ns}/{name}" if ns is not None else uid[:13]
        entry = series.setdefault(uid, (label, [], []))
        entry[1].append(ts / 1e9)
        entry[2].append(occ / 2**20)
    t0 = min((min(s[1]) for s in series.values()), default=0.0)
    for label, xs, ys in series.values():
        order = sorted(range(len(xs)), key=xs.__getitem__)
        ax.plot([xs[i] - t0 for i in order], [ys[i] for i in order], label=label)
    ax.set_xlabel("seconds since first sample")
    ax.set_ylabel("LLC occupancy (MiB)")
    ax.set_title("LLC occupancy per pod")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
