"""An emulated NRI runtime: the containerd side of the NRI socket, for tests and demo.

:class:`EmulatedNriRuntime` listens on a unix socket and serves every plugin that
connects from a background thread, using the runtime-side protocol machine in
:mod:`resctrl_pipeline.emulator.runtime_session` (registration, Configure, split
Synchronize, one call at a time with a deadline, StateChange or dedicated delivery).
Its Python API changes the emulated node — pods and containers with real PIDs — and
every change is delivered to the connected plugins in containerd's order:

* ``add_pod``: RUN_POD_SANDBOX;
* ``add_container``: CreateContainer, POST_CREATE, START (state CREATED + pid),
  POST_START;
* ``remove_container``: StopContainer, REMOVE_CONTAINER (pid 0);
* ``remove_pod``: StopContainer per container, STOP_POD_SANDBOX, REMOVE_CONTAINER per
  container, REMOVE_POD_SANDBOX (minimal pod, as containerd sends it).

With a :class:`~.runtime_rdt.RuntimeRdt` (``rdt=``), containers also get what an
RDT-enabled runc/containerd does to resctrl: the process written to its class's
``tasks``, a ``<CLOS>/mon_groups/<container-id>`` group (``runtime-groups``) made before
the events are delivered and removed after REMOVE_CONTAINER, and on :meth:`restart`
the empty MON groups pruned (goresctrl ``SetConfig``).

Fault injection: :meth:`~EmulatedNriRuntime.restart` (drop every connection, optionally
refuse connects for a while, like a containerd restart), :meth:`~EmulatedNriRuntime.
set_stall` (accept connections and never answer), :meth:`~EmulatedNriRuntime.inject`
(raw bytes to the plugins). Every answered call is recorded with its latency.

All API methods are thread-safe: they run inside the runtime thread and return once
the change is applied and its calls are queued (not answered; see ``wait_until``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar, cast

from resctrl_pipeline.emulator.runtime_events import (
    EmulatedContainer,
    EmulatedPod,
    RuntimeEvent,
    container_removed,
    container_started,
    container_updated,
    pod_removed,
    pod_started,
    sync_listing,
)
from resctrl_pipeline.emulator.runtime_events import cgroups_path as default_cgroups_path
from resctrl_pipeline.emulator.runtime_rdt import RuntimeRdt
from resctrl_pipeline.emulator.runtime_session import (
    Answer,
    Delivery,
    Phase,
    PluginGone,
    RuntimeSession,
)
from resctrl_pipeline.nri import nri_pb2

__all__ = ["Answer", "Delivery", "EmulatedNriRuntime", "PluginInfo"]

_T = TypeVar("_T")
_TICK = 0.02  # deadline checks: finer than any timeout a test uses


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """A connection as the runtime sees it."""

    serial: int
    phase: str
    name: str
    index: str
    mask: int
    fell_back: bool


@dataclass(slots=True)
class _Conn:
    serial: int
    sock: socket.socket
    session: RuntimeSession
    registration_deadline: float
    out: bytearray = field(default_factory=bytearray)


class EmulatedNriRuntime:
    """The runtime end of the NRI socket, served from a background thread.

    Args:
        socket_path: where to listen (a stale file there is replaced).
        delivery: StateChange (containerd 1.7-2.2) or dedicated methods (NRI v0.12+).
        sync_chunk: split Synchronize into messages of at most this many pods and
            containers each (``more=true`` on all but the last).
        request_timeout: seconds a plugin has per call before it is dropped.
        registration_timeout: seconds a new connection has to register.
        rdt: the runtime's resctrl side (classes, runtime-made MON groups), or None.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        delivery: Delivery = Delivery.STATE_CHANGE,
        sync_chunk: int | None = None,
        request_timeout: float = 2.0,
        registration_timeout: float = 5.0,
        rdt: RuntimeRdt | None = None,
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.rdt = rdt
        self._rdt_class: dict[str, str] = {}  # container id → its RDT class
        self.delivery = delivery
        self.sync_chunk = sync_chunk
        self.request_timeout = request_timeout
        self.registration_timeout = registration_timeout
        self._pods: dict[str, EmulatedPod] = {}
        self._containers: dict[str, EmulatedContainer] = {}
        self._conns: dict[int, _Conn] = {}
        self._stalled: list[socket.socket] = []
        self._serials = itertools.count(1)
        self._answers: list[Answer] = []
        self._closed: list[str] = []
        self._stall = False
        self._listener: socket.socket | None = None
        self._relisten_at: float | None = None
        self._selector = selectors.DefaultSelector()
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]
        self._calls = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="nri-runtime", daemon=True)
        self.accepted = 0

    # --- life ------------------------------------------------------------------------

    def start(self) -> EmulatedNriRuntime:
        """Listen and start serving; returns self."""
        self._listen()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the socket, and stop the thread."""
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> EmulatedNriRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the emulated node -----------------------------------------------------------

    def add_pod(
        self,
        uid: str,
        namespace: str,
        name: str,
        cgroup_parent: str = "",
        *,
        pid: int = 0,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> str:
        """Run a pod sandbox (RUN_POD_SANDBOX); returns its sandbox id."""
        sandbox_id = hashlib.sha256(f"sandbox/{uid}/{time.monotonic_ns()}".encode()).hexdigest()
        pod = EmulatedPod(
            uid, namespace, name, cgroup_parent, sandbox_id, pid, labels or {}, annotations or {}
        )

        def apply() -> str:
            self._pods[uid] = pod
            self._deliver(pod_started(pod))
            return sandbox_id

        return self._call(apply)

    def add_container(
        self,
        container_id: str,
        pod_uid: str,
        cgroups_path: str | None = None,
        pid: int = 0,
        *,
        name: str = "",
        rdt_class: str = "",
    ) -> None:
        """Create and start a container whose init process is ``pid``.

        ``cgroups_path`` defaults to containerd's formula over the pod's cgroup parent.
        ``rdt_class`` (with ``rdt``) is the CTRL_MON group the runtime puts it in.
        Raises KeyError for an unknown pod, and OSError when the runtime's resctrl
        step fails (the container is then not created, as runc fails it).
        """

        def apply() -> None:
            pod = self._pods[pod_uid]
            path = default_cgroups_path(pod.cgroup_parent, container_id)
            ctr = EmulatedContainer(
                container_id, pod_uid, name or container_id[:12], cgroups_path or path, pid
            )
            if self.rdt is not None:
                self.rdt.container_created(container_id, pid, rdt_class)
                self._rdt_class[container_id] = rdt_class
            self._containers[container_id] = ctr
            self._deliver(container_started(pod, ctr))

        self._call(apply)

    def update_container(self, container_id: str) -> None:
        """UpdateContainer + POST_UPDATE for a running container."""

        def apply() -> None:
            ctr = self._containers[container_id]
            self._deliver(container_updated(self._pods[ctr.pod_uid], ctr))

        self._call(apply)

    def remove_container(self, container_id: str) -> None:
        """Stop and remove a container."""

        def apply() -> None:
            ctr = self._containers.pop(container_id)
            self._deliver(container_removed(self._pods[ctr.pod_uid], ctr))
            self._rdt_deleted([container_id])

        self._call(apply)

    def remove_pod(self, uid: str) -> None:
        """Stop and remove a pod and every container still in it."""

        def apply() -> None:
            pod = self._pods.pop(uid)
            ctrs = [c for c in self._containers.values() if c.pod_uid == uid]
            for ctr in ctrs:
                del self._containers[ctr.id]
            self._deliver(pod_removed(pod, ctrs))
            self._rdt_deleted([ctr.id for ctr in ctrs])

        self._call(apply)

    # --- faults ----------------------------------------------------------------------

    def restart(self, downtime: float = 0.0) -> list[str]:
        """Drop every connection (plugins see EOF) and refuse connects for ``downtime``
        seconds, as a containerd restart does; pods and containers survive. With
        ``rdt``, the restarted runtime prunes every empty MON group (goresctrl):
        returns the paths it removed."""

        def apply() -> list[str]:
            for conn in list(self._conns.values()):
                self._close(conn, "runtime restart")
            self._drop_stalled()
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()  # the file stays: connect() gets ECONNREFUSED
                self._listener = None
            self._relisten_at = time.monotonic() + downtime
            return self.rdt.prune() if self.rdt is not None else []

        return self._call(apply)

    def set_stall(self, stalled: bool) -> None:
        """Accept new connections but never read or answer them (while True)."""

        def apply() -> None:
            self._stall = stalled
            if not stalled:
                self._drop_stalled()

        self._call(apply)

    def inject(self, data: bytes) -> int:
        """Write raw ``data`` to every registered connection; returns how many."""

        def apply() -> int:
            targets = [c for c in self._conns.values() if c.session.phase is not Phase.REGISTERING]
            for conn in targets:
                conn.out += data
                self._flush(conn)
            return len(targets)

        return self._call(apply)

    # --- observation -----------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """The live connections."""

        def apply() -> list[PluginInfo]:
            return [
                PluginInfo(
                    c.serial,
                    c.session.phase.value,
                    c.session.name,
                    c.session.index,
                    c.session.mask,
                    c.session.fell_back,
                )
                for c in self._conns.values()
            ]

        return self._call(apply)

    def ready_plugins(self) -> int:
        """Connections that are through Synchronize."""
        return sum(1 for p in self.plugins() if p.phase == Phase.READY.value)

    def idle(self) -> bool:
        """Every live connection is synchronized with no call queued or in flight."""

        def apply() -> bool:
            return all(
                c.session.phase is Phase.READY and not c.session.busy for c in self._conns.values()
            )

        return self._call(apply)

    def answers(self) -> list[Answer]:
        """Every call answered so far, in order, over all connections."""
        return self._call(lambda: list(self._answers))

    def closed_reasons(self) -> list[str]:
        """Why each closed connection was closed, in order."""
        return self._call(lambda: list(self._closed))

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked whenever the runtime did
        something) or ``timeout`` seconds pass; return its last value."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.05))

    # --- the thread ------------------------------------------------------------------

    def _call(self, fn: Callable[[], _T]) -> _T:
        if self._stopping or not self._thread.is_alive():
            raise RuntimeError("the emulated NRI runtime is not running")
        future: Future[object] = Future()
        self._calls.put((fn, future))
        self._wake_w.send(b"x")
        return cast(_T, future.result(timeout=10))

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(self.socket_path)
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "listen")
        self._relisten_at = None

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select(_TICK):
                    self._ready(key, mask)
                self._housekeeping(time.monotonic())
                with self._changed:
                    self._changed.notify_all()
        finally:
            for conn in list(self._conns.values()):
                self._close(conn, "runtime stopped")
            self._drop_stalled()
            if self._listener is not None:
                self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            self._selector.close()

    def _ready(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "wake":
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
            while not self._calls.empty():
                fn, future = self._calls.get()
                try:
                    future.set_result(fn())
                except Exception as err:  # handed back to the API caller
                    future.set_exception(err)
        elif key.data == "listen":
            self._accept()
        else:
            conn = self._conns.get(key.data)
            if conn is None:
                return
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and conn.serial in self._conns:
                self._read(conn)

    def _housekeeping(self, now: float) -> None:
        if self._relisten_at is not None and now >= self._relisten_at:
            self._listen()
        for conn in list(self._conns.values()):
            if conn.session.phase is Phase.REGISTERING and now > conn.registration_deadline:
                self._close(conn, "registration timeout")
                continue
            try:
                conn.session.check_deadline(now)
            except PluginGone as gone:
                self._close(conn, gone.reason)

    def _accept(self) -> None:
        if self._listener is None:
            return
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        if self._stall:
            self._stalled.append(sock)
            return
        sock.setblocking(False)
        session = RuntimeSession(
            self._snapshot,
            delivery=self.delivery,
            sync_chunk=self.sync_chunk,
            request_timeout=self.request_timeout,
        )
        conn = _Conn(
            next(self._serials), sock, session, time.monotonic() + self.registration_timeout
        )
        self._conns[conn.serial] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn.serial)

    def _read(self, conn: _Conn) -> None:
        while conn.serial in self._conns:
            try:
                data = conn.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as err:
                self._close(conn, f"read error: {err}")
                return
            if not data:
                self._close(conn, "EOF")
                return
            try:
                conn.session.receive(time.monotonic(), data)
            except PluginGone as gone:
                self._close(conn, gone.reason)
                return
            finally:
                self._collect(conn)
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        conn.out += conn.session.take_output()
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except BlockingIOError:
                sent = 0
            except OSError as err:
                self._close(conn, f"write error: {err}")
                return
            del conn.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        self._selector.modify(conn.sock, events, conn.serial)

    def _collect(self, conn: _Conn) -> None:
        self._answers += conn.session.answers
        conn.session.answers.clear()

    def _close(self, conn: _Conn, reason: str) -> None:
        self._collect(conn)
        self._closed.append(reason)
        del self._conns[conn.serial]
        self._selector.unregister(conn.sock)
        conn.sock.close()

    def _drop_stalled(self) -> None:
        for sock in self._stalled:
            sock.close()
        self._stalled.clear()

    def _deliver(self, events: list[RuntimeEvent]) -> None:
        now = time.monotonic()
        for conn in list(self._conns.values()):
            for event, pod, container in events:
                conn.session.deliver(now, event, pod, container)
            self._flush(conn)

    def _rdt_deleted(self, container_ids: list[str]) -> None:
        for cid in container_ids:
            rdt_class = self._rdt_class.pop(cid, "")
            if self.rdt is not None:
                self.rdt.container_deleted(cid, rdt_class)

    def _snapshot(self) -> tuple[list[nri_pb2.PodSandbox], list[nri_pb2.Container]]:
        return sync_listing(list(self._pods.values()), list(self._containers.values()))
