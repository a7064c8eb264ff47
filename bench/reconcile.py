"""The reconciler's full re-check pass on a tmpfs fixture tree.

Builds a cgroup tree (v1 ``pids`` hierarchy or v2, cgroupfs driver) with pods ×
containers × threads on /dev/shm and a plain-directory resctrl stand-in
(:class:`PlainDirResctrlOps`) next to it, lets the reconciler place every thread
once (timed separately), then times ``on_retry_timer`` — the steady-state pass that
re-reads every container's threads and every group's ``tasks`` — over several runs.

Floor: reading the same files and nothing else (open + read, in Python): what any
pass must do. Kernel cgroupfs and resctrl reads cost more per file (resctrl
``tasks`` is generated on read), so treat the numbers as a lower bound and a
regression guard, not as a node's real figure. Also printed: the pass per container,
and how long the codec takes to decode the snapshot and one ContainerUp.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from bench.common import Context, section
from bench.report import Section, Table, Target, median, p99
from resctrl_pipeline import codec
from resctrl_pipeline.cgroups import CgroupReader
from resctrl_pipeline.messages import ContainerUp, LifecycleSnapshot, PodUp
from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from resctrl_pipeline.resctrl.plaindir import PlainDirResctrlOps

__all__ = ["NAME", "TITLE", "add_arguments", "build", "reconciler", "run", "skip_reason"]

NAME = "reconcile"
TITLE = "Reconciler re-check pass (tmpfs tree)"

# Files a real container cgroup directory holds besides the thread list, so that the
# directory walk below each container scans a realistic number of entries.
_V1_EXTRA = (
    "cgroup.clone_children",
    "notify_on_release",
    "pids.current",
    "pids.events",
    "pids.max",
)
_V2_EXTRA = (
    "cgroup.events",
    "cgroup.freeze",
    "cgroup.max.depth",
    "cgroup.stat",
    "cgroup.type",
    "cpu.max",
    "cpu.stat",
    "io.stat",
    "memory.current",
    "memory.max",
    "memory.stat",
    "pids.current",
    "pids.max",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Tree shape and runs."""
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--containers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--layout", choices=("v1", "v2"), default="v1")


def skip_reason(ctx: Context) -> str | None:
    """Always runs."""
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def build(base: str, layout: str, pods: int, containers: int, threads: int) -> LifecycleSnapshot:
    """Lay out the cgroup and resctrl trees under ``base``; the snapshot describing them.

    Thread ids are made up (10000 upwards): the plain-directory resctrl stand-in
    accepts any id.
    """
    v2 = layout == "v2"
    cg = os.path.join(base, "cgroup")
    hierarchy = cg if v2 else os.path.join(cg, "pids")
    threads_file, extra = ("cgroup.threads", _V2_EXTRA) if v2 else ("tasks", _V1_EXTRA)
    os.makedirs(hierarchy)
    _write(os.path.join(cg, "cgroup.controllers") if v2 else os.path.join(hierarchy, "tasks"), "")
    os.makedirs(os.path.join(base, "resctrl", "mon_groups"))
    os.makedirs(os.path.join(base, "resctrl", "info", "L3_MON"))
    _write(os.path.join(base, "resctrl", "info", "L3_MON", "num_rmids"), f"{pods + 1}\n")
    _write(os.path.join(base, "resctrl", "tasks"), "")
    pod_msgs, container_msgs = [], []
    tid = 10_000
    for p in range(pods):
        uid = f"{p:08x}-0000-4000-8000-{p:012x}"
        parent = f"/kubepods/besteffort/pod{uid}"
        pod_dir = hierarchy + parent
        os.makedirs(pod_dir)
        _write(os.path.join(pod_dir, threads_file), "")
        pod_msgs.append(PodUp(uid, "bench", f"pod-{p}", parent))
        for c in range(containers):
            cid = f"{p:032x}{c:032x}"
            directory = os.path.join(pod_dir, cid)
            os.mkdir(directory)
            tids = range(tid, tid + threads)
            tid += threads
            _write(os.path.join(directory, threads_file), "".join(f"{t}\n" for t in tids))
            _write(os.path.join(directory, "cgroup.procs"), f"{tids[0]}\n")
            for name in extra:
                _write(os.path.join(directory, name), "0\n")
            container_msgs.append(ContainerUp(cid, uid, f"{parent}/{cid}", tids[0]))
    return LifecycleSnapshot(tuple(pod_msgs), tuple(container_msgs))


