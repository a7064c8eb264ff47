"""An outage of the output: writing failed, and the sink waits to try again.

While an outage lasts the sink accepts no rows (they are dropped and counted, so
memory stays bounded) and retries every ``retry_interval``. The error is logged once
when the outage begins and once more when it ends, never per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from resctrl_pipeline.sink.errors import is_disk_full, write_error_reason

__all__ = ["Outage"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outage:
    """Why writing stopped, when to retry, and what was dropped meanwhile."""

    where: str
    reason: str
    disk_full: bool
    retry_at: float
    retry_interval: float
    batches_dropped: int = 0
    rows_dropped: int = 0

    @classmethod
    def begin(cls, where: str, err: OSError, now: float, retry_interval: float) -> Outage:
        """Start an outage after ``err``; logs the one error line."""
        outage = cls(
            where,
            write_error_reason(err),
            is_disk_full(err),
            now + retry_interval,
            retry_interval,
        )
        what = "disk full or quota reached" if outage.disk_full else "write failed"
        log.error(
            "Output %s: %s (%s). Writing stopped; new batches are dropped until it works "
            "again (retry every %gs); existing files are intact",
            where, what, err, retry_interval,
        )  # fmt: skip
        return outage

    def failed_again(self, err: OSError, now: float) -> None:
        """A retry failed too: schedule the next one (logged at debug only)."""
        self.reason = write_error_reason(err)
        self.disk_full = is_disk_full(err)
        self.retry_at = now + self.retry_interval
        log.debug("Output %s still not writable: %s", self.where, err)

    def due(self, now: float) -> bool:
        """True when the next retry is due."""
        return now >= self.retry_at

    def drop(self, rows: int) -> None:
        """Count a batch dropped during the outage (for the closing log line)."""
        self.batches_dropped += 1
        self.rows_dropped += rows

    def end(self) -> None:
        """Writing works again; logs what the outage cost."""
        log.warning(
            "Output %s is writable again; %d batches (%d rows) were dropped meanwhile",
            self.where, self.batches_dropped, self.rows_dropped,
        )  # fmt: skip
