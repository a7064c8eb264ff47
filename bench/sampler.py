"""Sampler sweep: N groups × D domains on a tmpfs tree, against a C floor.

Per sweep over every group (one sampling tick's reading work):

* ``os.pread alone``: a Python loop of bare ``os.pread`` calls on pre-opened files
  (the interpreter's share, without parsing);
* ``python reader``: :class:`PreadReader` alone (pread + parse per counter file);
* ``sampler tick``: the whole :meth:`Sampler.handle_sample_timer` (reads + columns);
* ``sampler tick, per_domain``: the same with ``output.per_domain`` on (the
  ``domains`` column: every value classified per L3 domain);
* ``fallback``: the same tick when no descriptor may stay open (open/read/close);
* ``C floor``: a C program doing the same reads with the same descriptor policy.

The reader keeps at most ``RLIMIT_NOFILE`` (soft) − 128 descriptors open and reads
the groups beyond that with open/read/close; the C floor is given the same budget, so
at 10,000 × 8 (80,000 files, more than the limit) both pay the same mix. The tree
lives on /dev/shm so the kernel's resctrl read cost (an IPI or a work item per
domain) does not drown the user-space cost being measured. Runs are interleaved
(floor, reader, tick, … in rounds) so that load from other work hits all alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

from bench.common import Context, section
from bench.report import Section, Table, Target, median, p99
from resctrl_pipeline.messages import GroupState
from resctrl_pipeline.resctrl.mondata import FEATURES, PreadReader
from resctrl_pipeline.sampling import Sampler

__all__ = [
    "NAME",
    "TITLE",
    "add_arguments",
    "build_tree",
    "c_floor",
    "run",
    "skip_reason",
    "warm_ticks",
]

NAME = "sampler"
TITLE = "Sampler sweep (tmpfs tree) vs a C floor"
TARGET_RATIO = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sizes and repetitions."""
    parser.add_argument("--groups", default="100,1000,10000", help="comma-separated N")
    parser.add_argument("--domains", default="2,8", help="comma-separated D")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--sweeps", type=int, default=6, help="sweeps per round and path")
    parser.add_argument(
        "--mbm", action="store_true", help="also mbm_total_bytes and mbm_local_bytes (3 files)"
    )


def build_tree(
    root: str, groups: int, domains: int, features: tuple[str, ...] = ("llc_occupancy",)
) -> list[str]:
    """A resctrl-like tree: ``info/L3_MON`` and N groups with the ``features`` files per
    domain (default the sampler's mandatory read). Returns the group paths."""
    os.makedirs(os.path.join(root, "info", "L3_MON"))
    with open(os.path.join(root, "info", "L3_MON", "mon_features"), "w") as f:
        f.write("".join(f"{feat}\n" for feat in features))
    with open(os.path.join(root, "info", "L3_MON", "num_rmids"), "w") as f:
        f.write(f"{groups + 1}\n")
    paths = []
    for g in range(groups):
        gp = os.path.join(root, "mon_groups", f"pod_{g:08x}-1111-2222-3333-444455556666")
        for d in range(domains):
            dd = os.path.join(gp, "mon_data", f"mon_L3_{d:02d}")
            os.makedirs(dd)
            for i, feat in enumerate(features):
                with open(os.path.join(dd, feat), "w") as f:
                    f.write(f"{(g * 7919 + d + i) % 50_000_000}\n")
        with open(os.path.join(gp, "tasks"), "w"):
            pass
        paths.append(gp)
    return paths


def c_floor(exe: str, listing: str, sweeps: int, budget: int) -> list[float]:
    """Seconds per sweep of the C floor over the files in ``listing``."""
    out = subprocess.run(
        [exe, listing, str(sweeps), str(budget)], check=True, capture_output=True, text=True
    )
    return [int(x) / 1e9 for x in out.stdout.split()]


