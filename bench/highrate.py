"""High-rate sampling: the shortest interval at which 500 pods are sampled cleanly.

``up --actors sampler,writer`` on a tmpfs resctrl tree of ``--pods`` groups × 2
domains, fed the group and label snapshots a reconciler and listener would send.
For each interval, shortest last, the sampler's ``missed_ticks_sample`` and
``dropped_occupancy`` counters are read from ``/status`` before and after a window;
an interval passes when neither moved (every tick sampled, every batch reached the
writer). The suite stops at the first interval that fails.

Floor: the C floor's sweep over the same files (``bench.sampler``): no interval can
be shorter than one sweep.

With ``--cpu N`` (default: the last CPU of a machine with two or more) the sampler runs
on a core of its own: ``sampling.cpu = N`` pins it there, and ``up`` with the writer
(and this process) are kept off that CPU. Other work on the machine may still run
there; the "waited for a CPU" column says how much it did.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import zmq

from bench import sampler
from bench.common import Context, Pipeline, cpu_seconds, runqueue_wait, section, wait_for
from bench.report import Section, Table, Target, median
from resctrl_pipeline import codec
from resctrl_pipeline.messages import GroupSnapshot, GroupState, MetadataSnapshot, PodLabels
from resctrl_pipeline.topology import endpoint

__all__ = ["NAME", "TITLE", "add_arguments", "run", "skip_reason"]

NAME = "highrate"
TITLE = "High-rate sampling: shortest interval with no missed tick"
TARGET_MS = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Pods, intervals and window."""
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--intervals", default="50,20,10,5,2", help="milliseconds, longest first")
    parser.add_argument("--seconds", type=float, default=60.0, help="window per interval")
    cpus = sorted(os.sched_getaffinity(0))
    parser.add_argument(
        "--cpu",
        type=int,
        default=cpus[-1] if len(cpus) > 1 else -1,
        help="the sampler's own CPU (sampling.cpu); -1: not pinned",
    )


def skip_reason(ctx: Context) -> str | None:
    """Needs the C floor."""
    return None if ctx.natives else "no C compiler for the floor"


