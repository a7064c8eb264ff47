"""Our NRI plugin stack (``resctrl_pipeline.nri``) pointed at the real containerd.

* :class:`EventRecorder`: a handler for every NRI event that keeps what arrived.
* :class:`PluginThread`: runs an :class:`~resctrl_pipeline.nri.plugin.NriPlugin` the
  way the actor shell does (poll, timers, reconnect), in a thread of the test process.
* :class:`ListenerProcess`: the production :class:`~resctrl_pipeline.nri.listener.NriListener`
  in its own process (like the real nri-listener actor), reporting its answer latencies
  when stopped; nobody consumes its outputs.
"""

from __future__ import annotations

import multiprocessing
import select
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from resctrl_pipeline.messages import Message
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig

__all__ = ["Call", "EventRecorder", "ListenerProcess", "ListenerReport", "PluginThread"]

Pod = nri_pb2.PodSandbox
Ctr = nri_pb2.Container


@dataclass(frozen=True, slots=True)
class Call:
    """One event as the handler received it (``container`` is None for pod events)."""

    method: str
    pod: Pod
    container: Ctr | None
    at: float


class EventRecorder:
    """Handler for all eleven events plus Configure and Synchronize (mask 0x7FF).

    Thread-safe: the plugin thread records, the test thread reads copies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._configures: list[nri_pb2.ConfigureRequest] = []
        self._syncs: list[tuple[list[Pod], list[Ctr]]] = []

    def drain(self) -> list[Message]:
        """No pipeline messages: this handler only records."""
        return []

    # --- reading ------------------------------------------------------------------

    def calls(self, pod_uid: str | None = None) -> list[Call]:
        """Events so far, optionally only those of one pod (by uid)."""
        with self._lock:
            return [c for c in self._calls if pod_uid is None or c.pod.uid == pod_uid]

    def methods(self, pod_uid: str) -> list[str]:
        """Method names of one pod's events, in arrival order."""
        return [c.method for c in self.calls(pod_uid)]

    def configures(self) -> list[nri_pb2.ConfigureRequest]:
        """Every Configure request (one per registration)."""
        with self._lock:
            return list(self._configures)

    def syncs(self) -> list[tuple[list[Pod], list[Ctr]]]:
        """Every complete Synchronize: (pods, containers)."""
        with self._lock:
            return list(self._syncs)

    # --- handlers -----------------------------------------------------------------

    def configure(self, request: nri_pb2.ConfigureRequest) -> None:
        with self._lock:
            self._configures.append(request)

    def synchronize(self, pods: Sequence[Pod], containers: Sequence[Ctr]) -> None:
        with self._lock:
            self._syncs.append((list(pods), list(containers)))

    def _add(self, method: str, pod: Pod, container: Ctr | None = None) -> None:
        with self._lock:
            self._calls.append(Call(method, pod, container, time.monotonic()))

    def run_pod_sandbox(self, pod: Pod) -> None:
        self._add("run_pod_sandbox", pod)

    def stop_pod_sandbox(self, pod: Pod) -> None:
        self._add("stop_pod_sandbox", pod)

    def remove_pod_sandbox(self, pod: Pod) -> None:
        self._add("remove_pod_sandbox", pod)

    def create_container(self, pod: Pod, container: Ctr) -> None:
        self._add("create_container", pod, container)

    def post_create_container(self, pod: Pod, container: Ctr) -> None:
        self._add("post_create_container", pod, container)

    def start_container(self, pod: Pod, container: Ctr) -> None:
        self._add("start_container", pod, container)

    def post_start_container(self, pod: Pod, container: Ctr) -> None:
        self._add("post_start_container", pod, container)

    def update_container(self, pod: Pod, container: Ctr) -> None:
        self._add("update_container", pod, container)

    def post_update_container(self, pod: Pod, container: Ctr) -> None:
        self._add("post_update_container", pod, container)

    def stop_container(self, pod: Pod, container: Ctr) -> None:
        self._add("stop_container", pod, container)

    def remove_container(self, pod: Pod, container: Ctr) -> None:
        self._add("remove_container", pod, container)


