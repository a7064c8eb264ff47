"""Rate-limited accounting of dropped messages, one line per edge at most once a second.

Pure: the caller passes the monotonic time. Counters are cumulative for metrics;
the pending count is what the next log line reports.
"""

from __future__ import annotations

__all__ = ["DropLog"]


class DropLog:
    """Counts drops per edge and says when a log line is due.

    ``record(edge, now)`` counts one drop. ``due(now)`` returns ``(edge, n)`` for each
    edge with pending drops whose previous line is at least ``period`` seconds old,
    and resets the pending count of those edges.
    """

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self.total: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._last_line: dict[str, float] = {}

    def record(self, edge: str, now: float, n: int = 1) -> None:
        """Count ``n`` dropped messages on ``edge``."""
        self.total[edge] = self.total.get(edge, 0) + n
        self._pending[edge] = self._pending.get(edge, 0) + n
        self._last_line.setdefault(edge, now - self.period)

    def due(self, now: float) -> list[tuple[str, int]]:
        """Edges whose drop line should be logged now, with their pending counts."""
        lines = []
        for edge, n in self._pending.items():
            if n and now - self._last_line[edge] >= self.period:
                lines.append((edge, n))
        for edge, _ in lines:
            self._pending[edge] = 0
            self._last_line[edge] = now
        return lines

    def next_due(self) -> float | None:
        """Earliest monotonic time at which a pending line becomes due, if any."""
        times = [self._last_line[e] + self.period for e, n in self._pending.items() if n]
        return min(times) if times else None
