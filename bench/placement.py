"""Container up → every thread in its pod's group: latency under a burst.

A burst of ``--containers`` containers (one pod each) whose processes already run
``--threads`` threads when StartContainer arrives (the worst case: the fast path
places the init pid, the reconciler has to read the cgroup's thread list and move
every other thread). Measured two ways:

* **FUSE**: a real ``up`` on the emulated node. The resctrl tree is served in this
  process and records when each thread first entered its pod's group; a container's
  latency is from the moment its StartContainer was handed to the NRI runtime to the
  last of its threads placed. The emulator's Python FUSE server costs far more per
  ``tasks`` write than the kernel, and shares the 2 cores with the pipeline.
* **tmpfs seam** — the pipeline's own share: the reconciler core alone, driven with
  the same burst as encoded messages (decode + handle, as its actor does) over a
  cgroup v2 tree on /dev/shm and :class:`PlainDirResctrlOps`; a container's latency
  is from the start of the burst to the end of its ContainerUp's handling.

Each half runs several bursts (``--runs`` through ``up``, ``--seam-runs`` of the
cheap seam); the table gives the p99 per run as min / median / max and the targets
are judged on the median run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

from bench import reconcile
from bench.common import Context, Pipeline, section, wait_for
from bench.report import Section, Spread, Table, Target, judged_on, median, p99
from resctrl_pipeline import codec
from resctrl_pipeline.messages import ContainerUp, LifecycleSnapshot

if TYPE_CHECKING:
    from bench.emunode import BenchPod

__all__ = ["NAME", "TITLE", "add_arguments", "run", "skip_reason"]

NAME = "placement"
TITLE = "Container up → all threads in the group (burst)"
BUDGET = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Burst shape and runs of each half."""
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument(
        "--runs", type=int, default=3, help="bursts through `up` on FUSE (judged on the median)"
    )
    parser.add_argument(
        "--seam-runs", type=int, default=9, help="tmpfs-seam bursts (judged on the median)"
    )


def skip_reason(ctx: Context) -> str | None:
    """The FUSE half needs FUSE and the idle program; the tmpfs half always runs."""
    return None


def fuse_burst(ctx: Context, containers: int, threads: int) -> list[float]:
    """Per-container latency in seconds on the emulated node."""
    from bench.emunode import BenchNode
    from resctrl_pipeline.emulator.resctrlnodes import Node, NodeKind
    from resctrl_pipeline.emulator.resctrltree import ResctrlTree

    class TimedTree(ResctrlTree):
        """Records when each thread first entered each monitoring group."""

        def __init__(self, num_rmids: int) -> None:
            super().__init__(num_rmids=num_rmids)
            self.entered: dict[tuple[int, str], float] = {}

        def write(self, node: Node, data: bytes, writer_tid: int) -> None:
            super().write(node, data, writer_tid)
            text = data.strip()
            if node.kind is NodeKind.TASKS and node.group is not None and text.isdigit():
                self.entered.setdefault((int(text), node.group.name), time.monotonic())

    assert ctx.natives is not None
    work = tempfile.mkdtemp(prefix="pl-", dir=ctx.work)
    tree = TimedTree(containers + 64)
    node = BenchNode(
        os.path.join(work, "node"), ctx.natives.idle, num_rmids=containers + 64, tree=tree
    )
    up: Pipeline | None = None
    try:
        node.start()
        pods = node.spawn(containers, threads)
        up = Pipeline(
            os.path.join(work, "run"),
            [*node.flags(os.path.join(work, "out")), "--log-level", "warning"],
            log_path=os.path.join(work, "up.log"),
        )
        node.wait_plugin()
        wait_for(lambda: (up.status() or {}).get("ready"), 60, "/ready")
        started: dict[str, float] = {}
        for pod in pods:
            node.run_pod(pod)
            started[pod.uid] = time.monotonic()
            node.start_container(pod)

        def placed(pod: BenchPod) -> bool:
            return all((t, f"pod_{pod.uid}") in tree.entered for t in pod.tids)

        wait_for(lambda: all(placed(p) for p in pods), 300, "every thread placed")
        groups = tree.groups()
        for pod in pods:  # the model agrees: every thread is in its group now
            if not set(pod.tids) <= groups[f"pod_{pod.uid}"].tids:
                raise RuntimeError(f"pod {pod.uid}: threads not in its group")
        up.check_alive()
        return [
            max(tree.entered[(t, f"pod_{p.uid}")] for t in p.tids) - started[p.uid] for p in pods
        ]
    finally:
        if up is not None:
            up.stop()
        node.close()
        shutil.rmtree(work, ignore_errors=True)