def reconciler(base: str) -> Reconciler:
    """A reconciler core over the trees :func:`build` laid out under ``base``."""
    groups = ResctrlGroups(PlainDirResctrlOps(os.path.join(base, "resctrl")))
    return Reconciler(groups, CgroupReader(os.path.join(base, "cgroup")))


def _floor_files(base: str, snapshot: LifecycleSnapshot, layout: str) -> list[str]:
    hierarchy = os.path.join(base, "cgroup", "" if layout == "v2" else "pids")
    threads_file = "cgroup.threads" if layout == "v2" else "tasks"
    files = [os.path.join(hierarchy + c.cgroup_path, threads_file) for c in snapshot.containers]
    files += [
        os.path.join(base, "resctrl", "mon_groups", f"pod_{p.uid}", "tasks") for p in snapshot.pods
    ]
    return files


def _decode_times(snapshot: LifecycleSnapshot, runs: int) -> dict[str, list[float]]:
    """Seconds to decode the encoded ``snapshot`` (``runs`` times) and one of its
    ContainerUp messages (per message, over batches of 1,000)."""
    whole, one = codec.encode(snapshot), codec.encode(snapshot.containers[0])
    out: dict[str, list[float]] = {"snapshot": [], "container": []}
    clock = time.perf_counter
    for _ in range(runs):
        t0 = clock()
        codec.decode(whole)
        out["snapshot"].append(clock() - t0)
        t0 = clock()
        for _ in range(1000):
            codec.decode(one)
        out["container"].append((clock() - t0) / 1000)
    return out


def _read_all(files: list[str]) -> float:
    t0 = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            f.read()
    return time.perf_counter() - t0


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """First placement once, then the re-check pass and its floor, interleaved."""
    pods, containers, threads, runs = args.pods, args.containers, args.threads, args.runs
    if ctx.quick:
        pods, runs = 20, 3
    base = tempfile.mkdtemp(prefix="rp-bench-", dir="/dev/shm")
    try:
        snapshot = build(base, args.layout, pods, containers, threads)
        core = reconciler(base)
        t0 = time.perf_counter()
        core.handle(snapshot, now=0.0)
        first = time.perf_counter() - t0
        stats = core.statistics()
        if stats.gauges["containers_reconciled"] != pods * containers:
            raise RuntimeError(f"not every container reconciled: {stats.gauges}")
        files = _floor_files(base, snapshot, args.layout)
        decode = _decode_times(snapshot, runs)
        passes: list[float] = []
        floors: list[float] = []
        for r in range(runs):
            floors.append(_read_all(files))
            t0 = time.perf_counter()
            changed = core.on_retry_timer(now=float(r + 1))
            passes.append(time.perf_counter() - t0)
            if changed:
                raise RuntimeError("a steady-state pass must not change anything")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    table = Table(
        f"{args.layout} cgroupfs tree on /dev/shm: {pods} pods × {containers} containers × "
        f"{threads} threads, {runs} runs",
        ["path", "median ms", "p99 ms", "floor ms", "× floor"],
    )
    floor = median(floors)
    table.add(
        "reading the same files only (floor)",
        f"{floor * 1e3:.1f}",
        f"{p99(floors) * 1e3:.1f}",
        f"{floor * 1e3:.1f}",
        "1.00",
    )
    table.add(
        "re-check pass (`on_retry_timer`)",
        f"{median(passes) * 1e3:.1f}",
        f"{p99(passes) * 1e3:.1f}",
        f"{floor * 1e3:.1f}",
        f"{median(passes) / floor:.2f}",
    )
    written = stats.counters.get("tasks_written", 0)
    table.notes.append(
        f"First placement (snapshot, {written:,.0f} tids written, one run): {first * 1e3:.0f} ms. "
        f"Re-check pass per container: {median(passes) / (pods * containers) * 1e3:.3f} ms."
    )
    table.notes.append(
        f"Codec (what the reconciler actor does before handling): decoding this snapshot "
        f"({pods:,} pods, {pods * containers:,} containers) takes "
        f"{median(decode['snapshot']) * 1e3:.2f} ms, one ContainerUp "
        f"{median(decode['container']) * 1e6:.2f} µs (medians)."
    )
    out = section(NAME, TITLE, ctx)
    out.tables.append(table)
    out.targets.append(
        Target(
            "no target (regression guard)",
            f"pass {median(passes) * 1e3:.1f} ms for {pods * containers:,} containers",
            None,
        )
    )
    return out
