"""The writer actor's core: the shared shell's hooks mapped onto a :class:`ParquetSink`.

* start → :meth:`ParquetSink.recover` (leftovers of a crash become files first);
* ``occupancy`` message → :meth:`ParquetSink.add`;
* the sink's own deadline (:meth:`ParquetSink.next_deadline`) →
  :meth:`ParquetSink.on_timer` (flush and rotation by age, retries during an outage):
  the writer wakes when the oldest buffered row is due, not on a fixed tick;
* SIGUSR1 → :meth:`ParquetSink.rotate`;
* stop (SIGTERM) → :meth:`ParquetSink.close` (drain and finalise).

With object storage, an :class:`~resctrl_pipeline.storage.Uploader` starts after the
recovery, is woken whenever the sink has finalised a file, and gets its bounded drain
at stop after the sink's last file. Its work happens in its own thread, so no hook
here waits for the network.

Readiness flag ``output`` is false during an outage (disk full, ...), with the error
as its reason, so ``/ready`` says why rows are being dropped. A failing upload does
not change readiness (files wait safely in the spool); ``upload_failing`` and info
``upload`` show it.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from resctrl_pipeline.core import Core, Outputs, Stats
from resctrl_pipeline.messages import Message, OccupancyBatch
from resctrl_pipeline.sink.parquet import ParquetSink
from resctrl_pipeline.storage.uploader import Uploader

__all__ = ["WriterCore"]

log = logging.getLogger(__name__)


class WriterCore(Core):
    """Feeds occupancy batches to ``sink``; all I/O happens inside the sink.

    Args:
        sink: the sink to drive (built from the configuration by the actor module).
        uploader: moves the sink's finalised files to object storage; None for a
            local output directory.
    """

    name = "writer"

    def __init__(self, sink: ParquetSink, uploader: Uploader | None = None) -> None:
        self.sink = sink
        self.uploader = uploader
        self._unexpected = 0
        self._files_seen = 0

    def on_start(self, now: float) -> Outputs:
        """Recover what an earlier run left behind before accepting rows."""
        report = self.sink.recover(now)
        if report.files or report.removed:
            log.info(
                "Start-up recovery: %d files (%d rows) rebuilt, %d leftovers removed",
                len(report.files), report.rows, report.removed,
            )  # fmt: skip
        if self.uploader is not None:
            self.uploader.start()
        return []

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        """Add an occupancy batch; anything else is counted and ignored."""
        if edge == "occupancy" and isinstance(msg, OccupancyBatch):
            self.sink.add(msg, now)
            self._wake_uploader()  # the batch may have rotated the file by size
        else:
            self._unexpected += 1
            log.debug("writer ignores %s on %s", type(msg).__name__, edge)
        return []

    def next_deadline(self) -> float | None:
        """When the sink next has work: a flush, a rotation by age, an outage retry."""
        return self.sink.next_deadline()

    def on_deadline(self, now: float) -> Outputs:
        """Flush and rotate by age; retry during an outage."""
        self.sink.on_timer(now)
        self._wake_uploader()
        return []

    def on_signal(self, signame: str, now: float) -> Outputs:
        """SIGUSR1 finalises the current file now."""
        if signame == "SIGUSR1":
            log.info("SIGUSR1: rotating the output file")
            self.sink.rotate(now)
            self._wake_uploader()
        return []

    def on_stop(self, now: float) -> Outputs:
        """Drain the buffer and finalise the current file, then the uploads (bounded)."""
        self.sink.close(now)
        if self.uploader is not None:
            self.uploader.close()
        return []

    def _wake_uploader(self) -> None:
        """Wake the uploader when a file was finalised since the last call."""
        if self.uploader is None:
            return
        files = self.sink.files_written
        if files != self._files_seen:
            self._files_seen = files
            self.uploader.wake()

    def statistics(self) -> Stats:
        """The sink's (and uploader's) counters and gauges, the ``output`` readiness flag,
        and the Arrow memory pool's name (info ``arrow_memory_pool``)."""
        s = self.sink.statistics()
        counters = s.counters()
        counters["unexpected_messages"] = self._unexpected
        gauges = s.gauges()
        info = {"output": s.last_error} if s.write_blocked else {}
        # Which allocator holds the rows (actors/writer.py picks the C library's).
        info["arrow_memory_pool"] = pa.default_memory_pool().backend_name
        if self.uploader is not None:
            u = self.uploader.statistics()
            counters.update(u.counters())
            gauges.update(u.gauges())
            if u.failing:
                info["upload"] = u.last_error
        return Stats(
            counters=counters, gauges=gauges, ready={"output": not s.write_blocked}, info=info
        )
