"""The file series of one writer: the raw node name in the metadata, no open file size.

Cases the mutation run (docs/testing.md) found unchecked by tests/test_sink_parquet.py.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.test_sink_parquet import batch, make_sink, parquet_files


def test_files_name_the_sanitised_node_and_keep_the_raw_one_in_metadata(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, node="rack 7/node.1")
    assert sink.statistics().open_file_bytes == 0  # no file yet
    sink.add(batch(0, 3), 0.0)
    sink.close(1.0)
    (path,) = parquet_files(tmp_path)
    assert Path(path).name.startswith("resctrl-occupancy-rack_7_node.1-")
    assert pq.read_schema(path).metadata[b"node"] == b"rack 7/node.1"
    assert sink.statistics().open_file_bytes == 0  # closed: no file in progress
