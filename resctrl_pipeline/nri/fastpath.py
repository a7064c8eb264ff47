"""The StartContainer fast path under a real deadline.

At StartContainer the container's init process exists but has not run yet: putting
it into the pod's monitoring group *before answering* attributes everything the
container ever forks. The runtime waits for the answer (containerd: 2 s, then it drops
the plugin), and a resctrl ``mkdir`` or ``tasks`` write can hang for seconds (a kernel
busy freeing RMIDs, a stalled FUSE server). So the placement runs in a worker thread
and the caller waits for it at most ``budget`` seconds:

* done in time: counted ``ok``/``exited``/``failed``;
* still running when the budget ends: counted ``over_budget``; the answer goes back
  without it and the placement finishes (or hangs) on its own;
* while a late placement is still running, or for ``cooldown`` seconds after one, the
  fast path is off: calls are skipped (``suspended``) and answer at once; the
  reconciler places those containers on its next pass. It switches itself back on
  after that. Both transitions are logged, once each.

A thread of our own rather than ``concurrent.futures``: an executor's worker stuck in
a hung syscall keeps the interpreter from exiting (it joins its workers at exit),
whereas a daemon thread does not; and one worker is all the fast path needs, since a
second placement is never started while one is late.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["FastPath", "FastPathPolicy", "PlaceInitPid"]

_log = logging.getLogger("resctrl_pipeline.nri.listener")

PlaceInitPid = Callable[[str, int], object]
"""``place_init_pid(pod_uid, pid)``: put ``pid`` into the pod's group (idempotent).
It may return False to say the process had already exited; any other result is
ignored."""

_WARN_EVERY = 60.0  # seconds between warnings about fast-path failures


class FastPathPolicy:
    """When the fast path runs. Pure: the time is passed in.

    Args:
        budget: seconds the caller waits for one placement.
        cooldown: seconds the fast path stays off after a placement overran its
            budget (counted from the moment that placement finished).
    """

    def __init__(self, budget: float = 0.05, cooldown: float = 10.0) -> None:
        self.budget = budget
        self.cooldown = cooldown
        self.on = True
        self._off_until = float("-inf")

    def allowed(self, now: float, late_running: bool) -> bool:
        """Whether a placement may start at ``now``; switches back on when due.

        Args:
            late_running: a placement that overran its budget is still running.
        """
        if self.on:
            return True
        if late_running or now < self._off_until:
            return False
        self.on = True
        _log.warning("StartContainer fast path back on: resctrl answers again")
        return True

    def overran(self, now: float) -> None:
        """A placement was still running when its budget ended: switch off."""
        self._off_until = now + self.cooldown
        if self.on:
            self.on = False
            _log.warning(
                "StartContainer fast path off: resctrl did not answer within %.0f ms; "
                "new containers are placed by the reconciler until it recovers",
                self.budget * 1000,
            )

    def late_done(self, now: float) -> None:
        """The late placement finished at ``now``: the cooldown starts now."""
        self._off_until = now + self.cooldown


class _Job:
    __slots__ = ("done", "error", "pid", "pod_uid", "result")

    def __init__(self, pod_uid: str, pid: int) -> None:
        self.pod_uid = pod_uid
        self.pid = pid
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None


class FastPath:
    """Runs ``place`` for each started container, never longer than the budget.

    Not thread-safe: one caller (the listener's loop); the worker thread only runs
    ``place`` and fills in its job.

    Args:
        place: the placement (production: :func:`resctrl.groups.place_init_pid`).
        policy: budget and on/off switch.
        clock: monotonic seconds (the budget itself is waited for in real time).

    Attributes:
        counters: ``fast_path.{ok,exited,failed,over_budget,late_done,suspended}``.
    """

    def __init__(
        self,
        place: PlaceInitPid,
        policy: FastPathPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._place = place
        self.policy = policy or FastPathPolicy()
        self._clock = clock
        self.counters: Counter[str] = Counter()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._late: _Job | None = None
        self._warned_at = float("-inf")
        self._seconds: list[float] = []

    def take_seconds(self) -> list[float]:
        """Time each placement added to its answer since the last call, in seconds."""
        out, self._seconds = self._seconds, []
        return out

    def poll(self) -> None:
        """Account a late placement that finished, and switch back on when due
        (called with the heartbeat, so recovery shows without a container start)."""
        now = self._clock()
        self.policy.allowed(now, self._late_running(now))

    def run(self, pod_uid: str, pid: int) -> None:
        """Place ``pid`` of pod ``pod_uid`` within the budget, or skip it (counted)."""
        start = self._clock()
        if not self.policy.allowed(start, self._late_running(start)):
            self.counters["fast_path.suspended"] += 1
            return
        job = _Job(pod_uid, pid)
        self._jobs.put(job)
        self._ensure_worker()
        finished = job.done.wait(self.policy.budget)
        now = self._clock()
        self._seconds.append(now - start)
        if not finished:
            self.counters["fast_path.over_budget"] += 1
            self._late = job
            self.policy.overran(now)
            return
        self._account(job, start)

    def _late_running(self, now: float) -> bool:
        late = self._late
        if late is None:
            return False
        if not late.done.is_set():
            return True
        self._late = None
        self.counters["fast_path.late_done"] += 1
        self.policy.late_done(now)
        self._account(late, now)
        return False

    def _account(self, job: _Job, now: float) -> None:
        if job.error is None:
            self.counters["fast_path.exited" if job.result is False else "fast_path.ok"] += 1
            return
        # Never propagated: the reconciler owns retries and repairs. Logged at most
        # once a minute at warning level (a node without resctrl fails every time).
        self.counters["fast_path.failed"] += 1
        level = logging.DEBUG if now - self._warned_at < _WARN_EVERY else logging.WARNING
        if level == logging.WARNING:
            self._warned_at = now
        # The uid is untrusted: repr() and a cut keep newlines (forged log lines) and
        # 10 kB uids out of the log.
        _log.log(level, "fast path: placing pid %d of pod %.80r failed: %s",
                 job.pid, job.pod_uid, job.error)  # fmt: skip

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(
                target=self._work, name="nri-fast-path", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.result = self._place(job.pod_uid, job.pid)
            except Exception as err:  # reported by the caller's thread
                job.error = err
            finally:
                job.done.set()
