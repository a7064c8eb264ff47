"""``resctrl-pipeline demo``: the real pipeline against an emulated node.

What runs:

* an emulated resctrl filesystem, mounted over FUSE (:mod:`.emulator.resctrlfs`);
* an emulated cgroup tree whose thread lists follow real processes
  (:mod:`.emulator.cgroupfs`);
* an emulated NRI runtime on a unix socket (:mod:`.emulator.nri_runtime`);
* pods whose containers are real processes: busy ones, idle ones, one that keeps
  starting threads, and one that comes and goes; one pod exists before the
  pipeline starts, so it is adopted through the first Synchronize;
* ``resctrl-pipeline up`` itself, as a child process with flags, exactly as a user
  starts it.

At the end it stops the pipeline (SIGTERM: files finalised), prints a per-pod summary
from the Parquet files it wrote, and says where they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from resctrl_pipeline.errors import PipelineError

__all__ = ["DemoError", "DemoOptions", "missing_prerequisites", "run_demo"]

#: Workload kinds, cycled through for ``--pods N``.
KINDS = ("busy", "idle", "threads", "churn")

_WORKLOADS = {
    # Niced so the pipeline itself keeps the CPU it needs on a small machine.
    "busy": "import os\nos.nice(19)\nx = 0\nwhile True:\n    x = (x * 31 + 7) % 1000003\n",
    "idle": "import signal\nsignal.pause()\n",
    "threads": (
        "import os, threading, time\nos.nice(19)\n"
        "def spin():\n    end = time.monotonic() + 2\n    while time.monotonic() < end:\n"
        "        pass\n    time.sleep(3600)\n"
        "while True:\n    threading.Thread(target=spin, daemon=True).start()\n"
        "    time.sleep(1.0)\n"
    ),
}
_WORKLOADS["churn"] = _WORKLOADS["busy"]


class DemoError(PipelineError):
    """The demo cannot run here; the message says what is missing and how to fix it."""


@dataclass
class DemoOptions:
    """What ``demo`` was asked for."""

    duration: float = 30.0
    pods: int = 5
    output: str = "demo-output"
    sampling_interval: str = "500ms"
    keep_workdir: bool = False
    echo: Callable[[str], None] = print


@dataclass
class _Pod:
    uid: str
    name: str
    kind: str
    proc: subprocess.Popen[bytes] | None = None
    container_id: str = ""
    cgroup_rel: str = ""
    up: bool = False
    history: list[str] = field(default_factory=list)


def missing_prerequisites() -> list[str]:
    """What this machine lacks for the demo, one actionable sentence each."""
    problems = []
    if not sys.platform.startswith("linux"):
        return ["the demo needs Linux (FUSE and /proc)"]
    if not os.path.exists("/dev/fuse"):
        problems.append("/dev/fuse does not exist: load the fuse module (modprobe fuse) or "
                        "run in a container with --device /dev/fuse")  # fmt: skip
    elif not os.access("/dev/fuse", os.R_OK | os.W_OK):
        problems.append("no access to /dev/fuse: run as root (sudo scripts/demo.sh)")
    if shutil.which("fusermount3") is None:
        problems.append("fuse3 is not installed: apt-get install fuse3 libfuse3-3 "
                        "(scripts/demo.sh does this when run as root)")  # fmt: skip
    try:
        import mfusepy  # noqa: F401
    except ImportError:
        problems.append("the Python package mfusepy is missing: pip install "
                        "'resctrl-pipeline[emulator]'")  # fmt: skip
    except OSError as err:
        problems.append(f"libfuse3 cannot be loaded ({err}): apt-get install libfuse3-3")
    return problems


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class _Node:
    """The emulated node and the pipeline running against it."""

    def __init__(self, opts: DemoOptions, work: str) -> None:
        from resctrl_pipeline.emulator.cgroupfs import EmulatedCgroups
        from resctrl_pipeline.emulator.nri_runtime import EmulatedNriRuntime
        from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl

        self.opts = opts
        self.work = work
        self.resctrl_root = os.path.join(work, "resctrl")
        self.runtime_dir = os.path.join(work, "run")
        self.fs = EmulatedResctrl(self.resctrl_root, domains=(0, 1), num_rmids=64)
        self.cgroups = EmulatedCgroups(os.path.join(work, "cgroup"), version=2)
        self.runtime = EmulatedNriRuntime(os.path.join(work, "nri.sock"))
        self.up: subprocess.Popen[bytes] | None = None
        self.pods: list[_Pod] = []

    def start(self) -> None:
        self.fs.start()
        self.cgroups.start(interval=0.2)
        self.runtime.start()

    def start_pod(self, pod: _Pod) -> None:
        parent = f"/kubepods/besteffort/pod{pod.uid}"
        self.runtime.add_pod(pod.uid, "demo", pod.name, parent)
        pod.proc = subprocess.Popen([sys.executable, "-c", _WORKLOADS[pod.kind]],
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        pod.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        pod.cgroup_rel = f"kubepods/besteffort/pod{pod.uid}/{pod.container_id}"
        # The container's cgroup exists before StartContainer, as with runc.
        self.cgroups.attach(pod.cgroup_rel, [pod.proc.pid])
        self.runtime.add_container(pod.container_id, pod.uid, f"{parent}/{pod.container_id}",
                                   pod.proc.pid, name=pod.kind)  # fmt: skip
        pod.up = True

    def stop_pod(self, pod: _Pod) -> None:
        if not pod.up:
            return
        pod.up = False
        self.runtime.remove_pod(pod.uid)
        if pod.proc is not None:
            pod.proc.kill()
            pod.proc.wait()
        self.cgroups.remove(f"kubepods/besteffort/pod{pod.uid}")

    def start_pipeline(self, output: str) -> None:
        config = os.path.join(self.work, "demo.toml")
        with open(config, "w") as f:
            f.write('[output]\nflush_interval = "2s"\n[health]\ninterval = "10s"\n')
        cmd = [sys.executable, "-m", "resctrl_pipeline.cli", "up", "--config", config,
               "--runtime-dir", self.runtime_dir, "--resctrl-root", self.resctrl_root,
               "--cgroup-root", self.cgroups.root, "--nri-socket", self.runtime.socket_path,
               "--output", output, "--sampling-interval", self.opts.sampling_interval,
               "--retry-interval", "2s", "--http-addr", "127.0.0.1:0",
               "--node-name", "demo-node", "--log-level", "warning"]  # fmt: skip
        self.up = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def status(self) -> dict[str, object] | None:
        try:
            with open(os.path.join(self.runtime_dir, "pids.json")) as f:
                port = json.load(f)["http_port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                doc: dict[str, object] = json.load(r)
                return doc
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return None

    def stop_pipeline(self) -> int | None:
        if self.up is None:
            return None
        if self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
        try:
            return self.up.wait(60)
        except subprocess.TimeoutExpired:
            self.up.kill()
            return self.up.wait()

    def close(self) -> None:
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


def _pods_monitored(doc: dict[str, object] | None) -> tuple[bool, float]:
    if not doc:
        return False, 0.0
    actors = doc.get("actors", {})
    assert isinstance(actors, dict)
    gauges = actors.get("sampler", {}).get("gauges", {})
    return bool(doc.get("ready")), float(gauges.get("pods", 0))


def run_demo(opts: DemoOptions) -> int:
    """Run the demo; returns the exit code (0 when rows were written for the pods).

    Raises:
        DemoError: a prerequisite is missing or the pipeline did not come up.
    """
    problems = missing_prerequisites()
    if problems:
        raise DemoError("the demo cannot run here:\n" + "\n".join(f"  - {p}" for p in problems))
    echo = opts.echo
    output = os.path.abspath(opts.output)
    os.makedirs(output, exist_ok=True)
    started_ns = time.time_ns()
    work = tempfile.mkdtemp(prefix="rp-demo-")
    node = _Node(opts, work)
    try:
        node.start()
        node.pods = [
            _Pod(str(uuid.uuid4()), f"{KINDS[i % len(KINDS)]}-{i}", KINDS[i % len(KINDS)])
            for i in range(opts.pods)
        ]
        echo(f"emulated node: resctrl (FUSE) at {node.resctrl_root}, "
             f"NRI runtime at {node.runtime.socket_path}")  # fmt: skip
        # One pod predates the pipeline: it must be adopted from the first Synchronize.
        node.start_pod(node.pods[0])
        node.start_pipeline(output)
        echo(f"resctrl-pipeline up started (pid {node.up.pid if node.up else '?'}); "
             "waiting until it is ready")  # fmt: skip
        _wait(lambda: _pods_monitored(node.status())[0], 60, "the pipeline to become ready")
        for pod in node.pods[1:]:
            node.start_pod(pod)
        echo(f"{len(node.pods)} pods running ({', '.join(p.name for p in node.pods)}); "
             f"sampling for {opts.duration:.0f}s")  # fmt: skip
        deadline = time.monotonic() + opts.duration
        next_report = time.monotonic() + 5
        churn = [p for p in node.pods if p.kind == "churn"]
        churn_at = time.monotonic() + 4
        while time.monotonic() < deadline:
            if node.up is not None and node.up.poll() is not None:
                raise DemoError(f"resctrl-pipeline up exited early with {node.up.returncode}")
            if churn and time.monotonic() >= churn_at:
                for pod in churn:
                    if pod.up:
                        node.stop_pod(pod)
                    else:
                        node.start_pod(pod)
                churn_at = time.monotonic() + 4
            if time.monotonic() >= next_report:
                ready, pods = _pods_monitored(node.status())
                left = max(0.0, deadline - time.monotonic())
                echo(f"  {left:4.0f}s left: ready={ready}, pods sampled={pods:.0f}")
                next_report = time.monotonic() + 5
            time.sleep(0.2)  # pacing the demo's own loop, not waiting for a condition
        for pod in node.pods:
            node.stop_pod(pod)
        code = node.stop_pipeline()
        echo(f"resctrl-pipeline up stopped (exit code {code})")
    finally:
        node.close()
        if not opts.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return _summary(opts, node.pods, output, started_ns)


def _summary(opts: DemoOptions, pods: list[_Pod], output: str, since_ns: int) -> int:
    from resctrl_pipeline import report

    echo = opts.echo
    files = [f for f in report.find_files([output]) if os.stat(f).st_mtime_ns >= since_ns]
    if not files:
        echo(f"no Parquet file was written to {output}")
        return 1
    summaries = {s.pod_uid: s for s in report.summarise(report.load(files))}
    header = ("POD", "KIND", "ROWS", "MEAN MiB", "MAX MiB", "CONTAINERS")
    rows = [header]
    for pod in pods:
        s = summaries.get(pod.uid)
        if s is None:
            rows.append((f"demo/{pod.name}", pod.kind, "0", "-", "-", "-"))
            continue
        rows.append((f"demo/{pod.name}", pod.kind, str(s.samples),
                     f"{s.mean_bytes / 2**20:.2f}", f"{s.max_bytes / 2**20:.2f}",
                     f"{s.reconciled}/{s.total} reconciled"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    echo("")
    for r in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    total = sum(s.samples for s in summaries.values())
    echo(f"\n{total} rows in {len(files)} Parquet file(s) under {output}")
    echo(f"inspect them with: resctrl-pipeline report {output} [--plot occupancy.png]")
    missing = [p.name for p in pods if p.uid not in summaries]
    if missing:
        echo(f"no rows for: {', '.join(missing)}")
        return 1
    return 0
