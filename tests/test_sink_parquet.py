"""ParquetSink with a fake clock: round trip, schema, rotation, visibility, bad input.

Every row written by these tests carries a unique id in ``llc_occupancy_bytes``, so
"rows in = rows out" is checked as equality of id multisets (no loss, no duplicate).
The helpers here are shared by the other ``test_sink_*`` modules.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resctrl_pipeline import __version__
from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.schema import SCHEMA_VERSION
from resctrl_pipeline.sink import ParquetSink, SinkClosed
from tests import golden_schema
from tests.support import fuzz_examples

WALL0 = 1_700_000_000.0


# --- helpers (shared by the other test_sink_* modules) ---------------------------------


def batch(first_id: int, rows: int, *, mbm: bool = False, tick: int = 0) -> OccupancyBatch:
    """``rows`` rows whose ``llc_occupancy_bytes`` are ids ``first_id`` onwards."""
    uids = [f"0000{i:04d}-1111-2222-3333-444455556666" for i in range(rows)]
    columns: dict[str, list[Any]] = {
        "start_timestamp": [tick * 10**9] * rows,
        "timestamp": [tick * 10**9 + i for i in range(rows)],
        "pod_namespace": ["default" if i % 3 else None for i in range(rows)],
        "pod_name": [f"pod-{i}" if i % 3 else None for i in range(rows)],
        "pod_uid": uids,
        "resctrl_group": [f"/sys/fs/resctrl/mon_groups/pod_{u}" for u in uids],
        "total_containers": [2] * rows,
        "reconciled_containers": [1] * rows,
        "llc_occupancy_bytes": list(range(first_id, first_id + rows)),
    }
    if mbm:
        columns["mbm_total_bytes"] = [i * 7 for i in range(rows)]
        columns["mbm_local_bytes"] = [None] * rows
    return OccupancyBatch(columns)


class Ids:
    """Hands out consecutive row ids and remembers which ones were handed out."""

    def __init__(self) -> None:
        self.next = 0

    def batch(self, rows: int, **kw: Any) -> OccupancyBatch:
        b = batch(self.next, rows, **kw)
        self.next += rows
        return b


def make_sink(out: Path | str, **kw: Any) -> ParquetSink:
    """A sink with a fake wall clock and deterministic tokens (overridable)."""
    counter = iter(range(1 << 32))
    defaults: dict[str, Any] = {
        "node": "node-1",
        "flush_interval": 10.0,
        "clock": lambda: WALL0,
        "token": lambda: f"{next(counter):08x}",
    }
    defaults.update(kw)
    return ParquetSink(out, **defaults)


def parquet_files(out: Path | str) -> list[str]:
    return sorted(glob.glob(os.path.join(out, "*.parquet")))


def hidden(out: Path | str) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.startswith("."))


def ids_in(out: Path | str) -> list[int]:
    """Every row id in every ``*.parquet`` (each file must be complete and non-empty)."""
    ids: list[int] = []
    for path in parquet_files(out):
        table = pq.read_table(path)
        assert table.num_rows > 0, f"empty file {path}"
        ids.extend(table.column("llc_occupancy_bytes").to_pylist())
    return sorted(ids)


def assert_all_readable(out: Path | str) -> None:
    for path in parquet_files(out):
        pq.read_table(path)


# --- round trip -----------------------------------------------------------------------


def test_roundtrip_rows_schema_and_metadata(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, node="worker-7")
    sent = [batch(0, 5), batch(5, 3), batch(8, 4)]
    for i, b in enumerate(sent):
        sink.add(b, float(i))
    sink.close(10.0)

    [path] = parquet_files(tmp_path)
    assert os.path.basename(path) == "resctrl-occupancy-worker-7-20231114T221320Z-00000000.parquet"
    table = pq.read_table(path)
    assert golden_schema.fields(table.schema) == golden_schema.expected(["node"])
    expected = pa.concat_tables(pa.table(b.columns) for b in sent)
    for name in expected.schema.names:
        assert table.column(name).to_pylist() == expected.column(name).to_pylist()
    assert table.column("node").to_pylist() == ["worker-7"] * 12
    meta = pq.read_metadata(path).metadata
    assert meta[b"node"] == b"worker-7"
    assert meta[b"schema_version"] == str(SCHEMA_VERSION).encode()
    assert meta[b"tool_version"] == __version__.encode()
    assert meta[b"created_at"] == b"2023-11-14T22:13:20Z"
    assert meta[b"l3_cache_bytes"] == b"{}"  # not given to this sink
    stats = sink.statistics()
    assert (stats.rows_written, stats.files_written, stats.rotations) == (12, 1, {"close": 1})
    assert stats.bytes_written == os.path.getsize(path)
    assert hidden(tmp_path) == []


def test_mbm_columns_follow_the_fixed_nine(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    sink.add(batch(0, 4, mbm=True), 0.0)
    sink.add(batch(4, 2), 1.0)  # same file: its MBM columns are written as nulls
    sink.close(2.0)
    [path] = parquet_files(tmp_path)
    table = pq.read_table(path)
    assert golden_schema.fields(table.schema) == golden_schema.expected(
        ["mbm_total_bytes", "mbm_local_bytes", "mbm_state"]
    )
    assert table.column("mbm_total_bytes").to_pylist() == [0, 7, 14, 21, None, None]
    assert table.column("mbm_local_bytes").null_count == 6


def test_mbm_batch_after_plain_rows_starts_a_new_file(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    sink.add(batch(0, 3), 0.0)
    sink.add(batch(3, 3, mbm=True), 1.0)
    sink.close(2.0)
    schemas = [pq.read_schema(p).names for p in parquet_files(tmp_path)]
    assert sorted(len(s) for s in schemas) == [10, 13]  # + node; MBM: two counters, mbm_state
    assert ids_in(tmp_path) == list(range(6))
    assert sink.statistics().rotations == {"schema": 1, "close": 1}


# --- rotation -------------------------------------------------------------------------


def test_explicit_rotation_and_no_empty_files(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    sink.rotate(0.0)  # nothing yet: no file
    assert os.listdir(tmp_path) == []
    sink.add(batch(0, 3), 1.0)
    sink.rotate(2.0)
    assert len(parquet_files(tmp_path)) == 1
    sink.rotate(3.0)  # no rows since: still one file
    sink.rotate(4.0)
    assert len(parquet_files(tmp_path)) == 1
    sink.add(batch(3, 2), 5.0)
    sink.rotate(6.0)
    sink.close(7.0)  # nothing left: no third file
    assert len(parquet_files(tmp_path)) == 2
    assert ids_in(tmp_path) == list(range(5))
    assert hidden(tmp_path) == []


def test_rotation_by_size(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, max_file_bytes=6000, flush_rows=40)
    ids = Ids()
    for i in range(60):
        sink.add(ids.batch(10), float(i))
    sink.close(100.0)
    files = parquet_files(tmp_path)
    stats = sink.statistics()
    assert len(files) >= 3
    assert sum(stats.rotations.values()) == len(files)
    assert stats.rotations["size"] >= len(files) - 1
    # A file is finalised once its row groups reach the limit, so only its footer
    # and the last row group can take it past max_file_bytes.
    for path in files:
        md = pq.read_metadata(path)
        groups = [md.row_group(i) for i in range(md.num_row_groups)]
        sizes = [
            sum(g.column(c).total_compressed_size for c in range(g.num_columns)) for g in groups
        ]
        assert 4 + sum(sizes[:-1]) < 6000
    assert ids_in(tmp_path) == list(range(ids.next))


def test_rotation_by_age_counts_from_the_first_row(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, rotate_interval=60.0, flush_interval=5.0)
    sink.on_timer(1000.0)  # idle: nothing happens, nothing to wait for
    assert sink.next_deadline() is None
    sink.add(batch(0, 2), 100.0)
    assert sink.next_deadline() == 105.0  # the flush comes first
    sink.on_timer(105.0)
    assert sink.next_deadline() == 160.0
    sink.add(batch(2, 2), 150.0)
    sink.on_timer(159.99)
    assert parquet_files(tmp_path) == []
    sink.on_timer(160.0)
    assert len(parquet_files(tmp_path)) == 1
    assert ids_in(tmp_path) == [0, 1, 2, 3]
    assert sink.statistics().rotations == {"age": 1}
    assert sink.next_deadline() is None


def test_flush_interval_bounds_how_long_rows_stay_buffered(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, flush_interval=10.0)
    sink.add(batch(0, 1), 0.0)
    sink.add(batch(1, 1), 9.0)
    sink.on_timer(9.99)
    assert sink.statistics().rows_flushed == 0
    sink.on_timer(10.0)
    stats = sink.statistics()
    assert (stats.rows_flushed, stats.buffered_rows, stats.flushes) == (2, 0, 1)
    assert stats.open_file_bytes > 0


# --- nothing partial is ever visible --------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 30), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0.0, 40.0), st.just(False)),
        st.tuples(st.just("rotate"), st.just(0), st.just(False)),
    ),
    max_size=40,
)


@settings(
    max_examples=fuzz_examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
def test_readers_only_ever_see_complete_files(
    ops: list[tuple[str, Any, bool]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("vis")
    sink = make_sink(
        out, flush_interval=5.0, rotate_interval=30.0, flush_rows=50, max_file_bytes=8000
    )
    ids, now = Ids(), 0.0
    for op, arg, mbm in ops:
        if op == "add":
            sink.add(ids.batch(arg, mbm=mbm), now)
        elif op == "advance":
            now += arg
            sink.on_timer(now)
        else:
            sink.rotate(now)
        for name in os.listdir(out):
            assert name.endswith(".parquet") != name.startswith("."), name
        flushed = sink.statistics().rows_flushed
        on_disk = ids_in(out)  # reads every visible file completely
        assert on_disk == sorted(set(on_disk))
        assert len(on_disk) <= flushed
    sink.close(now)
    assert ids_in(out) == list(range(ids.next))
    assert hidden(out) == []


# --- bad input, misuse ----------------------------------------------------------------


def _broken(mutate: Callable[[dict[str, list[Any]]], None]) -> OccupancyBatch:
    columns = dict(batch(0, 3).columns)
    mutate(columns)
    return OccupancyBatch(columns)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: c.pop("pod_uid"), "missing_column"),
        (lambda c: c.__setitem__("timestamp", [1, 2]), "ragged_columns"),
        (lambda c: c.__setitem__("llc_occupancy_bytes", ["x", "y", "z"]), "bad_value"),
        (lambda c: c.__setitem__("total_containers", [1, 2**70, 3]), "bad_value"),
        (lambda c: c.__setitem__("timestamp", [1, None, 3]), "null_value"),
        (lambda c: c.__setitem__("pod_name", "abc"), "not_columnar"),
    ],
)
def test_malformed_batches_are_counted_and_skipped(
    tmp_path: Path, mutate: Callable[[dict[str, list[Any]]], None], reason: str
) -> None:
    sink = make_sink(tmp_path)
    sink.add(_broken(mutate), 0.0)
    sink.add(batch(100, 2), 1.0)
    sink.close(2.0)
    assert sink.statistics().rejected_batches == {reason: 1}
    assert ids_in(tmp_path) == [100, 101]


def test_unknown_columns_are_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(tmp_path)
    for i in range(3):
        b = batch(i * 2, 2)
        sink.add(OccupancyBatch({**b.columns, "future_column": [1, 2]}), float(i))
    sink.close(5.0)
    assert ids_in(tmp_path) == list(range(6))
    assert len([r for r in caplog.records if "future_column" in r.getMessage()]) == 1


def test_closed_sink_refuses_batches_and_close_is_idempotent(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    sink.add(batch(0, 1), 0.0)
    sink.close(1.0)
    sink.close(2.0)
    sink.on_timer(3.0)
    with pytest.raises(SinkClosed):
        sink.add(batch(1, 1), 4.0)
    assert ids_in(tmp_path) == [0]


# --- the output directory disappears --------------------------------------------------


def test_directory_removed_while_a_file_is_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    sink = make_sink(out, flush_interval=1.0)
    sink.recover(0.0)
    sink.add(batch(0, 5), 0.0)
    sink.on_timer(1.0)  # flushed: the rows live in the open file's journal
    shutil.rmtree(out)
    sink.add(batch(5, 5), 2.0)
    sink.on_timer(3.0)  # next flush notices, re-creates the directory and rebuilds
    sink.close(4.0)
    stats = sink.statistics()
    assert stats.dir_recreated == 1
    assert stats.write_blocked == 0
    assert ids_in(out) == list(range(10))  # the rows of the vanished file were salvaged
    assert hidden(out) == []
    assert any("re-created" in r.getMessage() for r in caplog.records)


def test_directory_removed_between_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sink = make_sink(out)
    sink.recover(0.0)
    sink.add(batch(0, 5), 0.0)
    sink.rotate(1.0)
    shutil.rmtree(out)  # takes the finished file with it: that is the operator's call
    sink.add(batch(5, 5), 2.0)
    sink.close(3.0)
    assert sink.statistics().dir_recreated == 1
    assert ids_in(out) == list(range(5, 10))
