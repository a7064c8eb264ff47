"""The ranking as a text table, CSV or JSON (pure)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import UTC, datetime

from resctrl_pipeline.report.ranking import Ranked

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "csv", "json")


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mib(value: float) -> str:
    return f"{value / 2**20:.2f}"


def _mbs(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def _name(r: Ranked, by: str) -> str:
    if by != "pod":
        return r.key or "(none)"
    return f"{r.namespace}/{r.pod}" if r.namespace is not None else "(no labels)"


def render(rows: list[Ranked], by: str, fmt: str) -> str:
    """``rows`` in ``fmt``: a table (MiB, MB/s, UTC times), CSV or JSON (bytes,
    bytes/s, ns and ISO times; one object per row)."""
    if fmt == "json":
        return json.dumps(
            [{**asdict(r), "first": _when(r.first_ns), "last": _when(r.last_ns)} for r in rows],
            indent=1,
        )
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(Ranked.__dataclass_fields__)
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
        return buf.getvalue().rstrip("\n")
    first = {"pod": ("POD", "UID", "NODE"), "namespace": ("NAMESPACE", "NODES", "PODS"),
             "node": ("NODE", "PODS", "TICKS")}[by]  # fmt: skip
    header = (*first, "MEAN MiB", "P95 MiB", "MAX MiB", "MBM MEAN MB/s", "MBM P95", "MBM MAX",
              "FIRST SEEN", "LAST SEEN")  # fmt: skip
    table = [header]
    for r in rows:
        lead = {
            "pod": (_name(r, by), r.key[:8], r.node or "-"),
            "namespace": (_name(r, by), str(r.nodes), str(r.pods)),
            "node": (_name(r, by), str(r.pods), str(r.samples)),
        }[by]
        table.append((*lead, _mib(r.occupancy_mean), _mib(r.occupancy_p95),
                      _mib(r.occupancy_max), _mbs(r.mbm_rate_mean), _mbs(r.mbm_rate_p95),
                      _mbs(r.mbm_rate_max), _when(r.first_ns), _when(r.last_ns)))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
