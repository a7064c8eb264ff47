"""The benchmark suite's bookkeeping (no benchmark runs here, and nothing is timed).

CI runs the suite itself as ``scripts/bench.py all --quick``; these tests pin what
that cannot show: regenerating ``docs/benchmarks.md`` keeps the hand-written part and
the blocks of benchmarks that did not run.
"""

from __future__ import annotations

import pytest

from bench.report import MARKER, Facts, Section, Table, Target, fit_slope, p99, splice

FACTS = Facts("2026-01-01 00:00 UTC", "cpu", 2, "6.1", "3.11.7", "1024/4096", 0.5, 0.7)


def _section(name: str, value: str) -> Section:
    table = Table("t", ["path", "median ms"])
    table.add("x", value)
    return Section(name, f"Title {name}", FACTS, [table], [Target("goal", value, True)])


def test_splice_keeps_the_intro_and_other_blocks_and_orders_them() -> None:
    intro = "# Benchmarks\n\nHand-written.\n\n"
    first = splice(intro, [_section("b", "1"), _section("a", "2")], ["a", "b"])
    assert first.startswith(intro + MARKER)
    assert first.index("<!-- bench:a -->") < first.index("<!-- bench:b -->")
    second = splice(first, [_section("b", "3")], ["a", "b"])
    assert second.startswith(intro + MARKER)
    assert "| x | 2 |" in second and "| x | 3 |" in second and "| x | 1 |" not in second
    assert splice(second, [_section("b", "3")], ["a", "b"]) == second


def test_splice_without_marker_keeps_the_whole_document() -> None:
    out = splice("# Old notes\n", [_section("a", "1")], ["a"])
    assert out.startswith("# Old notes\n\n" + MARKER)


def test_statistics() -> None:
    assert p99([float(i) for i in range(1, 201)]) == 198.0
    assert p99([3.0, 1.0, 2.0]) == 3.0
    assert fit_slope([100, 500, 2000], [1.0, 5.0, 20.0]) == pytest.approx(0.01)
    assert fit_slope([5, 5], [1.0, 2.0]) == 0.0
    with pytest.raises(ValueError):
        p99([])
