"""The emulated node as the benchmarks use it: cheap pods, static cgroups, FUSE resctrl.

Built on :class:`~resctrl_pipeline.emulator.node.EmulatedNode` (its NRI runtime, its
cgroup tree, its paths) with three changes for scale:

* pods are the tiny C ``idle`` program (one process per pod, ``threads`` threads
  each, all asleep), not Python interpreters;
* a container's cgroup files are written once, when its process is spawned (its
  threads never change), instead of the emulator's refresher re-reading ``/proc``
  for every pod, and a burst of NRI events does no file work of its own;
* resctrl is one of three backends: ``fuse`` (the default), the FUSE emulator in its
  own process (``python -m resctrl_pipeline.emulator.resctrlfs``) so that neither its
  CPU nor its GIL lands in this process, where the NRI runtime times the answers;
  ``tree``, a caller's tree served in this process (to instrument it); ``tmpfs``, a
  plain tree on /dev/shm whose groups are laid out before their pods start (mkdir
  then answers EEXIST and the group is adopted; writes to ``tasks`` overwrite, so only
  single-threaded pods stay reconciled). ``tmpfs`` shows the pipeline's own share:
  kernel resctrl costs more per operation than tmpfs, the Python FUSE server far more.

The CPU of this process, of the FUSE server and of the pods is never counted as the
pipeline's: benchmarks measure the pipeline's own processes by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import wait_for
from resctrl_pipeline.emulator.node import EmulatedNode
from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl
from resctrl_pipeline.emulator.resctrltree import ResctrlTree
from resctrl_pipeline.resctrl.mondata import FEATURES

__all__ = ["BenchNode", "BenchPod"]


@dataclass(frozen=True, slots=True)
class BenchPod:
    """A pod with one container whose process is ``pid`` with threads ``tids``."""

    uid: str
    name: str
    container_id: str
    pid: int
    tids: tuple[int, ...]

    @property
    def cgroup_parent(self) -> str:
        """The pod's cgroup parent (cgroupfs driver)."""
        return f"/kubepods/besteffort/pod{self.uid}"


