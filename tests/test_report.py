"""``report``: the fleet ranking over generated multi-node datasets (on disk and on a
real S3 server), live rows of a file in progress, the plot, and its error messages.

The datasets come from ``bench/fleet.py``: pod ``i`` on node ``n`` holds
``occupancy_of(n, i)`` bytes and its MBM counter grows by ``(i + 1)`` MB/s, so the
expected ranking follows from the generator's parameters, not from the code tested.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner

from bench.fleet import L3_BYTES, generate, occupancy_of, writer_to
from resctrl_pipeline.cli import main
from resctrl_pipeline.report.plot import _labels, _with_gaps
from resctrl_pipeline.report.ranking import Ranked
from tests.test_sink_parquet import Ids, make_sink

NODES, PODS, HOURS = 3, 4, 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fleet") / "data"
    generate(writer_to(pafs.LocalFileSystem(), str(base)), nodes=NODES, pods=PODS, hours=HOURS,
             interval=10.0)  # fmt: skip
    return base


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["report", *args])


def ranking(*args: str) -> list[dict[str, Any]]:
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_fleet_ranking_per_pod_with_node_and_mbm_rate(fleet: Path) -> None:
    rows = ranking(str(fleet), "--top", "0")
    expected = sorted(((occupancy_of(n, p), f"node-{n:02d}", f"pod-{p:03d}")
                       for n in range(NODES) for p in range(PODS)), reverse=True)  # fmt: skip
    assert [(r["occupancy_mean"], r["node"], r["pod"]) for r in rows] == expected
    busiest = rows[0]
    assert busiest["occupancy_p95"] == busiest["occupancy_max"] == busiest["occupancy_mean"]
    assert math.isclose(busiest["mbm_rate_mean"], PODS * 1e6, rel_tol=1e-6)
    assert busiest["samples"] == HOURS * 360
    assert busiest["first"] == "2025-12-01T00:00:00Z"


def test_table_top_and_summary_line(fleet: Path) -> None:
    result = run(str(fleet), "--top", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["POD", "UID", "NODE"]
    assert [ln.split()[2] for ln in lines[1:3]] == ["node-02", "node-01"]
    assert lines[1].split()[:4] == ["ns-0/pod-003", "00020003", "node-02", "4.00"]
    rows = NODES * PODS * HOURS * 360
    assert lines[-1] == (f"{rows} rows from {NODES * HOURS} of {NODES * HOURS} file(s); "
                         f"top 2 of {NODES * PODS} shown (--top 0 for all)")  # fmt: skip


def test_node_and_time_filters_prune_files_before_reading(fleet: Path) -> None:
    result = run(str(fleet), "--node", "node-01", "--since", "2025-12-01T01:00:00Z",
                 "--format", "csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["node"] for r in rows} == {"node-01"} and len(rows) == PODS
    assert {r["first_ns"] for r in rows} >= {str(1_764_547_200 * 10**9 + 3600 * 10**9 + 1000)}
    # The node partition leaves two files of six to open (same day: the date partition
    # keeps both); the hour is cut by the timestamp filter inside them.
    assert f"{PODS * 360} rows from {HOURS} of {NODES * HOURS} file(s)" in result.stderr
    next_day = run(str(fleet), "--since", "2025-12-02", "--format", "csv")
    assert f"0 rows from 0 of {NODES * HOURS} file(s)" in next_day.stderr
    only_ns = ranking(str(fleet), "--namespace", "ns-1", "--top", "0")
    assert {r["namespace"] for r in only_ns} == {"ns-1"} and len(only_ns) == NODES


def test_ranking_by_namespace_and_by_node_sums_each_tick(fleet: Path) -> None:
    by_node = ranking(str(fleet), "--by", "node")
    per_node = [sum(occupancy_of(n, p) for p in range(PODS)) for n in range(NODES)]
    assert [(r["key"], r["occupancy_mean"]) for r in by_node] == [
        (f"node-{n:02d}", per_node[n]) for n in reversed(range(NODES))]  # fmt: skip
    assert by_node[0]["pods"] == PODS
    by_ns = ranking(str(fleet), "--by", "namespace")
    ns0 = max(sum(occupancy_of(n, p) for p in range(PODS) if p % 3 == 0) for n in range(NODES))
    assert by_ns[0]["key"] == "ns-0" and by_ns[0]["occupancy_max"] == ns0
    assert by_ns[0]["nodes"] == NODES


def test_progress_line_while_scanning(fleet: Path) -> None:
    result = run(str(fleet), "--progress")
    assert result.exit_code == 0
    assert f"scanning: {NODES * HOURS}/{NODES * HOURS} files" in result.stderr


@pytest.mark.slow
def test_the_same_ranking_from_s3(fleet: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from tests.s3_server import MotoServer

    moto = MotoServer(tmp_path / "moto.log")
    try:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        bucket = moto.new_bucket()
        s3 = moto.client()
        for path in sorted(fleet.rglob("*.parquet")):
            s3.put_object(Bucket=bucket, Key=f"occ/{path.relative_to(fleet)}",
                          Body=path.read_bytes())  # fmt: skip
        local = ranking(str(fleet), "--node", "node-02")
        remote = ranking(f"s3://{bucket}/occ", "--node", "node-02", "--s3-endpoint", moto.endpoint)
        assert remote == local and len(remote) == PODS
        missing = run(f"s3://{bucket}/nothing", "--s3-endpoint", moto.endpoint)
        assert missing.exit_code == 1
        assert missing.stderr == f"error: s3://{bucket}/nothing: no such bucket or prefix\n"
    finally:
        moto.stop()


def test_live_output_includes_the_durable_rows_of_the_file_in_progress(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    ids = Ids()
    sink.recover(0.0)
    sink.add(ids.batch(30), 0.0)
    sink.rotate(1.0)  # one finished file
    sink.add(ids.batch(20), 2.0)
    sink.on_timer(20.0)  # flushed (journalled, fsync'd) but the file is still in progress
    sink.add(ids.batch(5), 21.0)  # buffered only: not durable, not reported
    hidden = sorted(os.listdir(tmp_path))
    result = run(str(tmp_path), "--top", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    assert sum(r["samples"] for r in json.loads(result.stdout)) == 50
    assert "50 rows from 1 of 1 file(s), including 20 rows from the file in progress" in (
        result.stderr)  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == hidden  # nothing created, renamed or removed
    sink.add(ids.batch(5), 22.0)  # the writer carries on undisturbed
    sink.close(30.0)
    again = ranking(str(tmp_path), "--top", "0")
    assert sum(r["samples"] for r in again) == ids.next == 60


def test_plot_of_a_fleet_with_gaps_and_l3_line(fleet: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "occ.png"
    result = run(str(fleet), "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert L3_BYTES > 0


def test_a_pause_in_the_samples_is_a_gap_not_a_slope() -> None:
    ts = [0, 10, 20, 30, 100, 110]
    xs, ys = _with_gaps([t * 10**9 for t in ts], [1.0, 1.0, 1.0, 1.0, 5.0, 5.0])
    assert len(xs) == 7 and math.isnan(ys[4]) and ys[5] == 5.0
    _, steady = _with_gaps([t * 10**9 for t in [0, 10, 20, 31]], [1.0] * 4)
    assert not any(math.isnan(y) for y in steady)


def test_pods_with_the_same_name_get_distinct_labels() -> None:
    def pod(uid: str, node: str) -> Ranked:
        return Ranked(uid, "demo", "web", node, 1, 1, 1, 1, 1, 1.0, 1.0, 1.0, None, None, None,
                      0, 1)  # fmt: skip

    labels = _labels([pod("aaaaaaaa-1", "n1"), pod("bbbbbbbb-2", "n1"), pod("cccc", "n2")],
                     multi_node=True)  # fmt: skip
    assert len(set(labels.values())) == 3
    assert labels["aaaaaaaa-1"] == "demo/web (aaaaaaaa) @n1"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(["--plot", "/nonexistent/dir/x.png"], 1, "error: --plot /nonexistent/dir/x.png: directory"),
     (["--since", "yesterday"], 2, "error: --since 'yesterday': expected a time"),
     (["--by", "cluster"], 2, "Invalid value for '--by'")],
)  # fmt: skip
def test_user_errors_are_one_line_with_the_right_exit_code(
    fleet: Path, args: list[str], code: int, message: str
) -> None:
    result = run(str(fleet), *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


def test_missing_path_and_unreadable_file(tmp_path: Path) -> None:
    missing = run(str(tmp_path / "nope"))
    assert missing.exit_code == 1 and missing.stderr.strip() == (
        f"error: {tmp_path / 'nope'}: no such file or directory")  # fmt: skip
    (tmp_path / "bad.parquet").write_text("not parquet")
    bad = run(str(tmp_path))
    assert bad.exit_code == 1 and "not a readable Parquet file" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    for args, message in [
        (["s3://Bad_Bucket/x"], "error: s3://Bad_Bucket/x: not a valid bucket name\n"),
        (["s3://bkt/x", "--s3-endpoint", "ftp://h"],
         "error: --s3-endpoint 'ftp://h': expected http(s)://host[:port]\n"),
        (["s3://bkt/x", str(tmp_path)], "error: give one s3://bucket/prefix, or local paths, "
                                        "not both\n"),
    ]:  # fmt: skip
        result = run(*args)
        assert (result.exit_code, result.stderr) == (1, message)


def test_mbm_rate_skips_first_samples_resets_and_nulls() -> None:
    import pyarrow as pa

    from resctrl_pipeline.report.ranking import with_mbm_rate
    from resctrl_pipeline.report.source import COLUMNS

    s = 10**9
    rows = {  # two pods interleaved; pod b's counter resets, then is null once
        "pod_uid": ["a", "b", "a", "b", "a", "b", "b"],
        "timestamp": [0, 0, s, s, 3 * s, 2 * s, 3 * s],
        "mbm_total_bytes": [100, 5000, 1100, 6000, 4100, 10, None],
    }
    cols = {f.name: rows.get(f.name, [None] * 7) for f in COLUMNS}
    cols["start_timestamp"] = cols["timestamp"]
    cols["llc_occupancy_bytes"] = [1] * 7
    table = with_mbm_rate(pa.table(cols, schema=COLUMNS))
    got = sorted(zip(table.column("pod_uid").to_pylist(), table.column("timestamp").to_pylist(),
                     table.column("mbm_rate").to_pylist(), strict=True))  # fmt: skip
    assert got == [("a", 0, None), ("a", s, 1000.0), ("a", 3 * s, 1500.0),
                   ("b", 0, None), ("b", s, 1000.0), ("b", 2 * s, None), ("b", 3 * s, None)]


def test_files_without_mbm_or_l3_metadata_still_rank_and_plot(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from resctrl_pipeline import schema

    names = schema.column_names(False)  # the nine fixed columns of schema version 1
    n = 20
    stamps = [i * 10**9 for i in range(n)]
    table = pa.table({
        "start_timestamp": stamps, "timestamp": stamps,
        "pod_namespace": ["ns"] * n, "pod_name": ["web"] * n, "pod_uid": ["u1"] * n,
        "resctrl_group": ["/g"] * n, "total_containers": [1] * n, "reconciled_containers": [1] * n,
        "llc_occupancy_bytes": [2**20] * n,
    }).select(list(names))  # fmt: skip
    pq.write_table(table, tmp_path / "old.parquet")
    rows = ranking(str(tmp_path))
    assert [(r["pod"], r["occupancy_mean"], r["mbm_rate_mean"], r["node"]) for r in rows] == [
        ("web", 2**20, None, None)]  # fmt: skip
    pytest.importorskip("matplotlib")
    result = run(str(tmp_path), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
