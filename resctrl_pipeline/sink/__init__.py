"""The writer's core: occupancy batches → durable, atomically published Parquet files.

* :mod:`.policy` — when to flush and rotate, file names (pure);
* :mod:`.batch` — columnar batches → Arrow record batches of the output schema;
* :mod:`.journal` — the crash journal (Arrow IPC stream, fsync'd per flush);
* :mod:`.output_file` — one file in progress: journal + hidden partial → publish;
* :mod:`.series` — the files of one writer: naming, the file in progress, salvage;
* :mod:`.recovery` — start-up repair of what a crash left behind;
* :mod:`.directory` — the output directory, atomic rename, directory fsync;
* :mod:`.outage` — what happens while writing fails (disk full, ...);
* :mod:`.statistics` — counters and the snapshot the actor reports;
* :mod:`.parquet` — :class:`ParquetSink`, which ties them together.

The writer actor's core, which adds the uploader of :mod:`resctrl_pipeline.storage`,
is :mod:`resctrl_pipeline.writer`: the sink does not know object storage (storage
depends on the sink's file-name policy, never the other way round).

Contract for users of the output: ``docs/output.md``.
"""

from resctrl_pipeline.sink.errors import BatchRejected, SinkClosed, SinkError
from resctrl_pipeline.sink.parquet import ParquetSink
from resctrl_pipeline.sink.policy import (
    FlushPolicy,
    FlushReason,
    RotateReason,
    RotationPolicy,
    file_name,
    sanitize_node,
)
from resctrl_pipeline.sink.recovery import RecoveryReport
from resctrl_pipeline.sink.statistics import SinkStatistics

__all__ = [
    "BatchRejected",
    "FlushPolicy",
    "FlushReason",
    "ParquetSink",
    "RecoveryReport",
    "RotateReason",
    "RotationPolicy",
    "SinkClosed",
    "SinkError",
    "SinkStatistics",
    "file_name",
    "sanitize_node",
]
