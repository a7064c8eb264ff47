"""Restart policy: capped exponential backoff and a give-up threshold (pure, fake-clock testable).

After an actor exits unexpectedly it is restarted after ``base * factor**k`` seconds
(capped at ``cap``), where ``k`` counts its recent consecutive failures; an actor that
stayed up for ``stable_after`` seconds starts again from ``base``. More than
``max_restarts`` restarts of one actor within ``window`` seconds means something is
persistently wrong: the supervisor gives up and exits non-zero, so that Kubernetes
restarts the whole pod (and its back-off applies).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["RestartDecision", "RestartPolicy"]


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """Either restart at ``restart_at`` (monotonic seconds) or give up."""

    give_up: bool
    restart_at: float = 0.0
    reason: str = ""


@dataclass
class RestartPolicy:
    """Per-actor restart bookkeeping. Times are monotonic seconds passed in."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    stable_after: float = 60.0
    max_restarts: int = 10
    window: float = 300.0
    _history: dict[str, deque[float]] = field(default_factory=dict)
    _streak: dict[str, int] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)

    def started(self, actor: str, now: float) -> None:
        """Record that ``actor`` was (re)started at ``now``."""
        self._started[actor] = now

    def exited(self, actor: str, now: float) -> RestartDecision:
        """Decide what to do about ``actor`` having exited at ``now``."""
        history = self._history.setdefault(actor, deque())
        while history and now - history[0] > self.window:
            history.popleft()
        if len(history) >= self.max_restarts:
            return RestartDecision(
                give_up=True,
                reason=f"{actor} exited {len(history) + 1} times within {self.window:g}s",
            )
        up_for = now - self._started.get(actor, now)
        streak = 0 if up_for >= self.stable_after else self._streak.get(actor, 0)
        delay = min(self.cap, self.base * self.factor**streak)
        self._streak[actor] = streak + 1
        history.append(now)
        return RestartDecision(give_up=False, restart_at=now + delay)

    def restarts(self, actor: str) -> int:
        """Restarts of ``actor`` still inside the window."""
        return len(self._history.get(actor, ()))
