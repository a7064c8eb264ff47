"""``scripts/bench.py``: run benchmarks, print their tables, optionally regenerate docs.

Usage::

    scripts/bench.py all [--quick] [--write-docs]
    scripts/bench.py sampler [--groups 100,1000,10000] [--domains 2,8] [--write-docs]
    scripts/bench.py {throughput,writer,reconcile,nri,placement,steady,podmetrics,highrate} [...]

``--quick`` shrinks every benchmark to a smoke run (CI: it only checks that the suite
still works; nothing is judged). ``--write-docs`` (refused with ``--quick``) writes
the results into ``docs/benchmarks.md``: ``all`` rebuilds every generated section
from its one run, under one stamp (date, machine, load average before the first and
after the last benchmark; not written when a benchmark failed); a single benchmark
replaces its own section, which then carries its own run's stamp. Each section also
gives the load average before and after its own benchmark. A benchmark that cannot
run here (no FUSE, no C compiler) is reported as skipped, not failed.
Exit status: 0 when every benchmark ran or was skipped, 1 when one failed, 2 on usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from types import ModuleType

from bench import (
    highrate,
    native,
    nri_latency,
    placement,
    podmetrics,
    reconcile,
    sampler,
    steady,
    throughput,
    writer,
)
from bench.common import Context
from bench.report import Section, Stamp, render, splice, summary

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        sampler, throughput, writer, reconcile, nri_latency, placement, steady, podmetrics,
        highrate,
    )
}
"""Every benchmark by subcommand, in the order ``all`` runs them and the docs list them."""

_DOCS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench.py", description=(__doc__ or "").split("\n\n")[0]
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="smoke-run sizes (CI)")
    common.add_argument(
        "--write-docs",
        action="store_true",
        help="write the results into docs/benchmarks.md (all: every section, from this run)",
    )
    common.add_argument("--docs", default=_DOCS, help="the document --write-docs updates")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("all", parents=[common], help="every benchmark with its defaults")
    for name, module in BENCHMARKS.items():
        p = sub.add_parser(name, parents=[common], help=module.TITLE)
        module.add_arguments(p)
    return parser


def _defaults(name: str, base: argparse.Namespace) -> argparse.Namespace:
    """The arguments of benchmark ``name`` at their defaults, plus the common ones."""
    p = argparse.ArgumentParser()
    BENCHMARKS[name].add_arguments(p)
    ns = p.parse_args([])
    for key in ("quick", "write_docs", "docs"):
        setattr(ns, key, getattr(base, key))
    return ns


def _fuse_missing() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    from resctrl_pipeline.demo import missing_prerequisites

    problems = missing_prerequisites()
    return "; ".join(problems) if problems else None


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; see the module docstring for the exit status."""
    args = _parser().parse_args(argv)
    if args.quick and args.write_docs:
        print("error: --quick numbers are not meant for docs/benchmarks.md", file=sys.stderr)
        return 2
    whole = args.command == "all"
    names = list(BENCHMARKS) if whole else [args.command]
    sections: list[Section] = []
    failed = []
    stamp = Stamp.begin()
    started = time.monotonic()
    print(f"# scripts/bench.py {args.command}\n\n_{stamp.line()}_\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="rpb-", dir="/tmp") as work:
        os.chmod(work, 0o700)
        natives = None if native.missing() else native.build(work)
        ctx = Context(args.quick, natives, _fuse_missing(), work)
        for name in names:
            module = BENCHMARKS[name]
            why = module.skip_reason(ctx)
            if why:
                sections.append(Section(name, module.TITLE, quick=ctx.quick, skipped=why))
                print(render(sections[-1:]), flush=True)
                continue
            bench_args = _defaults(name, args) if whole else args
            load_before = os.getloadavg()[0]
            try:
                result: Section = module.run(ctx, bench_args)
            except Exception:
                traceback.print_exc()
                print(f"## {module.TITLE}\n\nFAILED (traceback above)\n", flush=True)
                failed.append(name)
                continue
            result.load = (load_before, os.getloadavg()[0])
            sections.append(result)
            print(render([result]), flush=True)
    stamp = stamp.end((time.monotonic() - started) / 60)
    if len(sections) > 1:
        print(summary(sections).markdown() + "\n")
    print(f"_{stamp.line()}_")
    if args.write_docs and failed and whole:
        print(
            f"not updating {args.docs}: {', '.join(failed)} failed, and the page shows one "
            "whole run",
            file=sys.stderr,
        )
    elif args.write_docs and sections:
        try:
            with open(args.docs, encoding="utf-8") as f:
                document = f.read()
        except FileNotFoundError:
            document = "# Benchmarks\n"
        with open(args.docs, "w", encoding="utf-8") as f:
            f.write(splice(document, sections, list(BENCHMARKS), stamp, whole))
        print(f"updated {args.docs}")
        for figure in (fig for s in sections for fig in s.figures):
            path = os.path.join(os.path.dirname(os.path.abspath(args.docs)), figure.name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(figure.svg)
            print(f"wrote {path}")
    return 1 if failed else 0
