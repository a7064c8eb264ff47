"""A whole emulated node: resctrl (FUSE), cgroups, an NRI runtime, pods, and ``up``.

Used by ``demo`` and by the end-to-end tests, so both exercise the same paths a
production node has: the pipeline is started as ``resctrl-pipeline up`` with flags in
a child process and finds the emulations behind ``--resctrl-root``,
``--cgroup-root`` and ``--nri-socket``. Pods are real processes (Python workloads
by kind) placed in the emulated cgroup tree before their StartContainer, as runc does.
With the ``classes`` or ``runtime-groups`` hardware profile the runtime also does what
an RDT-enabled runc does to resctrl (:mod:`.runtime_rdt`): a pod made with
``rdt_class`` has its process written to that class, and with ``runtime-groups`` each
container gets ``<CLOS>/mon_groups/<container-id>``; ``runtime.restart()`` then prunes
empty MON groups.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from resctrl_pipeline.emulator.cgroupfs import EmulatedCgroups
from resctrl_pipeline.emulator.hardware import Hardware, parse_hardware
from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl
from resctrl_pipeline.emulator.runtime_rdt import RuntimeRdt

__all__ = ["WORKLOADS", "EmulatedNode", "Pod"]

#: Workload programs by kind. Busy ones are niced so that the pipeline keeps the CPU
#: it needs on a small machine.
WORKLOADS: dict[str, str] = {
    "busy": "import os\nos.nice(19)\nx = 0\nwhile True:\n    x = (x * 31 + 7) % 1000003\n",
    "idle": "import signal\nsignal.pause()\n",
    "threads": (
        "import os, threading, time\nos.nice(19)\n"
        "def spin():\n    end = time.monotonic() + 2\n    while time.monotonic() < end:\n"
        "        pass\n    time.sleep(3600)\n"
        "while True:\n    threading.Thread(target=spin, daemon=True).start()\n"
        "    time.sleep(1.0)\n"
    ),
    # Starts N idle threads at once (N from argv), then idles.
    "fixed-threads": (
        "import signal, sys, threading\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    threading.Thread(target=signal.pause, daemon=True).start()\n"
        "signal.pause()\n"
    ),
}
WORKLOADS["churn"] = WORKLOADS["busy"]

#: Runs a workload with SIGINT ignored from its first instruction on (an ignored signal
#: stays ignored across exec, and Python then leaves it so): Ctrl-C in a terminal
#: reaches the whole foreground process group, and a workload's KeyboardInterrupt
#: traceback is noise. The node stops its pods itself (SIGKILL); they still die with
#: the terminal (SIGHUP). The shell execs the workload, so the pid stays the same.
_NO_SIGINT = ("/bin/sh", "-c", 'trap "" INT; exec "$0" "$@"')


@dataclass
class Pod:
    """A pod of the emulated node with one container (a real process)."""

    uid: str
    name: str
    kind: str
    namespace: str = "demo"
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    container_id: str = ""
    up: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    rdt_class: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def cgroup_parent(self) -> str:
        """The pod's cgroup parent as a kubelet with the cgroupfs driver sets it."""
        return f"/kubepods/besteffort/pod{self.uid}"

    @property
    def cgroup_rel(self) -> str:
        """The container's cgroup, relative to the cgroup root."""
        return f"kubepods/besteffort/pod{self.uid}/{self.container_id}"


