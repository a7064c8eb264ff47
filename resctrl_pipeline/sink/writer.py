"""The writer actor's core: the shared shell's hooks mapped onto a :class:`ParquetSink`.

* start → :meth:`ParquetSink.recover` (leftovers of a crash become files first);
* ``occupancy`` message → :meth:`ParquetSink.add`;
* the ``sink`` timer → :meth:`ParquetSink.on_timer` (flush and rotation by age,
  retries during an outage);
* SIGUSR1 → :meth:`ParquetSink.rotate`;
* stop (SIGTERM) → :meth:`ParquetSink.close` (drain and finalise).

Readiness flag ``output`` is false during an outage (disk full, ...), with the error
as its reason, so ``/ready`` says why rows are being dropped.
"""

from __future__ import annotations

import logging

from resctrl_pipeline.core import Core, Outputs, Stats, Timer
from resctrl_pipeline.messages import Message, OccupancyBatch
from resctrl_pipeline.sink.parquet import ParquetSink

__all__ = ["WriterCore", "timer_period"]

log = logging.getLogger(__name__)


def timer_period(flush_interval: float) -> float:
    """How often the shell should call the sink's timer.

    The shell's timers are fixed-period, while the sink's deadlines move; a tenth of
    the flush interval (between 50 ms and 1 s) makes a flush at most that late, so a
    ``kill -9`` loses at most ``flush_interval`` plus one period of rows.
    """
    return max(0.05, min(1.0, flush_interval / 10))


class WriterCore(Core):
    """Feeds occupancy batches to ``sink``; all I/O happens inside the sink.

    Args:
        sink: the sink to drive (built from the configuration by the actor module).
        tick: period of the ``sink`` timer in seconds, see :func:`timer_period`.
    """

    name = "writer"

    def __init__(self, sink: ParquetSink, tick: float) -> None:
        self.sink = sink
        self._tick = tick
        self._unexpected = 0

    def timers(self) -> list[Timer]:
        """One timer that lets the sink flush, rotate and retry on time."""
        return [Timer("sink", self._tick)]

    def on_start(self, now: float) -> Outputs:
        """Recover what an earlier run left behind before accepting rows."""
        report = self.sink.recover(now)
        if report.files or report.removed:
            log.info(
                "Start-up recovery: %d files (%d rows) rebuilt, %d leftovers removed",
                len(report.files), report.rows, report.removed,
            )  # fmt: skip
        return []

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        """Add an occupancy batch; anything else is counted and ignored."""
        if edge == "occupancy" and isinstance(msg, OccupancyBatch):
            self.sink.add(msg, now)
        else:
            self._unexpected += 1
            log.debug("writer ignores %s on %s", type(msg).__name__, edge)
        return []

    def on_timer(self, name: str, now: float) -> Outputs:
        """Flush and rotate by age; retry during an outage."""
        self.sink.on_timer(now)
        return []

    def on_signal(self, signame: str, now: float) -> Outputs:
        """SIGUSR1 finalises the current file now."""
        if signame == "SIGUSR1":
            log.info("SIGUSR1: rotating the output file")
            self.sink.rotate(now)
        return []

    def on_stop(self, now: float) -> Outputs:
        """Drain the buffer and finalise the current file."""
        self.sink.close(now)
        return []

    def statistics(self) -> Stats:
        """The sink's counters and gauges, and the ``output`` readiness flag."""
        s = self.sink.statistics()
        counters = s.counters()
        counters["unexpected_messages"] = self._unexpected
        info = {"output": s.last_error} if s.write_blocked else {}
        return Stats(
            counters=counters, gauges=s.gauges(), ready={"output": not s.write_blocked}, info=info
        )
