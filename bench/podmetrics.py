"""Per-pod metrics at 500 pods: steady CPU with and without, scrape size and time.

The steady-state measurement of :mod:`bench.steady` (a real ``up``, all four actors,
1 s sampling, idle C pods announced through the NRI runtime), run alternately with
``http.pod_metrics`` off and on (``RESCTRL_POD_METRICS``), several rounds, so that a
change of the machine's load hits both alike. In both cases ``/metrics`` is scraped
every ``--scrape-every`` seconds during the window, as a Prometheus would: the cost of
rendering the per-pod series is part of what per-pod metrics cost. With them on, the
sampler encodes a per-pod summary once a second and the supervisor decodes it. CPU
is read from ``/proc/<pid>/stat``, which counts the HTTP server's per-request threads.
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench import steady
from bench.common import Context, process_cpu_seconds, section
from bench.report import Section, Table, Target

__all__ = ["NAME", "TITLE", "add_arguments", "run", "skip_reason"]

NAME = "podmetrics"
TITLE = "Per-pod metrics: steady CPU with and without, scrape size and time"
#: What per-pod metrics may add at 500 pods (% of one core, all processes).
CPU_TARGET = 0.5
PROCESSES = ("supervisor", "sampler", "writer", "reconciler", "nri-listener")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Pod count, window, rounds, backend and scrape period."""
    parser.add_argument("--pods", type=int, default=500, help="pod count")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--resctrl", default="tmpfs", choices=("tmpfs", "fuse"))
    parser.add_argument("--scrape-every", type=float, default=15.0, help="seconds")


def skip_reason(ctx: Context) -> str | None:
    """Same needs as the steady-state benchmark."""
    return steady.skip_reason(ctx)


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Alternate off/on for ``--rounds`` pairs; per-round rows and the mean difference."""
    pods, seconds, rounds = args.pods, args.seconds, args.rounds
    if ctx.quick:
        pods, seconds, rounds = 20, 3.0, 1
    out = section(NAME, TITLE, ctx)
    table = Table(
        f"{pods} pods, resctrl on {args.resctrl}, {seconds:.0f} s windows at 1 s sampling, "
        f"/metrics scraped every {args.scrape_every:g} s",
        ["round", "pod metrics", *(f"{p} CPU %" for p in PROCESSES[:2]), "total CPU %",
         "supervisor RSS MiB", "load", "scrape bytes", "scrape ms"],
    )  # fmt: skip
    totals: dict[str, list[float]] = {"off": [], "on": []}
    per_proc: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    scrape: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for i in range(rounds):
        for mode in ("off", "on"):
            env = {"RESCTRL_POD_METRICS": "true" if mode == "on" else "false"}
            result, counters = steady.measure(
                ctx, pods, seconds, args.resctrl == "tmpfs", env, args.scrape_every,
                cpu=process_cpu_seconds,
            )
            total = sum(result[p][0] for p in PROCESSES)
            totals[mode].append(total)
            for p in PROCESSES:
                per_proc[mode].setdefault(p, []).append(result[p][0])
            scrape[mode].append((counters["scrape bytes"], counters["scrape ms"]))
            table.add(i + 1, mode, *(f"{result[p][0]:.3f}" for p in PROCESSES[:2]),
                      f"{total:.3f}", f"{result['supervisor'][1]:.1f}",
                      f"{os.getloadavg()[0]:.2f}", f"{counters['scrape bytes']:.0f}",
                      f"{counters['scrape ms']:.1f}")  # fmt: skip
    out.tables.append(table)
    diff = Table("Mean over the rounds", ["process", "off CPU %", "on CPU %", "difference"])
    for p in (*PROCESSES, "total"):
        off = statistics.fmean(totals["off"] if p == "total" else per_proc["off"][p])
        on = statistics.fmean(totals["on"] if p == "total" else per_proc["on"][p])
        diff.add(p, f"{off:.3f}", f"{on:.3f}", f"{on - off:+.3f}")
    on_bytes, on_ms = (statistics.fmean(v[i] for v in scrape["on"]) for i in (0, 1))
    off_bytes, off_ms = (statistics.fmean(v[i] for v in scrape["off"]) for i in (0, 1))
    diff.notes.append(
        f"/metrics: {off_bytes / 1024:.0f} KiB in {off_ms:.1f} ms without per-pod series, "
        f"{on_bytes / 1024:.0f} KiB in {on_ms:.1f} ms with them (medians per run, averaged)."
    )
    out.tables.append(diff)
    added = statistics.fmean(totals["on"]) - statistics.fmean(totals["off"])
    out.targets.append(
        Target(
            f"per-pod metrics add < {CPU_TARGET:g} % of one core at {pods} pods",
            f"{added:+.3f} %",
            added < CPU_TARGET,
        )
    )
    return out
