"""``report``: per-pod aggregates over real Parquet files, and the CLI around it."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from resctrl_pipeline import schema
from resctrl_pipeline.cli import main
from resctrl_pipeline.report import find_files, load, summarise


def write_rows(path: str, rows: list[tuple[str, str | None, int, int]]) -> None:
    """rows: (uid, name or None, timestamp_ns, occupancy)."""
    cols = {name: [] for name in schema.column_names(False)}  # type: ignore[var-annotated]
    for uid, name, ts, occ in rows:
        for col, value in (("start_timestamp", ts), ("timestamp", ts),
                           ("pod_namespace", "ns" if name else None), ("pod_name", name),
                           ("pod_uid", uid), ("resctrl_group", f"/g/{uid}"),
                           ("total_containers", 2), ("reconciled_containers", 1),
                           ("llc_occupancy_bytes", occ)):  # fmt: skip
            cols[col].append(value)
    pq.write_table(pa.Table.from_pydict(cols, schema=schema.arrow_schema(False)), path)


def test_summary_per_pod(tmp_path: str) -> None:
    d = str(tmp_path)
    write_rows(os.path.join(d, "a.parquet"), [("u1", "web", 1_000_000_000, 100),
                                              ("u2", None, 1_000_000_000, 10)])  # fmt: skip
    os.mkdir(os.path.join(d, "sub"))
    write_rows(os.path.join(d, "sub", "b.parquet"), [("u1", "web", 3_000_000_000, 300)])
    with open(os.path.join(d, ".x.parquet.partial"), "w") as f:
        f.write("in progress")
    files = find_files([d])
    assert [os.path.basename(f) for f in files] == ["a.parquet", "b.parquet"]
    pods = summarise(load(files))
    assert [p.pod_uid for p in pods] == ["u1", "u2"]
    u1 = pods[0]
    assert (u1.namespace, u1.name, u1.samples, u1.mean_bytes, u1.max_bytes) == (
        "ns", "web", 2, 200.0, 300)  # fmt: skip
    assert (u1.first_ns, u1.last_ns, u1.reconciled, u1.total) == (10**9, 3 * 10**9, 1, 2)
    assert 100 <= u1.p95_bytes <= 300
    assert pods[1].namespace is None


def test_cli_report_table_and_errors(tmp_path: str) -> None:
    d = str(tmp_path)
    write_rows(os.path.join(d, "a.parquet"), [("u1", "web", 10**9, 2**20)])
    result = CliRunner().invoke(main, ["report", d])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("ns/web"))
    assert line.split()[:6] == ["ns/web", "u1", "1", "1.00", "1.00", "1.00"]
    assert "1 rows from 1 file(s)" in result.output
    missing = CliRunner().invoke(main, ["report", os.path.join(d, "nope")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    with open(os.path.join(d, "bad.parquet"), "w") as f:
        f.write("not parquet")
    bad = CliRunner().invoke(main, ["report", d])
    assert bad.exit_code == 1 and "bad.parquet: not a readable Parquet file" in bad.output


def test_cli_report_plot_or_install_hint(tmp_path: str) -> None:
    d = str(tmp_path)
    write_rows(os.path.join(d, "a.parquet"), [("u1", "web", 10**9, 5), ("u1", "web", 2 * 10**9, 6)])
    png = os.path.join(d, "occ.png")
    result = CliRunner().invoke(main, ["report", d, "--plot", png])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result.exit_code == 1 and "pip install 'resctrl-pipeline[plot]'" in result.output
    else:
        assert result.exit_code == 0, result.output
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
