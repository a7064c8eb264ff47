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

With ``--hardware`` the emulated node models that hardware (``docs/emulator.md``):
with ``classes`` every second pod after the first runs in an RDT class, with
``runtime-groups`` the runtime gives each container its own MON group and is
restarted halfway (pruning empty MON groups), with ``abmc`` the counters still free
are shown at the end.

At the end it stops the pipeline (SIGTERM: files finalised), prints a per-pod summary
from the Parquet files it wrote, and says where they are.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resctrl_pipeline.errors import PipelineError

if TYPE_CHECKING:
    from resctrl_pipeline.emulator.node import EmulatedNode, Pod

__all__ = ["DemoError", "DemoOptions", "missing_prerequisites", "run_demo"]

#: The label every demo pod carries (its kind), written as the column
#: ``label_app_kubernetes_io_name``.
APP_LABEL = "app.kubernetes.io/name"

#: Workload kinds, cycled through for ``--pods N``.
KINDS = ("busy", "idle", "threads", "churn")


class DemoError(PipelineError):
    """The demo cannot run here; the message says what is missing and how to fix it.

    ``code`` is the exit code: 2 for a bad argument, 1 otherwise.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class DemoOptions:
    """What ``demo`` was asked for."""

    duration: float = 30.0
    pods: int = 5
    output: str = ""  # empty: a fresh directory under demo-output (default_output)
    sampling_interval: str = "500ms"
    keep_workdir: bool = False
    echo: Callable[[str], None] = print
    hardware: str = "classic"


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


def _pods_monitored(doc: dict[str, Any] | None) -> tuple[bool, float]:
    if not doc:
        return False, 0.0
    gauges = doc.get("actors", {}).get("sampler", {}).get("gauges", {})
    return bool(doc.get("ready")), float(gauges.get("pods", 0))


def default_output() -> str:
    """A fresh directory per run under ``demo-output``, so that two demos never share one."""
    return os.path.join("demo-output", time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}")


def command_prefix() -> str:
    """This installation's command line as the user can type it in their shell.

    ``resctrl-pipeline`` when that is what their PATH finds; otherwise the script next
    to the running interpreter (relative to the current directory when below it, e.g.
    ``.venv/bin/resctrl-pipeline``), or ``python -m resctrl_pipeline.cli``.
    """
    script = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "resctrl-pipeline")
    if not os.access(script, os.X_OK):
        return f"{shlex.quote(sys.executable)} -m resctrl_pipeline.cli"
    found = shutil.which("resctrl-pipeline")
    if found and os.path.realpath(found) == os.path.realpath(script):
        return "resctrl-pipeline"
    rel = os.path.relpath(script)
    return shlex.quote(rel if not rel.startswith("..") else script)


def _prepare_output(path: str) -> str:
    """The absolute output directory, created; refused when unusable or in use.

    Raises:
        DemoError: not a directory, cannot be created, or another pipeline writes there.
    """
    from resctrl_pipeline.ownership import DirectoryLock, OwnershipError

    output = os.path.abspath(path)
    try:
        # Taken and given back at once: `up` takes it for the run; this is only to
        # refuse early, with one line, before an emulated node is built.
        DirectoryLock(output, "output dir").release()
    except OwnershipError as err:
        in_use = "in use" in str(err)
        raise DemoError(f"--output: {err}", code=1 if in_use else 2) from err
    return output


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(opts: DemoOptions) -> int:
    """Run the demo; returns the exit code (0 when rows were written for the pods, 130
    when interrupted by Ctrl-C or SIGTERM — the summary is printed all the same).

    Raises:
        DemoError: a prerequisite is missing or the pipeline did not come up.
    """
    problems = missing_prerequisites()
    if problems:
        raise DemoError("the demo cannot run here:\n" + "\n".join(f"  - {p}" for p in problems))
    from resctrl_pipeline.emulator.node import EmulatedNode

    output = _prepare_output(opts.output or default_output())
    started_ns = time.time_ns()
    work = tempfile.mkdtemp(prefix="rp-demo-")
    node = EmulatedNode(work, hardware=opts.hardware)
    interrupted = False
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            _run(opts, node, output)
        except KeyboardInterrupt:
            interrupted = True
            # A second Ctrl-C must not cut the orderly stop short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            opts.echo("\ninterrupted: stopping the pods and the pipeline (files are finalised)")
            for pod in node.pods:
                with contextlib.suppress(Exception):
                    node.stop_pod(pod)
            code = node.stop_pipeline()
            if code is not None and code >= 0:
                opts.echo(f"resctrl-pipeline up stopped (exit code {code})")
            elif code is not None:
                opts.echo("resctrl-pipeline up stopped during its start-up")
    finally:
        node.close()
        if not opts.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)
        if interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    code = _summary(opts, node.pods, output, started_ns, interrupted)
    return 130 if interrupted else code


def _run(opts: DemoOptions, node: EmulatedNode, output: str) -> None:
    """Start the node and the pipeline, run the pods for the duration, stop the pipeline."""
    from resctrl_pipeline.emulator.node import wait_for

    echo = opts.echo
    cwd = os.getcwd()
    node.start()
    # libfuse changes the process's directory to / when it mounts; paths the user
    # types are relative to where they are.
    os.chdir(cwd)
    classes = node.hardware.classes
    pods = [
        node.new_pod(KINDS[i % len(KINDS)],
                     rdt_class=classes[i // 2 % len(classes)] if classes and i % 2 else "")
        for i in range(opts.pods)
    ]  # fmt: skip
    echo(f"emulated node ({node.hardware}): resctrl (FUSE) at {node.resctrl_root}, "
         f"NRI runtime at {node.runtime.socket_path}")  # fmt: skip
    for pod in pods:  # rows can be grouped by application (output.pod_labels)
        pod.labels[APP_LABEL] = pod.kind
    in_classes = [f"{p.name} in {p.rdt_class}" for p in pods if p.rdt_class]
    if in_classes:
        echo(f"RDT classes: {', '.join(in_classes)}")
    # One pod predates the pipeline: it must be adopted from the first Synchronize.
    node.start_pod(pods[0])
    up = node.start_pipeline(
        output,
        "--sampling-interval",
        opts.sampling_interval,
        "--retry-interval",
        "2s",
        "--node-name",
        "demo-node",
        "--log-level",
        "warning",
        "--pod-labels",
        APP_LABEL,
        config_toml='[output]\nflush_interval = "2s"\n[health]\ninterval = "10s"\n',
        # A process group of its own: Ctrl-C in the terminal must not reach `up` (during
        # its start-up it would die with a traceback); the demo stops it with SIGTERM.
        own_group=True,
    )
    echo(f"resctrl-pipeline up started (pid {up.pid}); waiting until it is ready")

    def ready() -> bool:
        if up.poll() is not None:
            raise DemoError(f"resctrl-pipeline up exited with {up.returncode} before it was "
                            "ready (its message is above)")  # fmt: skip
        return _pods_monitored(node.status())[0]

    try:
        wait_for(ready, 60, "the pipeline to be ready")
    except TimeoutError as err:
        raise DemoError(f"{err}; /ready says: {node.http('/ready')[1].strip()}") from err
    _print_watch_commands(echo, node.runtime_dir, node.pids().get("http_port"), output)
    for pod in pods[1:]:
        node.start_pod(pod)
    echo(f"{len(pods)} pods running ({', '.join(p.name for p in pods)}); "
         f"sampling for {opts.duration:.0f}s (Ctrl-C stops early)")  # fmt: skip
    deadline = time.monotonic() + opts.duration
    next_report = time.monotonic() + 5
    churn = [p for p in pods if p.kind == "churn"]
    churn_at = time.monotonic() + 4
    restart_at = time.monotonic() + opts.duration / 2 if node.hardware.runtime_groups else None
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise DemoError(f"resctrl-pipeline up exited early with {up.returncode}")
        if churn and time.monotonic() >= churn_at:
            for pod in churn:
                if pod.up:
                    node.stop_pod(pod)
                else:
                    node.start_pod(pod)
            churn_at = time.monotonic() + 4
        if restart_at is not None and time.monotonic() >= restart_at:
            pruned = node.runtime.restart(downtime=1.0)
            echo(f"  runtime restarted: it pruned {len(pruned)} empty MON group(s)")
            restart_at = None
        if time.monotonic() >= next_report:
            ready_now, sampled = _pods_monitored(node.status())
            left = max(0.0, deadline - time.monotonic())
            echo(f"  {left:4.0f}s left: ready={ready_now}, pods sampled={sampled:.0f}")
            next_report = time.monotonic() + 5
        time.sleep(0.2)  # pacing the demo's own loop, not waiting for a condition
    if node.hardware.abmc:
        echo(f"MBM counters free per domain: {_info(node.resctrl_root, 'available_mbm_cntrs')}")
    for pod in pods:
        node.stop_pod(pod)
    code = node.stop_pipeline()
    echo(f"resctrl-pipeline up stopped (exit code {code})")


def _info(resctrl_root: str, name: str) -> str:
    """One ``info/L3_MON`` file of the emulated node, or why it could not be read."""
    try:
        with open(os.path.join(resctrl_root, "info", "L3_MON", name)) as f:
            return f.read().strip()
    except OSError as err:
        return f"unreadable ({err.strerror})"


def _print_watch_commands(echo: Callable[[str], None], runtime_dir: str, port: object,
                          output: str) -> None:  # fmt: skip
    """Where the running pipeline is, and the exact commands to look at it meanwhile."""
    cli = command_prefix()
    run = shlex.quote(runtime_dir)
    echo(f"pipeline running: runtime dir {runtime_dir}, HTTP http://127.0.0.1:{port}")
    echo("watch it from another terminal while it runs:")
    echo(f"  {cli} top --runtime-dir {run}")
    echo(f"  {cli} status --runtime-dir {run}")
    echo(f"  {cli} rotate --runtime-dir {run}")
    echo(f"  curl -s http://127.0.0.1:{port}/metrics")
    echo(f"  {cli} report {shlex.quote(output)}")


def _summary(opts: DemoOptions, pods: list[Pod], output: str, since_ns: int,
             interrupted: bool = False) -> int:  # fmt: skip
    import dataclasses

    from resctrl_pipeline import report

    echo = opts.echo
    try:
        source = report.open_source([output])
        files = [f for f in source.files if os.stat(f).st_mtime_ns >= since_ns]
        table = report.scan(dataclasses.replace(source, files=files), report.Filters()).table
    except (report.ReportError, OSError):
        files = []
    if not files:
        echo(f"no Parquet file was written to {output}")
        return 1
    summaries = {s.key: s for s in report.rank(table)}
    header = ("POD", "KIND", "ROWS", "MEAN MiB", "MAX MiB", "CONTAINERS")
    rows = [header]
    for pod in pods:
        s = summaries.get(pod.uid)
        if s is None:
            rows.append((f"demo/{pod.name}", pod.kind, "0", "-", "-", "-"))
            continue
        rows.append((f"demo/{pod.name}", pod.kind, str(s.samples),
                     f"{s.occupancy_mean / 2**20:.2f}", f"{s.occupancy_max / 2**20:.2f}",
                     f"{s.reconciled}/{s.containers} reconciled"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    echo("")
    for r in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    total = sum(s.samples for s in summaries.values())
    echo(f"\n{total} rows in {len(files)} Parquet file(s) under {output}")
    cli = command_prefix()
    echo(f"inspect them with: {cli} report {shlex.quote(output)}")
    echo(f"  or draw them:    {cli} report {shlex.quote(output)} --plot occupancy.png")
    missing = [p.name for p in pods if p.uid not in summaries]
    if missing and interrupted:
        echo(f"no rows (interrupted before they were sampled) for: {', '.join(missing)}")
        return 1
    if missing:
        echo(f"no rows for: {', '.join(missing)}")
        return 1
    return 0
