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

The floor runs side by side, in the same window: on tmpfs, the ``ticker`` C program
(:mod:`bench.native`) reads every counter file the sampler reads (every group, domain
and event) through descriptors opened once, on the same 1 s deadlines; its CPU is what
a C agent would spend on the reads alone. The target is the whole pipeline's CPU
against that floor at every pod count. 0 pods is the idle pipeline (NRI connected,
nothing to sample), judged against an absolute budget. Wake-ups are the times a
process's threads were scheduled (``schedstat``'s third field), per second.

The growth with pods is the least-squares slope over the pod counts, per process. With
matplotlib installed, the section carries a plot of CPU against pods (pipeline and
floor), written beside ``docs/benchmarks.md`` by ``--write-docs``.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

from bench.common import Context, Pipeline, cpu_seconds, memory_mb, section, wait_for, wakeups
from bench.report import Figure, Section, Table, Target, fit_slope, median

__all__ = ["NAME", "TITLE", "add_arguments", "run", "skip_reason"]

NAME = "steady"
TITLE = "Steady state: CPU and memory of the whole pipeline by pod count"
FLOOR_RATIO = 2.0  # whole pipeline's CPU ≤ this × the C floor's, at every pod count
IDLE_TARGET = 0.1  # % of one core, 0 pods
RSS_TARGET = 150.0  # MiB, all processes, at 500 pods
PSS_TARGET = 100.0  # MiB
FLOOR = "C floor (same reads)"
PLOT = "benchmarks-steady.svg"
PROCESSES = ("supervisor", "nri-listener", "reconciler", "sampler", "writer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Pod counts and the measurement window."""
    parser.add_argument(
        "--pods", default="0,100,500,1000,2000", help="comma-separated pod counts (0: idle)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument(
        "--resctrl",
        default="tmpfs",
        help="backends: tmpfs (judged against the floor), fuse (upper bounds, no floor)",
    )


def skip_reason(ctx: Context) -> str | None:
    """Needs FUSE and the idle program."""
    if ctx.fuse_missing:
        return f"needs FUSE: {ctx.fuse_missing}"
    return None if ctx.natives else "no C compiler for the idle pods"


#: process → (cpu %, rss, pss, uss, wake-ups/s); the floor, when run, as :data:`FLOOR`.
Measure = dict[str, tuple[float, float, float, float, float]]
Counters = dict[str, float]


def measure(
    ctx: Context,
    pods: int,
    seconds: float,
    tmpfs: bool,
    env: dict[str, str] | None = None,
    scrape_every: float = 0.0,
    cpu: Callable[[int], float] = cpu_seconds,
    floor: bool = True,
) -> tuple[Measure, Counters]:
    """Per-process CPU % and memory at ``pods`` pods; also a few pipeline counters.

    ``env`` goes to ``up`` (e.g. ``RESCTRL_POD_METRICS``); with ``scrape_every`` > 0,
    ``/metrics`` is fetched that often during the window, as a Prometheus would, and
    the counters get the scrape's size and time (median). ``cpu`` reads a process's
    CPU seconds. The counters include the 1-minute load average at the start and at
    the end of the window (``load before``, ``load after``). With ``floor`` (on tmpfs,
    with pods) the C floor runs during the window and is measured as :data:`FLOOR`.
    """
    from bench.emunode import BenchNode

    assert ctx.natives is not None
    work = tempfile.mkdtemp(prefix="st-", dir=ctx.work)
    node = BenchNode(os.path.join(work, "node"), ctx.natives.idle, num_rmids=pods + 64, tmpfs=tmpfs)
    up: Pipeline | None = None
    ticker: subprocess.Popen[bytes] | None = None
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
        if floor and tmpfs and pods:
            ticker = _start_floor(ctx, node.resctrl_root, work)
            pids[FLOOR] = ticker.pid
        samples0 = up.counter("sampler", "samples") or 0.0
        load_before = os.getloadavg()[0]
        before = {n: (cpu(p), wakeups(p)) for n, p in pids.items()}
        t0 = time.monotonic()
        scrapes: list[tuple[int, float]] = []
        if scrape_every > 0:
            while time.monotonic() - t0 < seconds:
                scrapes.append(up.scrape("/metrics"))
                time.sleep(max(0.0, min(scrape_every, seconds - (time.monotonic() - t0))))
        else:
            time.sleep(seconds)  # the measurement window itself
        elapsed = time.monotonic() - t0
        after = {n: (cpu(p), wakeups(p)) for n, p in pids.items()}
        load_after = os.getloadavg()[0]
        result: Measure = {}
        for name, pid in pids.items():
            share = 100 * (after[name][0] - before[name][0]) / elapsed
            woke = (after[name][1] - before[name][1]) / elapsed
            result[name] = (share, *memory_mb(pid), woke)
        if ticker is not None:
            ticker.kill()
            ticker.wait()
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
        if ticker is not None and ticker.poll() is None:
            ticker.kill()
            ticker.wait()
        if up is not None:
            up.stop()
        node.close()
        shutil.rmtree(work, ignore_errors=True)


def _start_floor(ctx: Context, root: str, work: str) -> subprocess.Popen[bytes]:
    """The C floor over every counter file of every pod group under ``root``, ticking
    every second; returns once its files are open."""
    assert ctx.natives is not None
    files = sorted(glob.glob(os.path.join(root, "mon_groups", "*", "mon_data", "*", "*")))
    listing = os.path.join(work, "floor-files")
    with open(listing, "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in files))
    proc = subprocess.Popen(
        [ctx.natives.ticker, listing, "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != b"ready\n":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the C floor did not start over {len(files)} files")
    return proc


def _total(m: Measure, index: int) -> float:
    return float(sum(m[p][index] for p in PROCESSES))


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Each backend and pod count in turn; the floor at every count, memory at 500."""
    counts = [int(x) for x in args.pods.split(",")]
    backends = args.resctrl.split(",")
    seconds = args.seconds
    if ctx.quick:
        counts, seconds = [0, 20], 3.0
    out = section(NAME, TITLE, ctx)
    for backend in backends:
        tmpfs = backend == "tmpfs"
        results = {n: measure(ctx, n, seconds, tmpfs) for n in counts}
        out.tables += _tables(backend, seconds, counts, results)
        for n, (m, _) in results.items():
            total = _total(m, 0)
            if n == 0:
                out.targets.append(
                    Target(
                        f"idle pipeline (0 pods, NRI connected) ≤ {IDLE_TARGET:g} % of one "
                        f"core ({backend})",
                        f"{total:.3f} %, {_total(m, 4):.1f} wake-ups/s",
                        total <= IDLE_TARGET,
                    )
                )
            elif FLOOR in m:
                ratio = total / max(m[FLOOR][0], 1e-9)
                out.targets.append(
                    Target(
                        f"CPU ≤ {FLOOR_RATIO:g}× the C floor at {n} pods ({backend})",
                        f"{total:.3f} % vs {m[FLOOR][0]:.3f} % = {ratio:.1f}×",
                        ratio <= FLOOR_RATIO,
                    )
                )
        with_pods = [n for n in counts if n]
        if with_pods:
            at = min(with_pods, key=lambda n: abs(n - 500))
            m = results[at][0]
            rss, pss = _total(m, 1), _total(m, 2)
            out.targets.append(
                Target(
                    f"memory at {at} pods ({backend}): RSS ≤ {RSS_TARGET:g} MiB, "
                    f"PSS ≤ {PSS_TARGET:g} MiB",
                    f"RSS {rss:.1f} MiB, PSS {pss:.1f} MiB",
                    rss <= RSS_TARGET and pss <= PSS_TARGET,
                )
            )
        if tmpfs and len(with_pods) > 1:
            figure = _plot(results)
            if figure is not None:
                out.figures.append(figure)
    return out


def _plot(results: dict[int, tuple[Measure, Counters]]) -> Figure | None:
    """CPU against pods, per process and the floor, as SVG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    counts = sorted(results)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(counts, [_total(results[n][0], 0) for n in counts], "o-", label="pipeline total")
    for name in PROCESSES:
        ax.plot(counts, [results[n][0][name][0] for n in counts], ".--", lw=1, label=name)
    floors = [n for n in counts if FLOOR in results[n][0]]
    ax.plot(floors, [results[n][0][FLOOR][0] for n in floors], "s-", label=FLOOR)
    ax.plot(
        floors,
        [FLOOR_RATIO * results[n][0][FLOOR][0] for n in floors],
        ":",
        color="grey",
        label=f"goal: {FLOOR_RATIO:g}× floor",
    )
    ax.set_xlabel("pods (1 s sampling, llc + MBM, 2 domains, tmpfs)")
    ax.set_ylabel("CPU, % of one core")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    return Figure(PLOT, "CPU of the pipeline and of the C floor against pods", buf.getvalue())


def _tables(
    backend: str, seconds: float, counts: list[int], results: dict[int, tuple[Measure, Counters]]
) -> list[Table]:
    table = Table(
        f"resctrl on {backend}: per process, {seconds:.0f} s window at 1 s sampling",
        ["pods", "process", "CPU % of one core", "wake-ups/s", "RSS MiB", "PSS MiB", "USS MiB"],
    )
    for n, (m, counters) in results.items():
        for name in PROCESSES:
            cpu, rss, pss, uss, woke = m[name]
            cells = (f"{cpu:.3f}", f"{woke:.1f}", f"{rss:.1f}", f"{pss:.1f}", f"{uss:.1f}")
            table.add(n, name, *cells)
        tot = [_total(m, i) for i in range(5)]
        table.add(
            n, "**total**", f"**{tot[0]:.3f}**", f"**{tot[4]:.1f}**",
            *(f"**{v:.1f}**" for v in tot[1:4]),
        )  # fmt: skip
        if FLOOR in m:
            cpu, rss, pss, uss, woke = m[FLOOR]
            table.add(
                n, FLOOR, f"{cpu:.3f}", f"{woke:.1f}", f"{rss:.1f}", f"{pss:.1f}", f"{uss:.1f}"
            )
            table.add(n, "total ÷ floor", f"{tot[0] / max(cpu, 1e-9):.1f}×", "", "", "", "")
        table.notes.append(
            f"{n} pods: {counters['rows/s']:.0f} rows/s sampled, "
            f"{counters['missed ticks']:.0f} missed ticks, {counters['restarts']:.0f} restarts; "
            f"load average {counters['load before']:.2f} → {counters['load after']:.2f} "
            "over the window."
        )
    table.notes.append(
        "RSS counts shared pages (the interpreter, libzmq, pyarrow's libraries) once per "
        "process; PSS divides them among the processes sharing them. The floor reads every "
        "counter file the sampler reads, from C, on the same 1 s deadlines, in the same "
        "window (it is not part of the total)."
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