class EmulatedNode:
    """The emulations under one work directory, and the pipeline running against them.

    Args:
        work: a private directory for mounts, sockets and the runtime directory.
        hardware: the hardware profile of the emulated resctrl (``docs/emulator.md``),
            e.g. ``"abmc+classes"``.
        domains, snc, num_rmids, mbm: the emulated resctrl topology.
        cgroup_version: 2 (unified) or 1 (per-controller hierarchies).
    """

    def __init__(
        self,
        work: str,
        *,
        hardware: Hardware | str = "classic",
        domains: tuple[int, ...] = (0, 1),
        snc: int = 0,
        num_rmids: int = 64,
        mbm: bool = True,
        cgroup_version: int = 2,
    ) -> None:
        self.work = work
        self.resctrl_root = os.path.join(work, "resctrl")
        self.runtime_dir = os.path.join(work, "run")
        self.hardware = parse_hardware(hardware) if isinstance(hardware, str) else hardware
        self.fs = EmulatedResctrl(self.resctrl_root, hardware=self.hardware, domains=domains,
                                  snc=snc, num_rmids=num_rmids, mbm=mbm)  # fmt: skip
        self.cgroups = EmulatedCgroups(os.path.join(work, "cgroup"),
                                       version=2 if cgroup_version == 2 else 1)  # fmt: skip
        hw = self.hardware
        rdt = (
            RuntimeRdt(self.resctrl_root, monitoring=hw.runtime_groups)
            if hw.ctrl_mon or hw.runtime_groups
            else None
        )
        self.runtime = EmulatedNriRuntime(os.path.join(work, "nri.sock"), rdt=rdt)
        self.up: subprocess.Popen[bytes] | None = None
        self.pods: list[Pod] = []

    def start(self) -> None:
        """Mount resctrl, start the cgroup refresher and the NRI runtime."""
        self.fs.start()
        self.cgroups.start(interval=0.2)
        self.runtime.start()

    def new_pod(self, kind: str, name: str | None = None, namespace: str = "demo",
                args: tuple[str, ...] = (), rdt_class: str = "") -> Pod:  # fmt: skip
        """A pod (not started yet) with a fresh uid; ``rdt_class`` puts its container
        in that CTRL_MON group (``classes`` profile)."""
        pod = Pod(str(uuid.uuid4()), name or f"{kind}-{len(self.pods)}", kind, namespace, args,
                  rdt_class=rdt_class)  # fmt: skip
        self.pods.append(pod)
        return pod

    def start_pod(self, pod: Pod) -> None:
        """RunPodSandbox, then the container's process, cgroup and StartContainer."""
        rdt = pod.rdt_class
        annotations = {"rdt.resources.beta.kubernetes.io/pod": rdt} if rdt else None
        self.runtime.add_pod(pod.uid, pod.namespace, pod.name, pod.cgroup_parent,
                             labels=pod.labels or None, annotations=annotations)  # fmt: skip
        pod.proc = subprocess.Popen([*_NO_SIGINT, sys.executable, "-c", WORKLOADS[pod.kind],
                                     *pod.args], stdin=subprocess.DEVNULL)  # fmt: skip
        pod.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.cgroups.attach(pod.cgroup_rel, [pod.proc.pid])
        self.runtime.add_container(pod.container_id, pod.uid,
                                   f"{pod.cgroup_parent}/{pod.container_id}", pod.proc.pid,
                                   name=pod.kind, rdt_class=pod.rdt_class)  # fmt: skip
        pod.up = True

    def stop_pod(self, pod: Pod) -> None:
        """Remove the pod through the runtime, kill its process, drop its cgroups."""
        if not pod.up:
            return
        pod.up = False
        self.runtime.remove_pod(pod.uid)
        if pod.proc is not None:
            pod.proc.kill()
            pod.proc.wait()
        self.cgroups.remove(f"kubepods/besteffort/pod{pod.uid}")

    def group_path(self, pod: Pod, prefix: str = "pod_") -> str:
        """Where the pipeline should put the pod's monitoring group."""
        return os.path.join(self.resctrl_root, "mon_groups", prefix + pod.uid)

    def start_pipeline(self, output: str, *extra: str, config_toml: str = "",
                       log_path: str | None = None,
                       own_group: bool = False) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start ``resctrl-pipeline up`` against this node (HTTP on a free port).

        With ``own_group`` it leads a process group of its own (as in a terminal), so
        that a signal can be sent to the whole group.
        """
        config = os.path.join(self.work, "node.toml")
        with open(config, "w") as f:
            f.write(config_toml)
        cmd = [sys.executable, "-m", "resctrl_pipeline.cli", "up", "--config", config,
               "--runtime-dir", self.runtime_dir, "--resctrl-root", self.resctrl_root,
               "--cgroup-root", self.cgroups.root, "--nri-socket", self.runtime.socket_path,
               "--output", output, "--http-addr", "127.0.0.1:0", *extra]  # fmt: skip
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - handed to the child
        try:
            self.up = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT if log else None,
                                       process_group=0 if own_group else None)  # fmt: skip
        finally:
            if log is not None:
                log.close()
        return self.up

    def pids(self) -> dict[str, Any]:
        """The running pipeline's ``pids.json`` ({} before it exists)."""
        try:
            with open(os.path.join(self.runtime_dir, "pids.json")) as f:
                doc: dict[str, Any] = json.load(f)
                return doc
        except (OSError, ValueError):
            return {}

    def http(self, path: str) -> tuple[int, str]:
        """GET a path of the pipeline's HTTP endpoints; (0, "") when unreachable."""
        port = self.pids().get("http_port")
        if not port:
            return 0, ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read().decode()
        except (OSError, urllib.error.URLError):
            return 0, ""

    def status(self) -> dict[str, Any] | None:
        """The pipeline's ``/status`` document, or None when unreachable."""
        code, body = self.http("/status")
        if code != 200:
            return None
        doc: dict[str, Any] = json.loads(body)
        return doc

    def stop_pipeline(self, timeout: float = 60.0) -> int | None:
        """SIGTERM ``up`` and wait; returns its exit code."""
        if self.up is None:
            return None
        if self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
        try:
            return self.up.wait(timeout)
        except subprocess.TimeoutExpired:
            self.up.kill()
            return self.up.wait()

    def close(self) -> None:
        """Stop everything this node started (safe to call twice)."""
        for pod in self.pods:
            if pod.proc is not None and pod.proc.poll() is None:
                pod.proc.kill()
                pod.proc.wait()
        if self.up is not None and self.up.poll() is None:
            self.stop_pipeline()
        with contextlib.suppress(Exception):
            self.runtime.stop()
        self.cgroups.stop()
        self.fs.stop()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
