"""Steady state on the emulated node: CPU and memory of the whole pipeline by pod count.

For each pod count: a real ``up`` (all four actors, 1 s sampling, default retry and
snapshot intervals) on the emulated node, pods announced through the NRI runtime
(one tiny C idle process per pod), on two resctrl backends (:mod:`bench.emunode`):
the FUSE emulator in its own process with ``num_rmids`` above the pod count, and a
tmpfs tree (the pipeline's own share: every counter read and ``tasks`` read costs a
tmpfs read instead of a round trip to a Python FUSE server). Once every pod has a
reconciled group and the sampler reads all of them, the CPU time of the supervisor
and the four actors (every thread, from schedstat) is taken over a window, and RSS,
PSS and USS at its end.
Neither this process, nor the FUSE server, nor the pods are counted.

The growth with pods is the least-squares slope over the pod counts, per process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

from bench.common import Context, Pipeline, cpu_seconds, memory_mb, section, wait_for
from bench.report import Section, Table, Target, fit_slope, median

__all__ = ["NAME", "TITLE", "add_arguments", "run", "skip_reason"]

NAME = "steady"
TITLE = "Steady state: CPU and memory of the whole pipeline by pod count"
CPU_TARGET = 0.5  # % of one core, at 500 pods
RSS_TARGET = 150.0  # MiB, all processes
PROCESSES = ("supervisor", "nri-listener", "reconciler", "sampler", "writer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Pod counts and the measurement window."""
    parser.add_argument("--pods", default="100,500,2000", help="comma-separated pod counts")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--resctrl", default="fuse,tmpfs", help="backends: fuse, tmpfs")


def skip_reason(ctx: Context) -> str | None:
    """Needs FUSE and the idle program."""
    if ctx.fuse_missing:
        return f"needs FUSE: {ctx.fuse_missing}"
    return None if ctx.natives else "no C compiler for the idle pods"


Measure = dict[str, tuple[float, float, float, float]]  # process → (cpu %, rss, pss, uss)
Counters = dict[str, float]


