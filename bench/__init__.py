"""The benchmark suite behind ``scripts/bench.py``: one module per benchmark.

Every benchmark module provides ``NAME`` (its subcommand), ``TITLE``,
``add_arguments(parser)`` (its options, all with defaults), ``skip_reason(ctx)`` (why
it cannot run on this machine, or None) and ``run(ctx, args)``, which returns a
:class:`bench.report.Section`: tables with median, p99, floor and ratio, and the
targets it checks. :mod:`bench.cli` prints them and, with ``--write-docs``,
regenerates the matching blocks of ``docs/benchmarks.md``. The package is never
imported by ``resctrl_pipeline``; timing goals live here, not in the tests.
"""
