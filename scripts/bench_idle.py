#!/usr/bin/env python3
"""Idle cost of a running pipeline: CPU of all its processes and RSS per actor.

Starts ``resctrl-pipeline up --actors sampler,writer`` on a tmpfs resctrl tree with
N groups (sampling every second), feeds the sampler the group and label snapshots a
reconciler and listener would send, lets it settle, then measures for a window:

* CPU: user+system seconds of the supervisor and every actor over the window,
  as a percentage of one core;
* RSS (and USS) per process and in total.

Usage: scripts/bench_idle.py [--groups 200] [--seconds 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from resctrl_pipeline import codec
from resctrl_pipeline.messages import (
    GroupSnapshot,
    GroupState,
    MetadataSnapshot,
    PodLabels,
)
from resctrl_pipeline.topology import endpoint
from tests.support import make_group, make_resctrl_tree


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--actors", default="sampler,writer")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.groups, args.seconds = 20, 3.0
    work = tempfile.mkdtemp(prefix="rp-idle-", dir="/dev/shm")
    run = os.path.join(work, "run")
    resctrl = os.path.join(work, "resctrl")
    make_resctrl_tree(resctrl, features=("llc_occupancy",))
    uids = [f"{i:08x}-1111-2222-3333-444455556666" for i in range(args.groups)]
    states, labels = [], []
    for uid in uids:
        path = make_group(os.path.join(resctrl, "mon_groups", "pod_" + uid),
                          features=("llc_occupancy",), value=123456)  # fmt: skip
        states.append(GroupState(uid, path, 1, 1))
        labels.append(PodLabels(uid, "bench", "pod-" + uid[:8]))
    cmd = [sys.executable, "-m", "resctrl_pipeline.cli", "up", "--actors", args.actors,
           "--runtime-dir", run, "--resctrl-root", resctrl, "--http-addr", "127.0.0.1:0",
           "--output", os.path.join(work, "out"), "--sampling-interval", "1s",
           "--log-level", "warning"]  # fmt: skip
    up = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        pids = wait_for(lambda: _pids(run, args.actors.split(",")), 30, "actors")
        ctx = zmq.Context.instance()
        feeds = []
        for edge, msg in (("groups", GroupSnapshot(tuple(states))),
                          ("metadata", MetadataSnapshot(tuple(labels)))):  # fmt: skip
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(endpoint(run, edge))
            sock.send(codec.encode(msg))
            feeds.append(sock)
        time.sleep(3.0)  # settle: imports done, descriptors opened, first ticks written
        procs = {"supervisor": psutil.Process(up.pid)}
        procs.update({name: psutil.Process(pid) for name, pid in pids.items()})
        before = {n: p.cpu_times() for n, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(args.seconds)  # the measurement window itself, not synchronisation
        elapsed = time.monotonic() - t0
        after = {n: p.cpu_times() for n, p in procs.items()}
        mem = {n: p.memory_full_info() for n, p in procs.items()}
        print(f"# idle pipeline, {args.groups} groups at 1 s sampling, {elapsed:.0f} s window — "
              f"{platform.node()} {platform.machine()}, {os.cpu_count()} cpus, "
              f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
        print("| process | CPU % of one core | RSS MB | USS MB |")
        print("|---|---|---|---|")
        total_cpu = total_rss = total_uss = 0.0
        for name in procs:
            cpu = (after[name].user + after[name].system - before[name].user
                   - before[name].system) / elapsed * 100  # fmt: skip
            rss, uss = mem[name].rss / 2**20, mem[name].uss / 2**20
            total_cpu, total_rss, total_uss = total_cpu + cpu, total_rss + rss, total_uss + uss
            print(f"| {name} | {cpu:.3f} | {rss:.1f} | {uss:.1f} |")
        print(f"| **total** | **{total_cpu:.3f}** | **{total_rss:.1f}** | **{total_uss:.1f}** |")
        for sock in feeds:
            sock.close()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _pids(run: str, actors: list[str]) -> dict[str, int] | None:
    try:
        with open(os.path.join(run, "pids.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    got = doc.get("actors", {})
    return {a: got[a] for a in actors} if all(a in got for a in actors) else None


if __name__ == "__main__":
    raise SystemExit(main())
