"""Failures of a core's hooks: counted, logged sparingly, and when to give up.

The actor shell calls a core's hooks (:mod:`resctrl_pipeline.core`) for every message
and timer. One input that trips a bug must not end the process: the shell drops that
input, reports the failure here and carries on. Only a hook that keeps failing, call
after call, means the core is broken beyond what one input explains; then the actor
ends and the supervisor starts a fresh one.

Pure bookkeeping plus logging: the caller passes the monotonic time.
"""

from __future__ import annotations

import logging

__all__ = ["HookFaults"]

log = logging.getLogger("resctrl_pipeline.actor")


class HookFaults:
    """Counts hook failures per hook and consecutive failures per hook and input.

    Args:
        max_consecutive: failures in a row of one hook on one input (an edge, a timer
            name) that end the actor; a success of that hook on that input resets it.
        log_period: seconds between log lines per hook after the first one, which
            carries the traceback; the failures in between are summed into the next.
    """

    def __init__(self, max_consecutive: int, log_period: float = 10.0) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be at least 1, not {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.log_period = log_period
        #: Failures per hook since start (``hook_errors_<hook>`` in the heartbeat).
        self.total: dict[str, int] = {}
        self._consecutive: dict[tuple[str, str], int] = {}
        self._unlogged: dict[str, int] = {}
        self._last_line: dict[str, float] = {}

    def failed(self, hook: str, where: str, err: BaseException, now: float) -> bool:
        """Account one failure of ``hook`` on input ``where``; log it if due.

        Returns:
            True when this was the ``max_consecutive``-th failure in a row there: the
            caller should end the actor.
        """
        self.total[hook] = self.total.get(hook, 0) + 1
        key = (hook, where)
        run = self._consecutive[key] = self._consecutive.get(key, 0) + 1
        give_up = run >= self.max_consecutive
        last = self._last_line.get(hook)
        if last is None:
            self._last_line[hook] = now
            log.error("core hook %s(%s) failed; input dropped, outputs re-sent in full",
                      hook, where, exc_info=err)  # fmt: skip
        elif give_up or now - last >= self.log_period:
            n = self._unlogged.pop(hook, 0) + 1
            self._last_line[hook] = now
            log.error("core hook %s(%s) failed %d times since the last line; last: %s: %s",
                      hook, where, n, type(err).__name__, err)  # fmt: skip
        else:
            self._unlogged[hook] = self._unlogged.get(hook, 0) + 1
        if give_up:
            log.error("core hook %s(%s) failed %d times in a row: ending the actor for a "
                      "clean restart", hook, where, run)  # fmt: skip
        return give_up

    def succeeded(self, hook: str, where: str) -> None:
        """A call of ``hook`` on ``where`` went through: its failure run is over."""
        if self._consecutive:
            self._consecutive.pop((hook, where), None)

    def counters(self) -> dict[str, float]:
        """``hook_errors_<hook>`` for every hook that ever failed."""
        return {f"hook_errors_{hook}": float(n) for hook, n in self.total.items()}