def _timed(fn: Callable[[], object], sweeps: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for _ in range(sweeps):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def _sampler(reader: PreadReader, paths: list[str]) -> Sampler:
    sampler = Sampler(reader, with_mbm=reader.mbm, per_domain=reader.per_domain)
    for i, p in enumerate(paths):
        sampler.handle_resctrl_event(GroupState(f"uid-{i}", p, 1, 1))
    return sampler


def warm_ticks(paths: list[str], ticks: int) -> list[float]:
    """Seconds per sampler tick over the groups at ``paths``, back to back in this
    process (caches warm), after one tick that opens the descriptors."""
    reader = PreadReader()
    try:
        tick = _sampler(reader, paths).handle_sample_timer
        tick()
        return _timed(tick, ticks)
    finally:
        reader.close()


def measure(
    exe: str, groups: int, domains: int, rounds: int, sweeps: int, mbm: bool = False
) -> tuple[dict[str, list[float]], int, int]:
    """Seconds per sweep by path; also the descriptors the reader kept and its budget."""
    root = tempfile.mkdtemp(prefix="rp-bench-", dir="/dev/shm")
    try:
        features = FEATURES if mbm else FEATURES[:1]
        paths = build_tree(root, groups, domains, features)
        files = [
            os.path.join(p, "mon_data", f"mon_L3_{d:02d}", feat)
            for p in paths
            for d in range(domains)
            for feat in features
        ]
        listing = os.path.join(root, "files.txt")
        with open(listing, "w") as f:
            f.writelines(name + "\n" for name in files)
        reader = PreadReader(mbm=mbm)
        budget = reader.fd_budget
        # Python's own floor: the bare system call, when the files fit twice in the
        # budget (the reader holds one descriptor per file already).
        fds = [os.open(name, os.O_RDONLY) for name in files] if 2 * len(files) <= budget else []
        hot = _sampler(reader, paths)
        cold = _sampler(PreadReader(mbm=mbm, fd_budget=0), paths)
        # What the plain reader and the bare descriptors leave of the budget.
        spare = max(0, budget - min(len(files), budget) - len(fds) - 256)
        domains_reader = PreadReader(mbm=mbm, per_domain=True, fd_budget=spare)
        per_domain = _sampler(domains_reader, paths)
        hot.handle_sample_timer()  # steady state: descriptors opened, plan built
        cold.handle_sample_timer()
        per_domain.handle_sample_timer()

        def sweep_reader() -> None:
            for p in paths:
                reader.read(p)

        def sweep_pread() -> None:
            for fd in fds:
                os.pread(fd, 32, 0)

        fb_sweeps = max(1, sweeps // 3)
        out: dict[str, list[float]] = {k: [] for k in _ROWS}
        for _ in range(rounds):
            out["floor"] += c_floor(exe, listing, sweeps, budget)
            if fds:
                out["pread"] += _timed(sweep_pread, sweeps)
            out["reader"] += _timed(sweep_reader, sweeps)
            out["tick"] += _timed(hot.handle_sample_timer, sweeps)
            out["tick_domains"] += _timed(per_domain.handle_sample_timer, sweeps)
            out["floor_orc"] += c_floor(exe, listing, fb_sweeps, 0)
            out["fallback"] += _timed(cold.handle_sample_timer, fb_sweeps)
        kept = reader.open_fds
        reader.close()
        domains_reader.close()
        for fd in fds:
            os.close(fd)
        return out, kept, budget
    finally:
        shutil.rmtree(root, ignore_errors=True)


_ROWS = {
    "floor": ("C floor: pread, pre-opened (within budget)", "floor"),
    "pread": ("python: os.pread alone, pre-opened (no parsing)", "floor"),
    "reader": ("python reader (pread)", "floor"),
    "tick": ("sampler tick (pread)", "floor"),
    "tick_domains": ("sampler tick, output.per_domain on (pread)", "floor"),
    "floor_orc": ("C floor: open/read/close", "floor_orc"),
    "fallback": ("sampler tick (fallback, fd_budget=0)", "floor_orc"),
}


def run(ctx: Context, args: argparse.Namespace) -> Section:
    """Sweep every N × D; the target is checked at N = 1,000."""
    groups = [int(x) for x in args.groups.split(",")]
    domains = [int(x) for x in args.domains.split(",")]
    rounds, sweeps = args.rounds, args.sweeps
    if ctx.quick:
        groups, domains, rounds, sweeps = [100], [2], 2, 3
    if ctx.natives is None:
        raise RuntimeError("needs a C compiler for the floor")
    table = Table(
        "Seconds per sweep over every group (one tick's reads of "
        + ("llc_occupancy, mbm_total_bytes and mbm_local_bytes)" if args.mbm else "llc_occupancy)"),
        [
            "groups × domains",
            "path",
            "median ms",
            "p99 ms",
            "µs per read (median)",
            "floor ms",
            "× floor",
        ],
    )
    ratios: dict[tuple[int, int], float] = {}
    largest = (0, 0, 0, 0, 0, 0.0, 0.0)  # n, d, files, kept, budget, tick and fallback ratio
    for n in groups:
        for d in domains:
            samples, kept, budget = measure(ctx.natives.floor, n, d, rounds, sweeps, args.mbm)
            files = n * d * (3 if args.mbm else 1)
            for key, (label, floor_key) in _ROWS.items():
                if not samples[key]:
                    continue  # os.pread alone: the files did not fit twice in the budget
                med, floor = median(samples[key]), median(samples[floor_key])
                table.add(
                    f"{n:,} × {d}",
                    label,
                    f"{med * 1e3:.3f}",
                    f"{p99(samples[key]) * 1e3:.3f}",
                    f"{med / files * 1e6:.2f}",
                    f"{floor * 1e3:.3f}",
                    f"{med / floor:.2f}",
                )
            ratios[(n, d)] = median(samples["tick"]) / median(samples["floor"])
            if files > largest[2]:
                fb = median(samples["fallback"]) / median(samples["floor_orc"])
                largest = (n, d, files, kept, budget, ratios[(n, d)], fb)
            if files > budget:
                table.notes.append(
                    f"{n:,} × {d}: {files:,} files > descriptor budget {budget:,}: the reader "
                    f"kept {kept:,} open and read the rest with open/read/close "
                    "(the C floor does the same)."
                )
    table.notes.append(
        f"{rounds} rounds × {sweeps} sweeps per path (fallback: {max(1, sweeps // 3)} per "
        "round), interleaved; p99 by nearest rank. µs per read: the median sweep divided by "
        "the files read (a file per group, domain and event). 'os.pread alone' is the "
        "Python interpreter's share without the reader's parsing and bookkeeping; it runs "
        "only where the files fit twice within the descriptor budget."
    )
    out = section(NAME, TITLE, ctx)
    out.tables.append(table)
    for (n, d), ratio in sorted(ratios.items()):
        if n == 1000:
            out.targets.append(
                Target(
                    f"sampler tick ≤ {TARGET_RATIO:g}× floor at 1,000 × {d}",
                    f"{ratio:.2f}×",
                    ratio <= TARGET_RATIO,
                )
            )
    n, d, files, kept, budget, tick, fb = largest
    out.targets.append(
        Target(
            f"descriptors within RLIMIT_NOFILE at {n:,} × {d} ({files:,} files)",
            f"{kept:,} kept of a budget of {budget:,}; tick {tick:.2f}×, "
            f"fallback {fb:.2f}× its floor",
            kept <= budget,
        )
    )
    return out


def skip_reason(ctx: Context) -> str | None:
    """Needs the C floor."""
    return None if ctx.natives else "no C compiler for the floor"