class BenchNode:
    """An emulated node for benchmarks. See the module docstring.

    Args:
        work: a private directory (short: it holds ipc:// sockets).
        idle: the compiled ``idle`` program.
        num_rmids: RMIDs of the emulated resctrl (above the pod count, or groups fail).
        tree: serve this tree in this process (backend ``tree``).
        tmpfs: a plain tree on /dev/shm instead of FUSE (backend ``tmpfs``).
    """

    def __init__(
        self,
        work: str,
        idle: str,
        *,
        num_rmids: int,
        tree: ResctrlTree | None = None,
        tmpfs: bool = False,
    ) -> None:
        self.node = EmulatedNode(work, num_rmids=num_rmids)
        self.idle = idle
        self.num_rmids = num_rmids
        self.tree = tree
        self.resctrl_root = self.node.resctrl_root
        self._plain: str | None = None
        if tree is not None:
            self.node.fs = EmulatedResctrl.serving(tree, self.node.resctrl_root)
        elif tmpfs:
            self._plain = tempfile.mkdtemp(prefix="rp-bench-", dir="/dev/shm")
            self.resctrl_root = self._plain
        self._fuse: subprocess.Popen[str] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def runtime(self) -> EmulatedNriRuntime:
        """The emulated NRI runtime."""
        return self.node.runtime

    def start(self) -> None:
        """Mount (or lay out) resctrl and start the NRI runtime (no cgroup refresher:
        the cgroup files are written once per container)."""
        if self.tree is not None:
            self.node.fs.start()
        elif self._plain is not None:
            _plain_group(self._plain, root=True)
            info = os.path.join(self._plain, "info")
            os.makedirs(os.path.join(info, "L3_MON"))
            _replace(
                os.path.join(info, "L3_MON", "mon_features"), "".join(f"{f}\n" for f in FEATURES)
            )
            _replace(os.path.join(info, "L3_MON", "num_rmids"), f"{self.num_rmids}\n")
            _replace(os.path.join(info, "last_cmd_status"), "ok\n")
        else:
            os.makedirs(self.node.work, exist_ok=True)
            with open(os.path.join(self.node.work, "fuse.log"), "ab") as log:
                self._fuse = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "resctrl_pipeline.emulator.resctrlfs",
                        "--mount",
                        self.node.resctrl_root,
                        "--num-rmids",
                        str(self.num_rmids),
                        "--exit-with-parent",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            assert self._fuse.stdout is not None
            line = self._fuse.stdout.readline()
            if not line.startswith("mounted"):
                raise RuntimeError(f"FUSE server did not mount: {line!r}")
        self.node.runtime.start()

    def flags(self, output: str) -> list[str]:
        """The ``up`` flags that point the pipeline at this node."""
        n = self.node
        return [
            "--resctrl-root",
            self.resctrl_root,
            "--cgroup-root",
            n.cgroups.root,
            "--nri-socket",
            n.runtime.socket_path,
            "--output",
            output,
        ]

    def spawn(self, count: int, threads: int = 1) -> list[BenchPod]:
        """Start ``count`` idle processes of ``threads`` threads, with their cgroups;
        the pods are not announced yet."""
        procs = [
            subprocess.Popen([self.idle, str(threads)], stdin=subprocess.DEVNULL)
            for _ in range(count)
        ]
        self._procs += procs
        pods = []
        for i, proc in enumerate(procs):
            task = f"/proc/{proc.pid}/task"
            wait_for(_has_threads(task, threads), 30, f"{threads} threads")
            tids = tuple(sorted(int(t) for t in os.listdir(task)))
            pod = BenchPod(str(uuid.uuid4()), f"bench-{i}", uuid.uuid4().hex * 2, proc.pid, tids)
            self._cgroup(pod)
            pods.append(pod)
        return pods

    def _cgroup(self, pod: BenchPod) -> None:
        """Write the container's cgroup files once, as runc would before StartContainer
        (done when the pod is spawned, so a burst does no file work of its own)."""
        rel = f"kubepods/besteffort/pod{pod.uid}/{pod.container_id}"
        cgroups = self.node.cgroups
        cgroups.create(rel)
        threads_file = "cgroup.threads" if cgroups.version == 2 else "tasks"
        for directory in cgroups.directories(rel):
            _replace(os.path.join(directory, "cgroup.procs"), f"{pod.pid}\n")
            _replace(os.path.join(directory, threads_file), "".join(f"{t}\n" for t in pod.tids))

    def announce(self, pod: BenchPod) -> None:
        """:meth:`run_pod`, then :meth:`start_container`."""
        self.run_pod(pod)
        self.start_container(pod)

    def run_pod(self, pod: BenchPod) -> None:
        """RunPodSandbox through the NRI runtime (on tmpfs, its group is laid out first,
        as the groups of pods that do not exist yet would be orphans)."""
        if self._plain is not None:
            _plain_group(os.path.join(self._plain, "mon_groups", f"pod_{pod.uid}"))
        self.node.runtime.add_pod(pod.uid, "bench", pod.name, pod.cgroup_parent)

    def start_container(self, pod: BenchPod) -> None:
        """The container's Create/Start events through the NRI runtime."""
        self.node.runtime.add_container(
            pod.container_id, pod.uid, f"{pod.cgroup_parent}/{pod.container_id}", pod.pid
        )

    def wait_plugin(self, timeout: float = 60.0) -> None:
        """Until a plugin is through Synchronize."""
        wait_for(lambda: self.node.runtime.ready_plugins() > 0, timeout, "NRI plugin ready")

    def close(self) -> None:
        """Stop the pods, the runtime and resctrl (safe to call twice)."""
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self._procs:
            proc.wait()
        self._procs.clear()
        self.node.close()
        if self._fuse is not None:
            if self._fuse.poll() is None:
                self._fuse.send_signal(signal.SIGTERM)
            try:
                self._fuse.wait(30)
            except subprocess.TimeoutExpired:
                self._fuse.kill()
                self._fuse.wait()
            self._fuse = None
        if self._plain is not None:
            shutil.rmtree(self._plain, ignore_errors=True)
            self._plain = None


def _plain_group(path: str, root: bool = False) -> None:
    """A resctrl group on a plain directory: ``tasks`` and every counter of 2 domains."""
    for d in (0, 1):
        domain = os.path.join(path, "mon_data", f"mon_L3_{d:02d}")
        os.makedirs(domain)
        for i, feature in enumerate(FEATURES):
            _replace(os.path.join(domain, feature), f"{(d + 1) * (i + 1) * 65536}\n")
    if root:
        os.makedirs(os.path.join(path, "mon_groups"))
    _replace(os.path.join(path, "tasks"), "")


def _replace(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def _has_threads(task_dir: str, threads: int) -> Callable[[], bool]:
    return lambda: len(os.listdir(task_dir)) >= threads
