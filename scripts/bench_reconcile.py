#!/usr/bin/env python3
"""Benchmark one full reconciler re-check pass on a tmpfs fixture tree.

Builds a cgroup tree (v1 ``pids`` hierarchy or v2, cgroupfs driver) with
``--pods`` x ``--containers`` x ``--threads`` on /dev/shm and a plain-directory
resctrl stand-in next to it, lets the reconciler place every thread once (timed
separately), then times ``on_retry_timer`` -- the steady-state pass that re-reads
every container's threads and every group's ``tasks`` -- over ``--runs`` runs.

Costs are those of the Python code plus tmpfs syscalls: kernel cgroupfs and resctrl
reads cost more per file (resctrl ``tasks`` is generated on read), so treat the
numbers as a lower bound and a regression guard, not as a node's real figure.

Usage: .venv/bin/python scripts/bench_reconcile.py [--pods 500] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from resctrl_pipeline.cgroups import CgroupReader
from resctrl_pipeline.messages import ContainerUp, LifecycleSnapshot, PodUp
from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.resctrl.groups import PlainDirResctrlOps, ResctrlGroups

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


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def build(base: str, layout: str, pods: int, containers: int, threads: int) -> LifecycleSnapshot:
    """Lay out the cgroup and resctrl trees; return the snapshot describing them."""
    v2 = layout == "v2"
    cg = os.path.join(base, "cgroup")
    hierarchy = cg if v2 else os.path.join(cg, "pids")
    threads_file, extra = ("cgroup.threads", _V2_EXTRA) if v2 else ("tasks", _V1_EXTRA)
    os.makedirs(hierarchy)
    _write(os.path.join(cg, "cgroup.controllers") if v2 else os.path.join(hierarchy, "tasks"), "")
    os.makedirs(os.path.join(base, "resctrl", "mon_groups"))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--containers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--layout", choices=("v1", "v2"), default="v1")
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()

    base = tempfile.mkdtemp(prefix="rp-bench-", dir=args.dir)
    try:
        t0 = time.perf_counter()
        snapshot = build(base, args.layout, args.pods, args.containers, args.threads)
        built = time.perf_counter() - t0
        groups = ResctrlGroups(PlainDirResctrlOps(os.path.join(base, "resctrl")))
        core = Reconciler(groups, CgroupReader(os.path.join(base, "cgroup")))
        t0 = time.perf_counter()
        core.handle(snapshot, now=0.0)
        first = time.perf_counter() - t0
        stats = core.statistics()
        counters, gauges = stats.counters, stats.gauges
        assert gauges["containers_reconciled"] == args.pods * args.containers, gauges

        samples = []
        for run in range(args.runs):
            t0 = time.perf_counter()
            out = core.on_retry_timer(now=float(run + 1))
            samples.append(time.perf_counter() - t0)
            assert out == [], "steady state must not change anything"
        samples.sort()
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        print(
            f"tree: {args.layout} cgroupfs on {args.dir or tempfile.gettempdir()}, "
            f"{args.pods} pods x {args.containers} containers x {args.threads} threads "
            f"(built in {built:.2f} s)"
        )
        print(
            f"first placement (snapshot, {counters['tasks_written']:.0f} tids written): "
            f"{first * 1e3:.0f} ms"
        )
        print(
            f"re-check pass over {args.runs} runs: "
            f"median {statistics.median(samples) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
            f"min {samples[0] * 1e3:.1f} ms, max {samples[-1] * 1e3:.1f} ms"
        )
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