class PluginThread:
    """Drive ``plugin`` in a daemon thread: timers, reads, reconnects; keep its outputs.

    Use as a context manager; leaving it closes the plugin for good.
    """

    def __init__(self, plugin: NriPlugin) -> None:
        self.plugin = plugin
        self._outputs: list[Message] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nri-plugin", daemon=True)

    def __enter__(self) -> PluginThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.plugin.close()

    def outputs(self) -> list[Message]:
        """Every pipeline message the handler produced so far."""
        with self._lock:
            return list(self._outputs)

    def _run(self) -> None:
        plugin = self.plugin
        while not self._stop.is_set():
            out: list[Message] = []
            if time.monotonic() >= plugin.next_deadline():
                out += plugin.on_timer(time.monotonic())
            wait = min(max(plugin.next_deadline() - time.monotonic(), 0.0), 0.05)
            fd = plugin.fileno()
            if fd < 0:
                self._stop.wait(wait)
            elif select.select([fd], [], [], wait)[0]:
                out += plugin.on_readable(time.monotonic())
            if out:
                with self._lock:
                    self._outputs.extend(out)


@dataclass(frozen=True, slots=True)
class ListenerReport:
    """What a :class:`ListenerProcess` measured.

    Attributes:
        latencies: ``(method, seconds)`` from reading a request to writing its answer.
        counters: the plugin's cumulative ``nri_*`` counters.
        connected: whether it was still registered when stopped.
    """

    latencies: list[tuple[str, float]] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    connected: bool = False


def _listener_main(socket_path: str, conn: Connection, stop: Any) -> None:
    """Child body: NriListener behind NriPlugin in a poll loop; outputs are discarded."""
    from resctrl_pipeline.nri.listener import NriListener

    plugin = NriPlugin(
        NriListener(),
        PluginConfig(socket_path=socket_path, backoff_initial=0.05, backoff_max=0.5),
    )
    latencies: list[tuple[str, float]] = []
    announced = False
    while not stop.is_set():
        if time.monotonic() >= plugin.next_deadline():
            plugin.on_timer(time.monotonic())
        wait = min(max(plugin.next_deadline() - time.monotonic(), 0.0), 0.05)
        fd = plugin.fileno()
        if fd < 0:
            stop.wait(wait)
        elif select.select([fd], [], [], wait)[0]:
            plugin.on_readable(time.monotonic())
        latencies += plugin.take_latencies()
        if plugin.connected and not announced:
            conn.send("connected")
            announced = True
    conn.send(ListenerReport(latencies, plugin.all_counters(), plugin.connected))
    plugin.close()


class ListenerProcess:
    """The production listener in a separate process connected to ``socket_path``.

    :meth:`wait_connected` blocks until it registered; :meth:`stop` ends it and
    returns its :class:`ListenerReport`.
    """

    def __init__(self, socket_path: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_listener_main, args=(socket_path, child, self._stop), daemon=True
        )

    def __enter__(self) -> ListenerProcess:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.is_alive():
            self._stop.set()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)

    def wait_connected(self, timeout: float = 15.0) -> bool:
        """Whether the listener registered with the runtime within ``timeout``."""
        return bool(self._parent.poll(timeout)) and self._parent.recv() == "connected"

    def stop(self, timeout: float = 10.0) -> ListenerReport:
        """Stop the child and return its report.

        Raises:
            TimeoutError: no report within ``timeout``.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._parent.poll(max(deadline - time.monotonic(), 0.0)):
            report = self._parent.recv()
            if isinstance(report, ListenerReport):  # skip an unread "connected"
                self._proc.join(timeout)
                return report
        raise TimeoutError("the listener process sent no report")