def attempt(
    ctx: Context, root: str, paths: list[str], ms: float, seconds: float, cpu: int = -1
) -> dict[str, float]:
    """Counter deltas over one window at ``ms`` milliseconds per tick (the sampler on
    CPU ``cpu`` alone, -1: anywhere)."""
    work = tempfile.mkdtemp(prefix="hr-", dir=ctx.work)
    run_dir = os.path.join(work, "run")
    mine = os.sched_getaffinity(0)
    env = None
    if cpu >= 0:
        env = {"RESCTRL_SAMPLING_CPU": str(cpu)}
        os.sched_setaffinity(0, mine - {cpu})  # up and the writer inherit it
    up = Pipeline(
        run_dir,
        [
            "--actors",
            "sampler,writer",
            "--resctrl-root",
            root,
            "--output",
            os.path.join(work, "out"),
            "--sampling-interval",
            f"{ms:g}ms",
            "--log-level",
            "warning",
        ],
        log_path=os.path.join(work, "up.log"),
        env=env,
    )
    socks = []
    try:
        sampler_pid = up.actor_pids(["sampler", "writer"])["sampler"]
        states = tuple(
            GroupState(f"{i:08x}-1111-2222-3333-444455556666", p, 1, 1) for i, p in enumerate(paths)
        )
        labels = tuple(PodLabels(s.pod_uid, "bench", f"pod-{i}") for i, s in enumerate(states))
        for edge, msg in (
            ("groups", GroupSnapshot(states)),
            ("metadata", MetadataSnapshot(labels)),
        ):
            sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(endpoint(run_dir, edge))
            sock.send(codec.encode(msg))
            socks.append(sock)
        wait_for(lambda: (up.counter("sampler", "samples") or 0) > 0, 30, "first samples")
        time.sleep(1.5)  # settle: descriptors opened, a few heartbeats

        def read() -> dict[str, float]:
            doc = up.status() or {}
            c = doc.get("actors", {}).get("sampler", {}).get("counters", {})
            return {
                k: float(c.get(k, 0))
                for k in ("missed_ticks_sample", "dropped_occupancy", "ticks", "samples")
            }

        before = read()
        waited = runqueue_wait(sampler_pid)
        busy = cpu_seconds(sampler_pid)
        t0 = time.monotonic()
        time.sleep(seconds)  # the window
        after = read()
        waited = runqueue_wait(sampler_pid) - waited
        busy = cpu_seconds(sampler_pid) - busy
        elapsed = time.monotonic() - t0
        up.check_alive()
        delta = {k: after[k] - before[k] for k in before}
        delta["elapsed"] = elapsed
        delta["waited"] = waited
        delta["cpu"] = busy
        return delta
    finally:
        for sock in socks:
            sock.close()
        up.stop()
        os.sched_setaffinity(0, mine)
        shutil.rmtree(work, ignore_errors=True)


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Intervals from the longest down until one fails."""
    pods, seconds = args.pods, args.seconds
    intervals = [float(x) for x in args.intervals.split(",")]
    if ctx.quick:
        pods, seconds, intervals = 50, 2.0, [10.0]
    assert ctx.natives is not None
    root = tempfile.mkdtemp(prefix="rp-bench-", dir="/dev/shm")
    table = Table(
        f"{pods} pods × 2 domains on tmpfs, sampler + writer, {seconds:.0f} s per interval, "
        + (f"sampler alone on CPU {args.cpu}" if args.cpu >= 0 else "sampler not pinned"),
        [
            "interval ms",
            "ticks",
            "expected",
            "missed ticks",
            "dropped batches",
            "rows/s",
            "sampler waited for a CPU, ms",
            "sampler CPU per tick, ms",
            "floor sweep ms",
            "interval × floor",
            "verdict",
        ],
    )
    best: float | None = None
    try:
        paths = sampler.build_tree(root, pods, 2)
        listing = os.path.join(root, "files.txt")
        with open(listing, "w") as f:
            f.writelines(
                os.path.join(p, "mon_data", f"mon_L3_{d:02d}", "llc_occupancy") + "\n"
                for p in paths
                for d in range(2)
            )
        floor = median(sampler.c_floor(ctx.natives.floor, listing, 30, pods * 2))
        warm = median(sampler.warm_ticks(paths, 30))
        for ms in intervals:
            d = attempt(ctx, root, paths, ms, seconds, args.cpu)
            ok = d["missed_ticks_sample"] == 0 and d["dropped_occupancy"] == 0
            table.add(
                f"{ms:g}",
                f"{d['ticks']:.0f}",
                f"{1000 * d['elapsed'] / ms:.0f}",
                f"{d['missed_ticks_sample']:.0f}",
                f"{d['dropped_occupancy']:.0f}",
                f"{d['samples'] / d['elapsed']:,.0f}",
                f"{d['waited'] * 1e3:,.0f}",
                f"{d['cpu'] * 1e3 / max(d['ticks'], 1):.2f}",
                f"{floor * 1e3:.3f}",
                f"{ms / 1e3 / floor:.0f}",
                "clean" if ok else "missed",
            )
            if not ok:
                break
            best = ms
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table.notes.append(
        "Counters come from the 1 s heartbeats, so a window's ticks are ± one second's worth. "
        "'Waited for a CPU' is the sampler's time runnable but not running over the window "
        "(schedstat): the scheduler's share of its delays, not the code's. "
        "'CPU per tick' is the sampler process's CPU time over the window (every thread, "
        "schedstat) divided by its ticks: a tick in the real process, whose caches go cold "
        f"between ticks. The same tick back to back in this process (warm) takes "
        f"{warm * 1e3:.2f} ms (median of 30)."
    )
    out = section(NAME, TITLE, ctx)
    out.tables.append(table)
    measured = "none clean" if best is None else f"{best:g} ms"
    out.targets.append(
        Target(
            f"shortest clean interval ≤ {TARGET_MS:g} ms at {pods} pods",
            measured,
            best is not None and best <= TARGET_MS,
        )
    )
    return out
