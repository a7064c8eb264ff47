"""Occupancy batches to Arrow: file metadata, unknown columns, sizes, the row buffer.

Cases the mutation run (docs/testing.md) found unchecked by tests/test_sink_parquet.py.
"""

from __future__ import annotations

import json

import pytest

from resctrl_pipeline.sink.batch import RowBuffer, file_schema, to_record_batch, unknown_columns
from resctrl_pipeline.sink.errors import BatchRejected
from tests.test_sink_parquet import batch


def test_file_metadata_carries_the_l3_sizes_by_domain() -> None:
    schema = file_schema((), "node-1", "1.2.3", "2026-12-03T22:00:00Z", {1: 32 << 20, 0: 16 << 20})
    meta = schema.metadata
    assert json.loads(meta[b"l3_cache_bytes"]) == {"0": 16 << 20, "1": 32 << 20}
    assert meta[b"node"] == b"node-1" and meta[b"tool_version"] == b"1.2.3"
    unknown = file_schema((), "node-1", "1.2.3", "2026-12-03T22:00:00Z")
    assert unknown.metadata[b"l3_cache_bytes"] == b"{}"


def test_only_columns_the_schema_does_not_know_are_unknown() -> None:
    columns = dict(batch(0, 1).columns)
    columns.update({"label_app": ["web"], "mbm_total_bytes": [1], "future_metric": [1]})
    assert unknown_columns(columns) == {"future_metric"}


def test_a_large_batch_is_not_taken_for_ragged_columns() -> None:
    b = batch(0, 5000)  # beyond the small ints Python keeps as shared objects
    schema = file_schema((), "n", "v", "t")
    rb = to_record_batch(b.columns, schema)
    assert rb.num_rows == 5000
    assert rb.column("llc_occupancy_bytes").to_pylist()[-1] == 4999


@pytest.mark.parametrize("rows", [2, 4])  # shorter or longer than the columns before it
def test_a_column_of_another_length_is_refused(rows: int) -> None:
    columns = dict(batch(0, 3).columns)
    columns["llc_occupancy_bytes"] = list(range(rows))
    with pytest.raises(BatchRejected) as exc:
        to_record_batch(columns, file_schema((), "n", "v", "t"))
    assert exc.value.reason == "ragged_columns"


def test_an_empty_batch_gives_an_empty_record_batch() -> None:
    schema = file_schema(("mbm_total_bytes", "mbm_local_bytes"), "n", "v", "t")
    rb = to_record_batch(batch(0, 0).columns, schema)  # the optional MBM columns absent
    assert rb.num_rows == 0 and rb.schema == schema


def test_row_buffer_counts_and_forgets() -> None:
    buf = RowBuffer()
    assert not buf and (buf.rows, buf.nbytes, buf.oldest_at) == (0, 0, None)
    schema = file_schema((), "n", "v", "t")
    for now, rows in ((5.0, 3), (7.0, 4)):
        buf.append(to_record_batch(batch(0, rows).columns, schema), now)
    assert buf and (buf.rows, buf.oldest_at) == (7, 5.0) and buf.nbytes > 0
    table = buf.table()
    assert table.num_rows == 7 and all(c.num_chunks == 1 for c in table.columns)
    buf.clear()
    assert not buf and (buf.rows, buf.nbytes, buf.oldest_at, buf.batches) == (0, 0, None, [])
