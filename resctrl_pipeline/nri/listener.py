"""The nri-listener's event handlers: NRI calls in, pipeline messages out.

:class:`NriListener` is the handler object given to :class:`~.plugin.NriPlugin`. Its
event methods decide the subscription (stub-style, see :mod:`.events`): RUN_POD_SANDBOX,
REMOVE_POD_SANDBOX, START_CONTAINER and REMOVE_CONTAINER. Every call appends the
resulting messages to an outbox that the shell drains; nothing here sends, blocks or
reads a clock except the StartContainer fast path below.

StartContainer fast path: the container's init process exists but has not run yet,
so putting its pid into the pod's monitoring group *before answering* attributes
everything the container ever forks. The injected ``place_init_pid(pod_uid, pid)``
does that; it runs under a time budget because the runtime waits for our answer
(2 s, then it drops the plugin). Its failures are only counted and logged (the
reconciler repairs them), and after repeated overruns the fast path is suspended for
a while rather than risk the runtime's deadline on every container start.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

from resctrl_pipeline.messages import Message
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.state import ListenerState

__all__ = ["FastPathPolicy", "NriListener", "PlaceInitPid"]

_log = logging.getLogger(__name__)

PlaceInitPid = Callable[[str, int], object]
"""``place_init_pid(pod_uid, pid)``: put ``pid`` into the pod's group (idempotent).
It may return False to say the process had already exited; any other result is
ignored."""

_WARN_EVERY = 60.0  # seconds between warnings about fast-path failures


class FastPathPolicy:
    """Budget and circuit breaker of the StartContainer fast path.

    Args:
        budget: seconds one ``place_init_pid`` call may take.
        max_overruns: consecutive calls over budget that suspend the fast path.
        cooldown: seconds the fast path stays suspended after that.
    """

    def __init__(self, budget: float = 0.05, max_overruns: int = 3, cooldown: float = 30.0):
        self.budget = budget
        self.max_overruns = max_overruns
        self.cooldown = cooldown
        self._overruns = 0
        self._suspended_until = float("-inf")

    def allowed(self, now: float) -> bool:
        """Whether the fast path may run at ``now``."""
        return now >= self._suspended_until

    def record(self, now: float, elapsed: float) -> bool:
        """Account one call that took ``elapsed`` seconds; return True if over budget."""
        if elapsed <= self.budget:
            self._overruns = 0
            return False
        self._overruns += 1
        if self._overruns >= self.max_overruns:
            self._suspended_until = now + self.cooldown
            self._overruns = 0
            _log.warning("StartContainer fast path suspended for %.0f s (too slow)", self.cooldown)
        return True


class NriListener:
    """Handlers for the four subscribed events plus Configure and Synchronize.

    Args:
        place_init_pid: the StartContainer fast path, or None to skip it.
        fast_path: its budget policy.
        clock: monotonic seconds; injectable so tests can fake slow calls.

    Attributes:
        state: the pod/container map behind every message.
        counters: ``fast_path.{ok,exited,failed,over_budget,suspended,no_pid}`` plus
            the state's counters.
        fast_path_seconds: durations of recent fast-path calls (bounded).
    """

    def __init__(
        self,
        place_init_pid: PlaceInitPid | None = None,
        fast_path: FastPathPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ListenerState()
        self._place = place_init_pid
        self._policy = fast_path or FastPathPolicy()
        self._clock = clock
        self._outbox: list[Message] = []
        self.counters: Counter[str] = Counter()
        self.fast_path_seconds: deque[float] = deque(maxlen=4096)
        self.runtime = ""
        self.synchronized = False
        self._warned_at = float("-inf")

    def drain(self) -> list[Message]:
        """Return and forget the messages produced since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def snapshot(self) -> list[Message]:
        """Full state (LifecycleSnapshot, MetadataSnapshot) for re-sends."""
        return self.state.snapshot()

    def all_counters(self) -> dict[str, float]:
        """This listener's and its state's counters."""
        return {**self.counters, **self.state.counters}

    # --- handlers (their presence decides the subscription) -----------------------

    def configure(self, request: nri_pb2.ConfigureRequest) -> None:
        """Remember which runtime we talk to (for status output)."""
        self.runtime = f"{request.runtime_name} {request.runtime_version}".strip()

    def synchronize(
        self, pods: Sequence[nri_pb2.PodSandbox], containers: Sequence[nri_pb2.Container]
    ) -> None:
        """A fresh full listing: replace the state, emit both snapshots."""
        self._outbox += self.state.synchronize(pods, containers)
        self.synchronized = True

    def run_pod_sandbox(self, pod: nri_pb2.PodSandbox) -> None:
        """PodUp + PodLabels."""
        self._outbox += self.state.pod_started(pod)

    def remove_pod_sandbox(self, pod: nri_pb2.PodSandbox) -> None:
        """ContainerDown for leftovers, PodDown, PodLabelsGone."""
        self._outbox += self.state.pod_removed(pod)

    def start_container(self, pod: nri_pb2.PodSandbox, container: nri_pb2.Container) -> None:
        """ContainerUp, then the fast path for the init pid."""
        self._outbox += self.state.container_started(pod, container)
        up = self.state.containers.get(container.id)
        if up is None or self._place is None:
            return
        if up.pid <= 0:
            self.counters["fast_path.no_pid"] += 1
            return
        self._place_init_pid(self._place, up.pod_uid, up.pid)

    def remove_container(self, pod: nri_pb2.PodSandbox, container: nri_pb2.Container) -> None:
        """ContainerDown."""
        self._outbox += self.state.container_removed(pod, container)

    # --- fast path -------------------------------------------------------------------

    def _place_init_pid(self, place: PlaceInitPid, pod_uid: str, pid: int) -> None:
        start = self._clock()
        if not self._policy.allowed(start):
            self.counters["fast_path.suspended"] += 1
            return
        try:
            placed = place(pod_uid, pid)
        except Exception as err:
            # Never propagated: the reconciler owns retries and repairs. Logged at most
            # once a minute at warning level (a node without resctrl fails every time).
            self.counters["fast_path.failed"] += 1
            level = logging.DEBUG if start - self._warned_at < _WARN_EVERY else logging.WARNING
            if level == logging.WARNING:
                self._warned_at = start
            # The uid is untrusted: repr() and a cut keep newlines (forged log lines)
            # and 10 kB uids out of the log.
            _log.log(level, "fast path: placing pid %d of pod %.80r failed: %s", pid, pod_uid, err)
        else:
            self.counters["fast_path.exited" if placed is False else "fast_path.ok"] += 1
        elapsed = self._clock() - start
        self.fast_path_seconds.append(elapsed)
        if self._policy.record(start + elapsed, elapsed):
            self.counters["fast_path.over_budget"] += 1
            _log.warning("fast path for pod %.80r took %.1f ms", pod_uid, elapsed * 1000)