def measure(
    ctx: Context,
    pods: int,
    seconds: float,
    tmpfs: bool,
    env: dict[str, str] | None = None,
    scrape_every: float = 0.0,
    cpu: Callable[[int], float] = cpu_seconds,
) -> tuple[Measure, Counters]:
    """Per-process CPU % and memory at ``pods`` pods; also a few pipeline counters.

    ``env`` goes to ``up`` (e.g. ``RESCTRL_POD_METRICS``); with ``scrape_every`` > 0,
    ``/metrics`` is fetched that often during the window, as a Prometheus would, and
    the counters get the scrape's size and time (median). ``cpu`` reads a process's
    CPU seconds. The counters include the 1-minute load average at the start and at
    the end of the window (``load before``, ``load after``).
    """
    from bench.emunode import BenchNode

    assert ctx.natives is not None
    work = tempfile.mkdtemp(prefix="st-", dir=ctx.work)
    node = BenchNode(os.path.join(work, "node"), ctx.natives.idle, num_rmids=pods + 64, tmpfs=tmpfs)
    up: Pipeline | None = None
    try:
        node.start()
        burst = node.spawn(pods)
        up = Pipeline(
            os.path.join(work, "run"),
            [
                *node.flags(os.path.join(work, "out")),
                "--sampling-interval",
                "1s",
                "--log-level",
                "warning",
            ],
            env=env,
            log_path=os.path.join(work, "up.log"),
        )
        node.wait_plugin()
        for pod in burst:
            node.announce(pod)

        def settled() -> bool:
            doc = up.status() or {}
            actors = doc.get("actors", {})
            rec = actors.get("reconciler", {}).get("gauges", {})
            smp = actors.get("sampler", {}).get("gauges", {})
            return bool(
                rec.get("containers_reconciled") == pods
                and smp.get("pods") == pods
                and smp.get("pods_failed") == 0
            )

        wait_for(settled, 120 + pods / 10, f"{pods} pods reconciled and sampled")
        time.sleep(1.0 if ctx.quick else 5.0)  # a few ticks of steady state before the window
        pids = {"supervisor": up.proc.pid, **up.actor_pids(list(PROCESSES[1:]))}
        samples0 = up.counter("sampler", "samples") or 0.0
        load_before = os.getloadavg()[0]
        before = {n: cpu(p) for n, p in pids.items()}
        t0 = time.monotonic()
        scrapes: list[tuple[int, float]] = []
        if scrape_every > 0:
            while time.monotonic() - t0 < seconds:
                scrapes.append(up.scrape("/metrics"))
                time.sleep(max(0.0, min(scrape_every, seconds - (time.monotonic() - t0))))
        else:
            time.sleep(seconds)  # the measurement window itself
        elapsed = time.monotonic() - t0
        after = {n: cpu(p) for n, p in pids.items()}
        load_after = os.getloadavg()[0]
        result: Measure = {}
        for name, pid in pids.items():
            share = 100 * (after[name] - before[name]) / elapsed
            result[name] = (share, *memory_mb(pid))
        up.check_alive()
        time.sleep(1.1)  # one more heartbeat, so that the counters cover the window
        counters = {
            "rows/s": ((up.counter("sampler", "samples") or 0.0) - samples0) / elapsed,
            "missed ticks": up.counter("sampler", "missed_ticks_sample") or 0.0,
            "restarts": float(
                sum(a.get("restarts", 0) for a in (up.status() or {}).get("actors", {}).values())
            ),
            "load before": load_before,
            "load after": load_after,
        }
        if scrapes:
            counters["scrape bytes"] = float(median([b for b, _ in scrapes]))
            counters["scrape ms"] = median([1000 * t for _, t in scrapes])
            counters["scrapes"] = float(len(scrapes))
        return result, counters
    finally:
        if up is not None:
            up.stop()
        node.close()
        shutil.rmtree(work, ignore_errors=True)


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Each backend and pod count in turn; targets at 500 pods (or the closest count)."""
    counts = [int(x) for x in args.pods.split(",")]
    backends = args.resctrl.split(",")
    seconds = args.seconds
    if ctx.quick:
        counts, seconds = [20], 3.0
    out = section(NAME, TITLE, ctx)
    for backend in backends:
        results = {n: measure(ctx, n, seconds, backend == "tmpfs") for n in counts}
        out.tables += _tables(backend, seconds, counts, results)
        at = min(counts, key=lambda n: abs(n - 500))
        cpu, rss = (float(sum(results[at][0][p][i] for p in PROCESSES)) for i in (0, 1))
        out.targets.append(
            Target(
                f"total CPU < {CPU_TARGET:g} % of one core at {at} pods ({backend})",
                f"{cpu:.3f} %",
                cpu < CPU_TARGET,
            )
        )
        out.targets.append(
            Target(
                f"total RSS < {RSS_TARGET:g} MiB at {at} pods ({backend})",
                f"{rss:.1f} MiB (PSS {sum(results[at][0][p][2] for p in PROCESSES):.1f})",
                rss < RSS_TARGET,
            )
        )
    return out


def _tables(
    backend: str, seconds: float, counts: list[int], results: dict[int, tuple[Measure, Counters]]
) -> list[Table]:
    table = Table(
        f"resctrl on {backend}: per process, {seconds:.0f} s window at 1 s sampling",
        ["pods", "process", "CPU % of one core", "RSS MiB", "PSS MiB", "USS MiB"],
    )
    for n, (m, counters) in results.items():
        for name in PROCESSES:
            cpu, rss, pss, uss = m[name]
            table.add(n, name, f"{cpu:.3f}", f"{rss:.1f}", f"{pss:.1f}", f"{uss:.1f}")
        tot = [sum(m[p][i] for p in PROCESSES) for i in range(4)]
        table.add(n, "**total**", *(f"**{v:.{1 if i else 3}f}**" for i, v in enumerate(tot)))
        table.notes.append(
            f"{n} pods: {counters['rows/s']:.0f} rows/s sampled, "
            f"{counters['missed ticks']:.0f} missed ticks, {counters['restarts']:.0f} restarts; "
            f"load average {counters['load before']:.2f} → {counters['load after']:.2f} "
            "over the window."
        )
    table.notes.append(
        "RSS counts shared pages (the interpreter, libzmq, pyarrow's libraries) once per "
        "process; PSS divides them among the processes sharing them."
    )
    if len(counts) < 2:
        return [table]
    xs = [float(n) for n in counts]
    growth = Table(
        f"resctrl on {backend}: growth with pods (least-squares slope over the pod counts)",
        ["process", "CPU % per 1,000 pods", "RSS MiB per 1,000 pods"],
    )
    for name in (*PROCESSES, "total"):
        names = PROCESSES if name == "total" else (name,)
        cpus = [float(sum(results[n][0][p][0] for p in names)) for n in counts]
        rsss = [float(sum(results[n][0][p][1] for p in names)) for n in counts]
        growth.add(name, f"{1000 * fit_slope(xs, cpus):.3f}", f"{1000 * fit_slope(xs, rsss):.1f}")
    return [table, growth]
