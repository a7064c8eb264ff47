#!/usr/bin/env python3
"""Sampler sweep benchmark: N groups x D domains on a tmpfs tree, against a C floor.

Measures, per sweep over every group (one sampling tick's reading work):

* ``python reader``: :class:`PreadReader` alone (pread + parse per counter file);
* ``sampler tick``: the whole :meth:`Sampler.handle_sample_timer` (reads + columns);
* ``fallback``: the same tick when no descriptor may stay open (open/read/close);
* ``C floor``: a C program doing the same preads on pre-opened descriptors.

The tree lives on /dev/shm (tmpfs) so the kernel's resctrl read cost (an IPI or a
work item per domain) does not drown the user-space cost being measured.

Usage: scripts/bench_sampler.py [--groups 100,1000,10000] [--domains 2,8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from resctrl_pipeline.messages import GroupState
from resctrl_pipeline.resctrl.mondata import PreadReader
from resctrl_pipeline.sampling import Sampler

C_FLOOR = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* argv: list-file sweeps. Opens every path in list-file once, then times sweeps of
   pread+strtoull over all descriptors; prints one line of ns per sweep. */
int main(int argc, char **argv) {
    FILE *list = fopen(argv[1], "r");
    int sweeps = atoi(argv[2]), n = 0, cap = 1024;
    int *fds = malloc(sizeof(int) * cap);
    char path[4096];
    while (fgets(path, sizeof path, list)) {
        path[strcspn(path, "\n")] = 0;
        if (n == cap) fds = realloc(fds, sizeof(int) * (cap *= 2));
        fds[n] = open(path, O_RDONLY);
        if (fds[n++] < 0) { perror(path); return 1; }
    }
    char buf[64];
    volatile unsigned long long sink = 0;
    for (int s = 0; s < sweeps; s++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < n; i++) {
            ssize_t r = pread(fds[i], buf, sizeof buf - 1, 0);
            buf[r > 0 ? r : 0] = 0;
            sink += strtoull(buf, NULL, 10);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    }
    return 0;
}
"""


def build_tree(root: str, groups: int, domains: int) -> list[str]:
    """Groups with llc_occupancy only (the sampler's mandatory read) per domain."""
    paths = []
    for g in range(groups):
        gp = os.path.join(root, "mon_groups", f"pod_{g:08x}-0000-0000-0000-000000000000")
        for d in range(domains):
            dd = os.path.join(gp, "mon_data", f"mon_L3_{d:02d}")
            os.makedirs(dd)
            with open(os.path.join(dd, "llc_occupancy"), "w") as f:
                f.write(f"{(g * 7919 + d) % 50_000_000}\n")
        paths.append(gp)
    return paths


def compile_floor(workdir: str) -> str:
    src = os.path.join(workdir, "floor.c")
    exe = os.path.join(workdir, "floor")
    with open(src, "w") as f:
        f.write(C_FLOOR)
    subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    return exe


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def time_sweeps(fn: object, sweeps: int) -> list[float]:
    out = []
    for _ in range(sweeps):
        t0 = time.perf_counter_ns()
        fn()  # type: ignore[operator]
        out.append(float(time.perf_counter_ns() - t0))
    return out


def bench_one(groups: int, domains: int, sweeps: int, exe: str) -> list[tuple[str, list[float]]]:
    root = tempfile.mkdtemp(prefix="rp-bench-", dir="/dev/shm")
    try:
        paths = build_tree(root, groups, domains)
        files = [
            os.path.join(p, "mon_data", f"mon_L3_{d:02d}", "llc_occupancy")
            for p in paths
            for d in range(domains)
        ]
        listing = os.path.join(root, "files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(files) + "\n")
        out = subprocess.run(
            [exe, listing, str(sweeps)], check=True, capture_output=True, text=True
        )
        floor = [float(x) for x in out.stdout.split()]

        reader = PreadReader(mbm=False)
        for p in paths:
            reader.read(p)  # open descriptors once, as in steady state

        def sweep_reader() -> None:
            for p in paths:
                reader.read(p)

        results = [("C floor (pread, pre-opened)", floor)]
        results.append(("python reader (pread)", time_sweeps(sweep_reader, sweeps)))
        sampler = Sampler(reader, with_mbm=False)
        for i, p in enumerate(paths):
            sampler.handle_resctrl_event(GroupState(f"uid-{i}", p, 1, 1))
        results.append(("sampler tick (pread)", time_sweeps(sampler.handle_sample_timer, sweeps)))
        reader.close()
        cold = PreadReader(mbm=False, fd_budget=0)
        fallback = Sampler(cold, with_mbm=False)
        for i, p in enumerate(paths):
            fallback.handle_resctrl_event(GroupState(f"uid-{i}", p, 1, 1))
        fb_sweeps = max(3, sweeps // 4)
        results.append(
            ("sampler tick (fallback)", time_sweeps(fallback.handle_sample_timer, fb_sweeps))
        )
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="100,1000,10000")
    parser.add_argument("--domains", default="2,8")
    parser.add_argument("--sweeps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI smoke runs")
    args = parser.parse_args()
    groups = [int(x) for x in args.groups.split(",")]
    domains = [int(x) for x in args.domains.split(",")]
    sweeps = args.sweeps
    if args.quick:
        groups, domains, sweeps = [100], [2], 5
    print(f"# sampler sweep on tmpfs — {platform.node()} {platform.machine()}, "
          f"{os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    print("| groups × domains | what | median ms | p99 ms | reads/s (median) | × floor |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        exe = compile_floor(work)
        for n in groups:
            for d in domains:
                results = bench_one(n, d, sweeps, exe)
                floor_med = statistics.median(results[0][1])
                for name, samples in results:
                    med = statistics.median(samples)
                    rate = n * d / (med / 1e9)
                    p99 = pct(samples, 0.99)
                    print(f"| {n} × {d} | {name} | {med / 1e6:.3f} | {p99 / 1e6:.3f} "
                          f"| {rate:,.0f} | {med / floor_med:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
