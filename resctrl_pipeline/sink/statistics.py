"""The writer's counters and the snapshot of them the actor reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from resctrl_pipeline.sink.recovery import RecoveryReport

__all__ = ["SinkCounters", "SinkStatistics"]

_PLAIN_COUNTERS = (
    "batches_received", "rows_received", "rows_flushed", "rows_written", "files_written",
    "bytes_written", "flushes", "batches_dropped", "rows_dropped", "recovered_files",
    "recovered_rows", "damaged_journals", "leftovers_removed", "dir_recreated",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SinkStatistics:
    """A snapshot of the sink's counters (cumulative) and gauges (current values).

    ``rows_flushed`` rows are durable (in a journal or a file); ``rows_written`` rows
    are in finalised files, recovered ones included. ``write_errors`` counts failed
    write attempts by errno label (``enospc``, ``edquot``, ``eio``, ...), retries
    included; ``*_dropped`` count data discarded because the output was blocked (or
    still buffered at close); ``rejected_batches`` count malformed batches by reason;
    ``rotations`` count finalised files by :class:`~.policy.RotateReason`.
    """

    batches_received: int
    rows_received: int
    rows_flushed: int
    rows_written: int
    files_written: int
    bytes_written: int
    flushes: int
    batches_dropped: int
    rows_dropped: int
    recovered_files: int
    recovered_rows: int
    damaged_journals: int
    leftovers_removed: int
    dir_recreated: int
    rotations: Mapping[str, int]
    write_errors: Mapping[str, int]
    rejected_batches: Mapping[str, int]
    disk_full: int
    write_blocked: int
    buffered_rows: int
    buffered_bytes: int
    open_file_bytes: int
    last_error: str

    def counters(self) -> dict[str, float]:
        """Flat cumulative counters for ``ActorStats``; labelled ones as ``name_label``.

        E.g. ``write_errors_enospc``, ``rotations_size``, ``rejected_batches_bad_value``.
        """
        flat: dict[str, float] = {name: getattr(self, name) for name in _PLAIN_COUNTERS}
        for prefix, labelled in (
            ("rotations", self.rotations),
            ("write_errors", self.write_errors),
            ("rejected_batches", self.rejected_batches),
        ):
            for label, n in labelled.items():
                flat[f"{prefix}_{label}"] = n
        return flat

    def gauges(self) -> dict[str, float]:
        """Current values for ``ActorStats``."""
        return {
            "disk_full": self.disk_full,
            "write_blocked": self.write_blocked,
            "buffered_rows": self.buffered_rows,
            "buffered_bytes": self.buffered_bytes,
            "open_file_bytes": self.open_file_bytes,
        }


@dataclass(slots=True)
class SinkCounters:
    """The mutable cumulative counters behind :class:`SinkStatistics`."""

    batches_received: int = 0
    rows_received: int = 0
    rows_flushed: int = 0
    rows_written: int = 0
    files_written: int = 0
    bytes_written: int = 0
    flushes: int = 0
    batches_dropped: int = 0
    rows_dropped: int = 0
    recovered_files: int = 0
    recovered_rows: int = 0
    damaged_journals: int = 0
    leftovers_removed: int = 0
    dir_recreated: int = 0
    rotations: Counter[str] = field(default_factory=Counter)
    write_errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    def add_recovery(self, report: RecoveryReport) -> None:
        """Count what one recovery pass did (its files are written files too)."""
        self.recovered_files += len(report.files)
        self.recovered_rows += report.rows
        self.files_written += len(report.files)
        self.rows_written += report.rows
        self.bytes_written += report.bytes
        self.damaged_journals += report.damaged_journals
        self.leftovers_removed += report.removed

    def snapshot(
        self,
        *,
        disk_full: bool,
        write_blocked: bool,
        buffered_rows: int,
        buffered_bytes: int,
        open_file_bytes: int,
        last_error: str,
    ) -> SinkStatistics:
        """The counters plus the sink's current gauges, frozen."""
        plain = {name: getattr(self, name) for name in _PLAIN_COUNTERS}
        return SinkStatistics(
            **plain,
            rotations={str(k): v for k, v in self.rotations.items()},
            write_errors=dict(self.write_errors),
            rejected_batches=dict(self.rejected),
            disk_full=int(disk_full),
            write_blocked=int(write_blocked),
            buffered_rows=buffered_rows,
            buffered_bytes=buffered_bytes,
            open_file_bytes=open_file_bytes,
            last_error=last_error,
        )
