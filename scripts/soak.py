#!/usr/bin/env python3
"""Soak test: the real ``resctrl-pipeline up`` against the emulated node, with many pods
and continuous churn, for a long time; fails if anything grows without bound.

Every ``--every`` seconds it records, per process (supervisor and the four actors),
resident memory and open descriptors, and for the node the monitoring groups, live
pods, Parquet files, hidden (in-progress) files, rows written, RMIDs in limbo and
restarts. At the end it fits a least-squares line through the second half of each
watched series (the first half is warm-up: buffers filling, files opening, allocators
reaching their working set) and fails when the line adds more than ``--max-growth`` of
the series' level over that half (with an absolute floor per kind, so that noise on a
small value does not count) *and* the second half goes above everything the first
half reached by more than that floor: a series that keeps within the band it had
already reached is bounded, whatever the slope of its wobbles. Series that grow by
design (files, rows) are recorded, not judged; groups are judged as groups minus live
pods (a leak, not churn).

The writer's resident memory needs 5-12 minutes at 500 pods to reach its working set
(the allocator's, 110-130 MiB, rising and falling with the files): hence the default
of 30 minutes; a 15-minute run may still see it climbing.

``--from-csv FILE`` judges and plots a recorded run again without running anything.

Writes a CSV (one row per sample) and a PNG plot. Needs root and FUSE, like the demo.

Usage:
    .venv/bin/python scripts/soak.py --pods 500 --duration 30m \
        --csv docs/soak.csv --plot docs/soak.png

Pods are ``sleep`` processes (cheap, so that 500 fit on a 2-core machine); the churn
replaces ``--churn`` pods a minute, oldest first. Exit status 0 when nothing grew, 1
when something did (the report says what), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from resctrl_pipeline.config import parse_duration
from resctrl_pipeline.demo import missing_prerequisites

PROCESSES = ("supervisor", "nri-listener", "reconciler", "sampler", "writer")
#: Absolute growth (over the second half) below which a trend is noise, per kind.
FLOORS = {"rss_mib": 8.0, "fds": 16.0, "leaked_groups": 2.0, "hidden_files": 2.0}


@dataclass
class SoakPod:
    uid: str
    proc: subprocess.Popen[bytes]
    container_id: str

    @property
    def parent(self) -> str:
        return f"/kubepods/besteffort/pod{self.uid}"


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def judge(rows: list[dict[str, float]], max_growth: float) -> list[str]:
    """Series that grow without bound: the second half's fitted line rises more than
    allowed over that half, and the second half exceeds the first half's maximum."""
    if len(rows) < 8:
        return ["too few samples to judge (run longer or sample more often)"]
    first, half = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    span = half[-1]["t"] - half[0]["t"]
    problems = []
    for key in rows[0]:
        kind = next((k for k in FLOORS if key.startswith(k)), None)
        if kind is None:
            continue
        xs, ys = [r["t"] for r in half], [r[key] for r in half]
        growth = slope(xs, ys) * span
        level = max(abs(sum(ys) / len(ys)), 1.0)
        above = max(ys) - max(r[key] for r in first)
        if growth > max(FLOORS[kind], max_growth * level) and above > FLOORS[kind]:
            problems.append(
                f"{key}: +{growth:.1f} over the second half ({span:.0f}s, level {level:.1f}), "
                f"{above:+.1f} above the first half's maximum"
            )
    return problems


