"""The series of files one writer (prefix + node) produces in its directory.

It owns the file in progress and everything that touches the directory: unique
names, re-creating a vanished directory, salvaging a file whose names vanished, and
recovery of leftovers. Methods raise :class:`OSError`; the sink turns that into an
outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import pyarrow as pa

from resctrl_pipeline import __version__
from resctrl_pipeline.sink.batch import file_schema
from resctrl_pipeline.sink.directory import OutputDirectory
from resctrl_pipeline.sink.output_file import OutputFile
from resctrl_pipeline.sink.policy import (
    RotateReason,
    file_name,
    journal_name,
    leftover_pattern,
    partial_name,
    sanitize_node,
)
from resctrl_pipeline.sink.recovery import RecoveryReport, recover
from resctrl_pipeline.sink.statistics import SinkCounters

__all__ = ["FileSeries"]

log = logging.getLogger(__name__)

_MAX_NODE_LABEL = 253
_NAME_ATTEMPTS = 16


def _iso_utc(epoch: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for wall-clock epoch seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class FileSeries:
    """Files ``<prefix><node>-…parquet`` in ``directory``, at most one in progress.

    Args:
        directory: the output directory.
        prefix: a valid ``output.prefix``.
        node: the raw node name (sanitised for names, kept in the metadata).
        compression: Parquet codec.
        journal_compression: IPC codec of journals, or None.
        row_group_rows: the most rows per row group of a recovered file.
        clock: wall clock for names and metadata.
        token: source of the 8 hex digits of a name.
        counters: where files, rows, bytes and recoveries are counted.
        l3_cache_bytes: L3 domain id → bytes, for every file's metadata.
    """

    def __init__(
        self,
        directory: OutputDirectory,
        *,
        prefix: str,
        node: str,
        compression: str,
        journal_compression: str | None,
        row_group_rows: int,
        clock: Callable[[], float],
        token: Callable[[], str],
        counters: SinkCounters,
        l3_cache_bytes: Mapping[int, int] | None = None,
    ) -> None:
        self.dir = directory
        self.current: OutputFile | None = None
        self._prefix = prefix
        self._node = sanitize_node(node)
        self._node_label = node[:_MAX_NODE_LABEL] or self._node
        self._l3_cache_bytes = dict(l3_cache_bytes or {})
        self._leftovers = leftover_pattern(prefix, node)
        self._compression = compression
        self._journal_compression = journal_compression
        self._row_group_rows = row_group_rows
        self._clock = clock
        self._token = token
        self._n = counters
        self._dir_known = False

    @property
    def size(self) -> int:
        """Parquet bytes of the file in progress (0 without one)."""
        return self.current.size if self.current is not None else 0

    def log(self, table: pa.Table, optional: tuple[str, ...]) -> bool:
        """Journal ``table`` into the file in progress, opening one if needed.

        Returns:
            True if a new file was started for these rows.
        """
        file = self.current
        if file is not None and not file.in_place():
            self._salvage(file)
            file = None
        opened = file is None
        if file is None:
            file = self.current = self._open(optional)
        file.log_rows(table)
        return opened

    def write_row_group(self, table: pa.Table) -> None:
        """Write rows just journalled by :meth:`log` as a row group."""
        assert self.current is not None, "log() comes first"
        self.current.write_row_group(table)

    def finish(self, reason: RotateReason) -> None:
        """Finalise the file in progress, if any (no file without rows)."""
        file = self.current
        if file is None:
            return
        if file.in_place():
            size = file.finalise()
            self._n.files_written += 1
            self._n.bytes_written += size
            self._n.rows_written += file.rows
            log.info("Finalised %s: %d rows, %d bytes (%s)", file.name, file.rows, size, reason)
        else:
            self._salvage(file)
        self.current = None
        self._n.rotations[reason] += 1

    def abandon(self) -> None:
        """Drop the file in progress to its journal (recovery finishes it). Never raises."""
        if self.current is not None:
            self.current.abandon()
            self.current = None

    def recover(self, report: RecoveryReport) -> None:
        """Rebuild this writer's leftovers, adding to ``report`` even when failing midway."""
        self._ensure_dir()
        keep: frozenset[str] = frozenset()
        if self.current is not None:
            keep = frozenset({partial_name(self.current.name), journal_name(self.current.name)})
        progress = RecoveryReport()
        try:
            recover(
                self.dir,
                self._leftovers,
                compression=self._compression,
                row_group_rows=self._row_group_rows,
                recovered_at=_iso_utc(self._clock()),
                keep=keep,
                report=progress,
            )
        finally:
            self._n.add_recovery(progress)
            report.files += progress.files
            report.rows += progress.rows
            report.bytes += progress.bytes
            report.damaged_journals += progress.damaged_journals
            report.removed += progress.removed

    def _open(self, optional: tuple[str, ...]) -> OutputFile:
        self._ensure_dir()
        created_at = self._clock()
        for _ in range(_NAME_ATTEMPTS):
            name = file_name(self._prefix, self._node, created_at, self._token())
            if not any(self.dir.exists(n) for n in (name, partial_name(name), journal_name(name))):
                break
        else:
            raise FileExistsError(f"no unused file name after {_NAME_ATTEMPTS} attempts")
        schema = file_schema(optional, self._node_label, __version__, _iso_utc(created_at),
                             self._l3_cache_bytes)  # fmt: skip
        return OutputFile(self.dir, name, schema, self._compression, self._journal_compression)

    def _salvage(self, file: OutputFile) -> None:
        """The open file's names vanished: rebuild it from our descriptor of its journal."""
        self.current = None
        try:
            self._ensure_dir()
            file.salvage()
        except BaseException:
            file.abandon()
            raise
        log.warning(
            "Output file %s vanished while being written (directory removed?); "
            "rebuilding it from the journal this process still holds",
            file.name,
        )
        self.recover(RecoveryReport())

    def _ensure_dir(self) -> None:
        if self.dir.ensure() and self._dir_known:
            self._n.dir_recreated += 1
            log.warning("Output directory %s was missing; re-created it", self.dir.root)
        self._dir_known = True