def seam_burst(ctx: Context, containers: int, threads: int) -> list[float]:
    """Per-container latency in seconds of the reconciler core on tmpfs."""
    base = tempfile.mkdtemp(prefix="rp-bench-", dir="/dev/shm")
    try:
        snapshot = reconcile.build(base, "v2", containers, 1, threads)
        core = reconcile.reconciler(base)
        core.handle(LifecycleSnapshot((), ()), now=0.0)
        burst = []
        for pod_up, container_up in zip(snapshot.pods, snapshot.containers, strict=True):
            burst += [codec.encode(pod_up), codec.encode(container_up)]
        latencies = []
        clock = time.perf_counter
        t0 = clock()
        for data in burst:
            msg = codec.decode(data).body
            core.handle(msg, now=1.0)  # type: ignore[arg-type]
            if isinstance(msg, ContainerUp):
                latencies.append(clock() - t0)
        reconciled = core.statistics().gauges["containers_reconciled"]
        if reconciled != containers:
            raise RuntimeError(f"{reconciled} of {containers} containers reconciled")
        return latencies
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """The tmpfs seam and the FUSE burst (when FUSE is available), several runs each;
    the targets are judged on the median of the runs' p99."""
    containers, threads, runs, seam_runs = args.containers, args.threads, args.runs, args.seam_runs
    if ctx.quick:
        containers, threads, runs, seam_runs = 10, 5, 1, 1
    if min(runs, seam_runs) < 1:
        raise ValueError("--runs and --seam-runs must be at least 1")
    # Per run: every container's latency. A burst is one sample of the p99, and one
    # preempted run on a shared machine would decide a pooled p99: the median run is
    # judged, and the spread over the runs shown.
    bursts = {
        "tmpfs seam: reconciler core (decode + handle)": [
            seam_burst(ctx, containers, threads) for _ in range(seam_runs)
        ]
    }
    fuse_note = ""
    if ctx.fuse_missing or ctx.natives is None:
        fuse_note = f"FUSE half skipped: {ctx.fuse_missing or 'no C compiler'}."
    else:
        bursts["FUSE emulator: whole pipeline (`up`)"] = [
            fuse_burst(ctx, containers, threads) for _ in range(runs)
        ]
    table = Table(
        f"Burst of {containers} containers × {threads} threads (latency per container)",
        [
            "path",
            "runs",
            "median ms",
            "p99 ms per run: min / median / max",
            "budget ms",
            "median p99 × budget",
        ],
    )
    out = section(NAME, TITLE, ctx)
    for label, per_run in bursts.items():
        spread = Spread.of([p99(lat) for lat in per_run])
        table.add(
            label,
            len(per_run),
            f"{median([x for lat in per_run for x in lat]) * 1e3:.1f}",
            spread.text(digits=1),
            f"{BUDGET * 1e3:g}",
            f"{spread.mid / BUDGET:.2f}",
        )
        out.targets.append(
            Target(
                f"p99 < {BUDGET * 1e3:g} ms ({judged_on(len(per_run))}), {label}",
                f"{spread.mid * 1e3:.1f} ms (runs: {spread.text(digits=1)})",
                spread.mid < BUDGET,
            )
        )
    table.notes.append(
        "In a burst, container i waits for the ones before it: the p99 is about the time "
        "to place the whole burst. The median column pools every container of every run."
    )
    if fuse_note:
        table.notes.append(fuse_note)
    out.tables.append(table)
    return out
