"""The nri-listener's event handlers: NRI calls in, pipeline messages out.

:class:`NriListener` is the handler object given to :class:`~.plugin.NriPlugin`. Its
event methods decide the subscription (stub-style, see :mod:`.events`): RUN_POD_SANDBOX,
REMOVE_POD_SANDBOX, START_CONTAINER and REMOVE_CONTAINER. Every call appends the
resulting messages to an outbox that the shell drains; nothing here sends, blocks or
reads a clock except the StartContainer fast path below.

StartContainer fast path: the init pid goes into the pod's monitoring group before
the answer, under a real deadline; see :mod:`.fastpath`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from resctrl_pipeline.messages import Message
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.fastpath import FastPath, FastPathPolicy, PlaceInitPid
from resctrl_pipeline.nri.state import ListenerState

__all__ = ["FastPathPolicy", "NriListener", "PlaceInitPid"]


class NriListener:
    """Handlers for the four subscribed events plus Configure and Synchronize.

    Args:
        place_init_pid: the StartContainer fast path, or None to skip it.
        fast_path: its budget policy.
        clock: monotonic seconds (injectable for tests of the policy).

    Attributes:
        state: the pod/container map behind every message.
        counters: ``fast_path.no_pid`` plus the fast path's and the state's counters
            (see :class:`.fastpath.FastPath`).
        fast_path: the fast path, or None without ``place_init_pid``.
    """

    def __init__(
        self,
        place_init_pid: PlaceInitPid | None = None,
        fast_path: FastPathPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ListenerState()
        self.fast_path = (
            FastPath(place_init_pid, fast_path, clock) if place_init_pid is not None else None
        )
        self._outbox: list[Message] = []
        self.counters: Counter[str] = Counter()
        self.runtime = ""
        self.synchronized = False

    def drain(self) -> list[Message]:
        """Return and forget the messages produced since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def snapshot(self) -> list[Message]:
        """Full state (LifecycleSnapshot, MetadataSnapshot) for re-sends."""
        return self.state.snapshot()

    def all_counters(self) -> dict[str, float]:
        """This listener's, its fast path's and its state's counters."""
        fast = self.fast_path.counters if self.fast_path is not None else {}
        return {**self.counters, **fast, **self.state.counters}

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
        if up is None or self.fast_path is None:
            return
        if up.pid <= 0:
            self.counters["fast_path.no_pid"] += 1
            return
        self.fast_path.run(up.pod_uid, up.pid)

    def remove_container(self, pod: nri_pb2.PodSandbox, container: nri_pb2.Container) -> None:
        """ContainerDown."""
        self._outbox += self.state.container_removed(pod, container)