class Soak:
    """The emulated node, the pipeline, the pods and the churn."""

    def __init__(self, args: argparse.Namespace) -> None:
        from resctrl_pipeline.emulator.node import EmulatedNode

        self.args = args
        self.work = tempfile.mkdtemp(prefix="rp-soak-", dir="/tmp")
        self.node = EmulatedNode(
            os.path.join(self.work, "node"), num_rmids=args.pods * 2 + 64, mbm=args.mbm
        )
        os.makedirs(self.node.work, exist_ok=True)
        self.output = os.path.join(self.work, "out")
        self.log = os.path.join(self.work, "up.log")
        self.pods: deque[SoakPod] = deque()
        self.started = 0

    def start_pod(self) -> None:
        uid = str(uuid.uuid4())
        proc = subprocess.Popen(["sleep", "1000000"], stdin=subprocess.DEVNULL)
        pod = SoakPod(uid, proc, uuid.uuid4().hex + uuid.uuid4().hex)
        rt = self.node.runtime
        rt.add_pod(uid, "soak", f"pod-{self.started}", pod.parent)
        self.node.cgroups.attach(f"kubepods/besteffort/pod{uid}/{pod.container_id}", [proc.pid])
        rt.add_container(
            pod.container_id, uid, f"{pod.parent}/{pod.container_id}", proc.pid, name="sleep"
        )
        self.pods.append(pod)
        self.started += 1

    def stop_pod(self, pod: SoakPod) -> None:
        self.node.runtime.remove_pod(pod.uid)
        pod.proc.kill()
        pod.proc.wait()
        self.node.cgroups.remove(f"kubepods/besteffort/pod{pod.uid}")

    def pids(self) -> dict[str, int]:
        doc = self.node.pids()
        out = {"supervisor": int(doc.get("supervisor", 0))}
        out.update({a: int(p) for a, p in doc.get("actors", {}).items()})
        return out

    def sample(self, t0: float) -> dict[str, float]:
        pids = self.pids()
        row: dict[str, float] = {"t": round(time.monotonic() - t0, 1)}
        for name in PROCESSES:
            row[f"rss_mib_{name}"] = round(_rss_mib(pids.get(name, 0)), 2)
        for name in PROCESSES:
            row[f"fds_{name}"] = _fds(pids.get(name, 0))
        tree = self.node.fs.tree
        groups = len(tree.groups())
        row["groups"] = groups
        row["pods"] = len(self.pods)
        row["leaked_groups"] = max(0, groups - len(self.pods))
        row["limbo_rmids"] = len(tree.limbo_rmids())
        row["parquet_files"] = len(glob.glob(os.path.join(self.output, "*.parquet")))
        row["hidden_files"] = len(glob.glob(os.path.join(self.output, ".*")))
        status = self.node.status() or {}
        actors = status.get("actors", {})
        writer = actors.get("writer", {}).get("counters", {})
        sampler = actors.get("sampler", {}).get("counters", {})
        row["rows_flushed"] = float(writer.get("rows_flushed", 0))
        row["samples"] = float(sampler.get("samples", 0))
        row["missed_ticks"] = float(sampler.get("missed_ticks_sample", 0))
        row["restarts"] = float(sum(a.get("restarts", 0) for a in actors.values()))
        return row

    def run(self) -> tuple[list[dict[str, float]], list[str]]:
        a = self.args
        self.node.start()
        toml = (
            f'[output]\nflush_interval = "5s"\nrotate_interval = "{a.rotate}"\n'
            f'[health]\ninterval = "60s"\n'
        )
        self.node.start_pipeline(
            self.output,
            "--sampling-interval",
            a.sampling_interval,
            "--retry-interval",
            a.retry_interval,
            "--log-level",
            "info",
            config_toml=toml,
            log_path=self.log,
        )
        _wait(lambda: self.node.http("/ready")[0] == 200, 60, "pipeline ready")
        for _ in range(a.pods):
            self.start_pod()
        print(f"{a.pods} pods started; soaking for {a.duration:.0f}s", flush=True)
        rows: list[dict[str, float]] = []
        t0 = time.monotonic()
        end = t0 + a.duration
        churn_every = 60.0 / a.churn if a.churn > 0 else float("inf")
        next_churn, next_sample = t0 + churn_every, t0
        rng = random.Random(1)
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                rows.append(self.sample(t0))
                next_sample += a.every
                if len(rows) % 12 == 1:
                    r = rows[-1]
                    print(
                        f"t={r['t']:.0f}s groups={r['groups']:.0f}/{r['pods']:.0f} "
                        f"rss sampler={r['rss_mib_sampler']:.1f}MiB "
                        f"writer={r['rss_mib_writer']:.1f}MiB files={r['parquet_files']:.0f} "
                        f"restarts={r['restarts']:.0f}",
                        flush=True,
                    )
            if now >= next_churn:
                # Oldest first, plus the odd random one so that removals are not ordered.
                victim = self.pods.popleft() if rng.random() < 0.8 else self._random_pod(rng)
                self.stop_pod(victim)
                self.start_pod()
                next_churn += churn_every
            time.sleep(max(0.0, min(next_sample, next_churn, end) - time.monotonic()))
        code = self.node.stop_pipeline()
        problems = judge(rows, a.max_growth)
        if code != 0:
            problems.append(f"up exited with {code}")
        if rows and rows[-1]["restarts"]:
            problems.append(f"{rows[-1]['restarts']:.0f} actor restarts")
        with open(self.log, errors="replace") as f:
            if "Traceback" in f.read():
                problems.append(f"a traceback in the log ({self.log})")
        return rows, problems

    def _random_pod(self, rng: random.Random) -> SoakPod:
        pod = self.pods[rng.randrange(len(self.pods))]
        self.pods.remove(pod)
        return pod

    def close(self) -> None:
        for pod in self.pods:
            pod.proc.kill()
            pod.proc.wait()
        self.node.close()
        if not self.args.keep_workdir:
            shutil.rmtree(self.work, ignore_errors=True)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def write_csv(rows: list[dict[str, float]], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict[str, float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] / 60 for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    panels = [
        (axes[0][0], "resident memory (MiB)", [f"rss_mib_{p}" for p in PROCESSES]),
        (axes[0][1], "open descriptors", [f"fds_{p}" for p in PROCESSES]),
        (axes[1][0], "groups and pods", ["groups", "pods", "leaked_groups", "limbo_rmids"]),
        (axes[1][1], "output files", ["parquet_files", "hidden_files"]),
    ]
    for ax, label, keys in panels:
        for key in keys:
            name = key.replace("rss_mib_", "").replace("fds_", "")
            ax.plot(t, [r[key] for r in rows], label=name, linewidth=1.2)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=500)
    p.add_argument("--duration", default="30m", help="e.g. 90s, 30m")
    p.add_argument("--churn", type=float, default=30.0, help="pods replaced per minute")
    p.add_argument("--sampling-interval", default="1s")
    p.add_argument("--retry-interval", default="10s")
    p.add_argument("--rotate", default="2m", help="output.rotate_interval")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument(
        "--max-growth",
        type=float,
        default=0.05,
        help="allowed growth over the second half, as a fraction of the level",
    )
    p.add_argument(
        "--mbm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="emulate MBM counters (3x the reads per group)",
    )
    p.add_argument("--csv", default="soak.csv")
    p.add_argument("--plot", default="soak.png")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--from-csv", metavar="FILE", help="judge and plot a recorded run")
    args = p.parse_args(argv)
    try:
        args.duration = parse_duration(args.duration)
    except ValueError as err:
        p.error(f"--duration: {err}")
    if args.pods < 1:
        p.error("--pods must be at least 1")
    if args.from_csv:
        with open(args.from_csv, newline="") as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        if not rows:
            p.error(f"--from-csv: no samples in {args.from_csv}")
        problems = judge(rows, args.max_growth)
        if rows[-1]["restarts"]:
            problems.append(f"{rows[-1]['restarts']:.0f} actor restarts")
        args.pods, args.duration = int(rows[-1]["pods"]), rows[-1]["t"]
    else:
        missing = missing_prerequisites() if os.geteuid() == 0 else ["not root"]
        if missing:
            print("soak needs root and FUSE: " + "; ".join(missing), file=sys.stderr)
            return 2
        soak = Soak(args)
        try:
            rows, problems = soak.run()
        finally:
            with contextlib.suppress(Exception):
                soak.close()
        write_csv(rows, args.csv)
    title = (
        f"soak: {args.pods} pods, {args.churn:g} replaced/min, sampling "
        f"{args.sampling_interval}, {args.duration / 60:.0f} min"
    )
    plot(rows, args.plot, title)
    summary = {
        k: rows[-1][k]
        for k in (
            "t",
            "groups",
            "pods",
            "parquet_files",
            "hidden_files",
            "samples",
            "missed_ticks",
            "restarts",
        )
    }
    summary.update({f"rss_max_{p}": max(r[f"rss_mib_{p}"] for r in rows) for p in PROCESSES})
    print(json.dumps(summary))
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print(f"OK: nothing grew without bound; {args.from_csv or args.csv}, {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
