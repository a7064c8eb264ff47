"""ParquetSink: occupancy batches in, complete Parquet files out (the writer's core).

Synchronous and clock-free: every method takes ``now`` (monotonic seconds) and does
its I/O before returning; the writer actor calls it from its poll loop. Wall-clock
time (file names, ``created_at``) comes from the injected ``clock``.

Data path::

    add(batch) ─▶ Arrow record batch ─▶ buffer ─(flush policy)─▶ journal (fsync)
                                                            └──▶ row group of .F.partial
    rotation policy / rotate() / close() ─▶ footer, fsync, rename to F, drop journal

Any :class:`OSError` while writing (ENOSPC, EDQUOT, EIO, ...) starts an
:class:`~.outage.Outage`: the file in progress is abandoned (its journal keeps every
flushed row), batches arriving meanwhile are dropped and counted, and every
``retry_interval`` the sink tries again — recover the abandoned journal into its file,
then flush what it still buffers. The first success ends the outage.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping

import pyarrow as pa

from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.messages import OccupancyBatch
from resctrl_pipeline.schema import NODE_COLUMN, arrow_schema, optional_names
from resctrl_pipeline.sink.batch import RowBuffer, optional_in, to_record_batch, unknown_columns
from resctrl_pipeline.sink.directory import OutputDirectory
from resctrl_pipeline.sink.errors import BatchRejected, SinkClosed, write_error_reason
from resctrl_pipeline.sink.outage import Outage
from resctrl_pipeline.sink.policy import (
    FLUSH_ROWS,
    FlushPolicy,
    RotateReason,
    RotationPolicy,
    check_prefix,
)
from resctrl_pipeline.sink.recovery import RecoveryReport
from resctrl_pipeline.sink.series import FileSeries
from resctrl_pipeline.sink.statistics import SinkCounters, SinkStatistics

__all__ = ["ParquetSink"]

log = logging.getLogger(__name__)


def _random_token() -> str:
    return secrets.token_hex(4)


def _check_codec(key: str, codec: str | None) -> None:
    """None and ``none`` mean uncompressed; any other codec must be built into pyarrow."""
    if codec is not None and codec.lower() != "none" and not pa.Codec.is_available(codec):
        raise ConfigError(key, codec, "codec not available in this pyarrow build")


class ParquetSink:
    """Writes occupancy batches to Parquet files in one local directory.

    Call :meth:`recover` once before the first :meth:`add`, :meth:`on_timer` whenever
    :meth:`next_deadline` passes, :meth:`rotate` on SIGUSR1 and :meth:`close` on stop.
    No method raises on I/O errors: they start an outage (module docstring) that
    shows in :meth:`statistics`. Not thread-safe.

    A file's columns are fixed when its first row arrives: the nine fixed columns,
    plus the MBM columns if that batch has any. A later batch without MBM columns
    gets nulls there; a batch with MBM columns arriving for a file without them
    finalises that file first (rotation reason ``schema``), so no value is lost.

    Args:
        output_dir: the directory for the files; created if missing.
        prefix: file name prefix (``output.prefix``).
        node: node name; untrusted, sanitised for the file name; also the ``node``
            column of every row (unless the batch brings its own).
        compression: Parquet codec (``output.compression``; ``none`` allowed).
        flush_interval: the most seconds a row stays buffered (``output.flush_interval``),
            hence the most a ``kill -9`` loses.
        max_file_bytes: finalise a file once it reaches this size (``output.max_file_bytes``).
        rotate_interval: finalise a file this long after its first row
            (``output.rotate_interval``).
        clock: wall clock (epoch seconds) for file names and metadata; injectable so
            tests control names.
        flush_rows: flush once this many rows are buffered (also the row-group size).
        flush_bytes: flush once this many Arrow bytes are buffered.
        retry_interval: seconds between attempts to write again during an outage.
        journal_compression: IPC codec of the crash journal, or None.
        token: source of the 8 hex digits in file names; injectable for tests.
        l3_cache_bytes: L3 domain id → bytes, in every file's metadata.

    Raises:
        ConfigError: an argument is out of range or the prefix is invalid.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        prefix: str = "resctrl-occupancy-",
        node: str = "",
        *,
        compression: str = "zstd",
        flush_interval: float = 10.0,
        max_file_bytes: int = 256 * 1024 * 1024,
        rotate_interval: float = 3600.0,
        clock: Callable[[], float] = time.time,
        flush_rows: int = FLUSH_ROWS,
        flush_bytes: int = 32 * 1024 * 1024,
        retry_interval: float = 5.0,
        journal_compression: str | None = "zstd",
        token: Callable[[], str] = _random_token,
        l3_cache_bytes: Mapping[int, int] | None = None,
    ) -> None:
        _check_codec("output.compression", compression)
        _check_codec("output.journal_compression", journal_compression)
        if not retry_interval > 0:
            raise ConfigError("output.retry_interval", retry_interval, "must be > 0")
        self._flush_policy = FlushPolicy(flush_interval, flush_rows, flush_bytes)
        self._rotation = RotationPolicy(max_file_bytes, rotate_interval)
        self._retry_interval = retry_interval
        self._n = SinkCounters()
        self._files = FileSeries(
            OutputDirectory(output_dir),
            prefix=check_prefix(prefix),
            node=node,
            compression=compression,
            journal_compression=journal_compression,
            row_group_rows=flush_rows,
            clock=clock,
            token=token,
            counters=self._n,
            l3_cache_bytes=l3_cache_bytes,
        )
        #: Every row gets the node's name (schema.NODE_COLUMN) as the sink writes it.
        self._node = node
        # Schemas without metadata, per optional column set; buffered batches use them.
        self._plain: dict[tuple[str, ...], pa.Schema] = {}
        self._buffer = RowBuffer()
        #: When the first row of the current file (open or still buffered) arrived.
        self._file_started_at: float | None = None
        #: Optional columns of the current file (open or buffered); None without one.
        self._optional: tuple[str, ...] | None = None
        self._outage: Outage | None = None
        self._last_error = ""
        self._closed = False
        # Each distinct problem is logged once at warning level, then at debug.
        self._warned_reasons: set[str] = set()
        self._warned_columns: set[str] = set()

    # --- public API ---------------------------------------------------------------------

    def recover(self, now: float) -> RecoveryReport:
        """Turn leftovers of an earlier run into complete files (call once, first).

        Creates the output directory if needed. A failure (e.g. disk full) starts an
        outage; the retries finish the job later.

        Returns:
            What was recovered before any failure.
        """
        self._check_open()
        report = RecoveryReport()
        try:
            self._files.recover(report)
        except OSError as err:
            self._fail(err, now)
        return report

    def add(self, batch: OccupancyBatch, now: float) -> None:
        """Buffer one batch; flush and rotate if a policy says so.

        A malformed batch is counted by reason and skipped. During an outage the
        batch is dropped and counted.

        Raises:
            SinkClosed: after :meth:`close`.
        """
        self._check_open()
        rows = _row_count(batch)
        self._n.batches_received += 1
        self._n.rows_received += rows
        if self._outage is not None and self._outage.due(now):
            self._resume(now)
        if self._outage is not None:
            self._drop(rows)
            return
        columns = batch.columns
        if self._node and isinstance(columns, Mapping) and NODE_COLUMN not in columns:
            columns = {**columns, NODE_COLUMN: [self._node] * rows}
        optional = optional_names((*(self._optional or ()), *optional_in(columns)))
        plain = self._plain.get(optional)
        if plain is None:
            plain = self._plain[optional] = arrow_schema(optional)
        try:
            record = to_record_batch(columns, plain)
        except BatchRejected as err:
            self._reject(err)
            return
        if record.num_rows == 0:
            return
        self._warn_unknown(columns)
        if self._optional is not None and optional != self._optional:
            # New columns appeared: they start a new file (a file has one schema).
            self._guarded(lambda: self._finish(RotateReason.SCHEMA), now)
            if self._outage is not None:
                self._drop(rows)
                return
        self._optional = optional
        self._buffer.append(record, now)
        if self._file_started_at is None:
            self._file_started_at = now
        self._service(now)

    def on_timer(self, now: float) -> None:
        """Flush and rotate by age; retry writing during an outage."""
        if self._closed:
            return
        if self._outage is not None:
            if not self._outage.due(now):
                return
            self._resume(now)
            if self._outage is not None:
                return
        self._service(now)

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`on_timer` has work; None if idle."""
        if self._closed:
            return None
        if self._outage is not None:
            return self._outage.retry_at
        deadlines = (
            self._flush_policy.deadline(self._buffer.oldest_at),
            self._rotation.deadline(self._file_started_at),
        )
        return min((d for d in deadlines if d is not None), default=None)

    def rotate(self, now: float) -> None:
        """Finalise the current file now (SIGUSR1). Without rows, nothing happens.

        During an outage, the interrupted file is finalised by recovery as soon as
        writing works again, which is the rotation asked for.
        """
        self._check_open()
        if self._outage is None:
            self._guarded(lambda: self._finish(RotateReason.REQUEST), now)

    def close(self, now: float) -> None:
        """Flush and finalise the current file (SIGTERM). Idempotent.

        If the output still fails after one last attempt, the buffered rows are lost
        (counted as dropped) and the abandoned journal waits for the next start.
        """
        if self._closed:
            return
        if self._outage is not None:
            self._resume(now)
        if self._outage is None:
            self._guarded(lambda: self._finish(RotateReason.CLOSE), now)
        if self._buffer:
            log.error(
                "Closing with %d buffered rows that could not be written (%s); they are lost",
                self._buffer.rows,
                self._last_error,
            )
            self._n.batches_dropped += len(self._buffer.batches)
            self._n.rows_dropped += self._buffer.rows
            self._buffer.clear()
        self._closed = True

    @property
    def files_written(self) -> int:
        """Files finalised since start (cheap: no statistics snapshot)."""
        return self._n.files_written

    def statistics(self) -> SinkStatistics:
        """Counters and gauges for the heartbeat."""
        return self._n.snapshot(
            disk_full=self._outage is not None and self._outage.disk_full,
            write_blocked=self._outage is not None,
            buffered_rows=self._buffer.rows,
            buffered_bytes=self._buffer.nbytes,
            open_file_bytes=self._files.size,
            last_error=self._last_error,
        )

    # --- writing (these raise OSError; public methods turn it into an outage) -----------

    def _service(self, now: float) -> None:
        def step() -> None:
            buf = self._buffer
            if self._flush_policy.reason(buf.rows, buf.nbytes, buf.oldest_at, now):
                self._flush()
            reason = self._rotation.reason(self._files.size, self._file_started_at, now)
            if reason is not None:
                self._finish(reason)

        self._guarded(step, now)

    def _guarded(self, action: Callable[[], None], now: float) -> None:
        try:
            action()
        except OSError as err:
            self._fail(err, now)

    def _flush(self) -> None:
        """Write the buffer as one row group; rows stay buffered until journalled."""
        buf = self._buffer
        if not buf:
            return
        table, oldest = buf.table(), buf.oldest_at
        if self._files.log(table, self._optional or ()):
            self._file_started_at = oldest
        self._n.rows_flushed += buf.rows
        self._n.flushes += 1
        buf.clear()
        self._files.write_row_group(table)

    def _finish(self, reason: RotateReason) -> None:
        """Flush, then finalise the current file if it has rows."""
        self._flush()
        self._files.finish(reason)
        self._file_started_at = None
        self._optional = None

    # --- outages ------------------------------------------------------------------------

    def _fail(self, err: OSError, now: float) -> None:
        """Start or extend an outage; the open file is abandoned to its journal."""
        self._n.write_errors[write_error_reason(err)] += 1
        self._last_error = f"{write_error_reason(err)}: {err}"
        self._files.abandon()
        # Rows still buffered start the next file; the abandoned one is recovery's.
        self._file_started_at = self._buffer.oldest_at
        if not self._buffer:
            self._optional = None
        if self._outage is None:
            self._outage = Outage.begin(str(self._files.dir.root), err, now, self._retry_interval)
        else:
            self._outage.failed_again(err, now)

    def _resume(self, now: float) -> None:
        try:
            self._files.recover(RecoveryReport())
            self._flush()
        except OSError as err:
            self._fail(err, now)
            return
        if self._outage is not None:
            self._outage.end()
            self._outage = None

    def _drop(self, rows: int) -> None:
        self._n.batches_dropped += 1
        self._n.rows_dropped += rows
        if self._outage is not None:
            self._outage.drop(rows)

    # --- bookkeeping --------------------------------------------------------------------

    def _reject(self, err: BatchRejected) -> None:
        self._n.rejected[err.reason] += 1
        level = logging.DEBUG if err.reason in self._warned_reasons else logging.WARNING
        self._warned_reasons.add(err.reason)
        log.log(level, "Skipping malformed occupancy batch: %s", err)

    def _warn_unknown(self, columns: Mapping[str, object]) -> None:
        for name in sorted(unknown_columns(columns) - self._warned_columns):
            self._warned_columns.add(name)
            log.warning("Ignoring unknown occupancy column %r", name)

    def _check_open(self) -> None:
        if self._closed:
            raise SinkClosed("the sink is closed")


def _row_count(batch: OccupancyBatch) -> int:
    # The codec hands over whatever arrived; a malformed batch is rejected later.
    try:
        return batch.num_rows
    except (TypeError, AttributeError):
        return 0
