"""The writer's counters as ActorStats sees them: flat names, labelled counters, zeros.

Cases the mutation run (docs/testing.md) found unchecked by tests/test_sink_parquet.py:
the flat names are what /metrics and ``resctrl-pipeline status`` show.
"""

from __future__ import annotations

from resctrl_pipeline.sink.recovery import RecoveryReport
from resctrl_pipeline.sink.statistics import SinkCounters

GAUGES = {
    "disk_full": False,
    "write_blocked": False,
    "buffered_rows": 0,
    "buffered_bytes": 0,
    "open_file_bytes": 0,
    "last_error": "",
}


def test_a_fresh_writer_counts_zero_everywhere() -> None:
    stats = SinkCounters().snapshot(**GAUGES)  # type: ignore[arg-type]
    counters = stats.counters()
    assert "rows_received" in counters and "leftovers_removed" in counters
    assert set(counters.values()) == {0}
    assert set(stats.gauges().values()) == {0}


def test_labelled_counters_are_flattened_by_label() -> None:
    n = SinkCounters()
    n.rotations.update({"size": 2, "age": 1})
    n.write_errors["enospc"] += 4
    n.rejected["bad_value"] += 3
    stats = n.snapshot(**{**GAUGES, "disk_full": True, "buffered_rows": 7})  # type: ignore[arg-type]
    counters = stats.counters()
    assert counters["rotations_size"] == 2 and counters["rotations_age"] == 1
    assert counters["write_errors_enospc"] == 4
    assert counters["rejected_batches_bad_value"] == 3
    assert stats.gauges()["disk_full"] == 1 and stats.gauges()["buffered_rows"] == 7


def test_recovered_files_count_as_written_files() -> None:
    n = SinkCounters()
    n.add_recovery(RecoveryReport(["a.parquet", "b.parquet"], rows=10, bytes=900,
                                  damaged_journals=1, removed=2))  # fmt: skip
    counters = n.snapshot(**GAUGES).counters()  # type: ignore[arg-type]
    assert (counters["recovered_files"], counters["recovered_rows"]) == (2, 10)
    assert (counters["files_written"], counters["rows_written"], counters["bytes_written"]) == (
        2,
        10,
        900,
    )
    assert (counters["damaged_journals"], counters["leftovers_removed"]) == (1, 2)
