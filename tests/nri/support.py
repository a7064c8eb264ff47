"""Helpers for the NRI tests: captured frames, condition polling, a plugin poll loop."""

from __future__ import annotations

import contextlib
import json
import select
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resctrl_pipeline.messages import Message
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.plugin import NriPlugin
from resctrl_pipeline.nri.ttrpc import Message as TtrpcMessage
from resctrl_pipeline.nri.ttrpc import MessageReader

CAPTURES = Path(__file__).parent / "captures"
"""Copies of shared/reference/nri-captures (real containerd 1.7.24 and 2.1.9 traffic)."""


def load_frames(name: str) -> list[tuple[str, bytes]]:
    """``(direction, frame)`` per line of a capture; ``<`` = runtime → plugin."""
    frames = []
    for line in (CAPTURES / name).read_text().splitlines():
        direction, hexdata = line.split(" ", 1)
        frames.append((direction, bytes.fromhex(hexdata)))
    return frames


def load_json(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


def ttrpc_messages(name: str) -> list[tuple[str, int, TtrpcMessage, int]]:
    """Every ttrpc message of a capture: (direction, mux conn, message, frames used)."""
    readers: dict[tuple[str, int], MessageReader] = defaultdict(MessageReader)
    frames_seen: dict[tuple[str, int], int] = defaultdict(int)
    out = []
    for direction, frame in load_frames(name):
        conn, length = struct.unpack(">II", frame[:8])
        assert length == len(frame) - 8, "each line is exactly one frame"
        key = (direction, conn)
        frames_seen[key] += 1
        for msg in readers[key].feed(frame[8:]):
            assert isinstance(msg, TtrpcMessage)
            out.append((direction, conn, msg, frames_seen[key]))
            frames_seen[key] = 0
    return out


def poll_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Re-check ``predicate`` until it holds or ``timeout`` passes (no fixed sleeps as
    synchronisation: this only yields the CPU between checks)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class PluginLoop:
    """Runs an :class:`NriPlugin` the way the actor shell does, in a thread.

    Outputs are kept in :attr:`outputs` unless ``keep_outputs`` is False (nobody
    consuming them).
    """

    def __init__(self, plugin: NriPlugin, keep_outputs: bool = True) -> None:
        self.plugin = plugin
        self.outputs: list[Message] = []
        self._keep = keep_outputs
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PluginLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.plugin.close()

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self.outputs)

    def _emit(self, out: Sequence[Message]) -> None:
        if self._keep and out:
            with self._lock:
                self.outputs.extend(out)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self.plugin.next_deadline():
                self._emit(self.plugin.on_timer(now))
            timeout = min(max(self.plugin.next_deadline() - time.monotonic(), 0.0), 0.02)
            fd = self.plugin.fileno()
            if fd < 0:
                self._stop.wait(timeout)
                continue
            readable, _, _ = select.select([fd], [], [], timeout)
            if readable:
                self._emit(self.plugin.on_readable(time.monotonic()))


class Recorder:
    """A handler for every event (mask 0x7FF, like the capture plugin) that records
    ``(method, pod uid, container id)`` per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.synced: list[tuple[int, int]] = []

    def drain(self) -> list[Message]:
        return []

    def synchronize(
        self, pods: Sequence[nri_pb2.PodSandbox], containers: Sequence[nri_pb2.Container]
    ) -> None:
        self.synced.append((len(pods), len(containers)))

    def _pod(self, name: str) -> Callable[[nri_pb2.PodSandbox], None]:
        return lambda pod: self.calls.append((name, pod.uid, ""))

    def _ctr(self, name: str) -> Callable[[nri_pb2.PodSandbox, nri_pb2.Container], None]:
        return lambda pod, ctr: self.calls.append((name, pod.uid, ctr.id))

    def run_pod_sandbox(self, pod: nri_pb2.PodSandbox) -> None:
        self._pod("run_pod_sandbox")(pod)

    def stop_pod_sandbox(self, pod: nri_pb2.PodSandbox) -> None:
        self._pod("stop_pod_sandbox")(pod)

    def remove_pod_sandbox(self, pod: nri_pb2.PodSandbox) -> None:
        self._pod("remove_pod_sandbox")(pod)

    def create_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("create_container")(pod, ctr)

    def post_create_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("post_create_container")(pod, ctr)

    def start_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("start_container")(pod, ctr)

    def post_start_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("post_start_container")(pod, ctr)

    def update_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("update_container")(pod, ctr)

    def post_update_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("post_update_container")(pod, ctr)

    def stop_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("stop_container")(pod, ctr)

    def remove_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
        self._ctr("remove_container")(pod, ctr)


def run_plugin_process(socket_path: str, endpoint: str, tasks_file: str, stop: Any) -> None:
    """Child-process body: the listener in a zmq.Poller loop, as the actor shell will
    run it, pushing its outputs to ``endpoint`` where nobody reads (sends that would
    block are dropped). The fast path appends each init pid to ``tasks_file``."""
    import zmq

    from resctrl_pipeline.nri.listener import NriListener
    from resctrl_pipeline.nri.plugin import PluginConfig

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 16)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(endpoint)

    def place(pod_uid: str, pid: int) -> None:
        with open(tasks_file, "a") as tasks:
            tasks.write(f"{pid}\n")

    plugin = NriPlugin(
        NriListener(place_init_pid=place),
        PluginConfig(socket_path=socket_path, backoff_initial=0.05, backoff_max=0.5),
    )
    poller = zmq.Poller()
    registered = -1
    while not stop.is_set():
        now = time.monotonic()
        out = plugin.on_timer(now) if now >= plugin.next_deadline() else []
        fd = plugin.fileno()
        if fd != registered:
            if registered >= 0:
                poller.unregister(registered)
            if fd >= 0:
                poller.register(fd, zmq.POLLIN)
            registered = fd
        timeout = min(max(plugin.next_deadline() - time.monotonic(), 0.0), 0.05)
        if dict(poller.poll(int(timeout * 1000))).get(fd):
            out += plugin.on_readable(time.monotonic())
        for msg in out:
            # Nobody consumes: a full queue drops, exactly what the real shell does.
            with contextlib.suppress(zmq.Again):
                push.send(repr(msg).encode(), zmq.NOBLOCK)
    plugin.close()
    push.close()
    ctx.term()
