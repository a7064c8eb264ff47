"""The benchmark suite's bookkeeping (nothing is timed or judged here).

CI runs the suite itself as ``scripts/bench.py all --quick``; these tests pin what
that cannot show: regenerating ``docs/benchmarks.md`` keeps the hand-written part,
a whole run replaces every generated section under one stamp, and a benchmark re-run
alone replaces only its own section, which then carries its own stamp.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.report import (
    MARKER,
    Section,
    Spread,
    Stamp,
    Table,
    Target,
    fit_slope,
    p99,
    splice,
    summary,
)

STAMP = Stamp("2026-01-01 00:00 UTC", "cpu", 2, "6.1", "3.11.7", "1024/4096", 0.5, 0.7, 20.0)
LATER = Stamp("2026-01-02 08:00 UTC", "cpu", 2, "6.1", "3.11.7", "1024/4096", 3.0, 4.0, 2.0)


def _section(name: str, value: str, load: tuple[float, float] = (1.0, 2.0)) -> Section:
    table = Table("t", ["path", "median ms"])
    table.add("x", value)
    return Section(name, f"Title {name}", [table], [Target("goal", value, True)], load=load)


def test_a_whole_run_rebuilds_every_section_under_one_stamp() -> None:
    intro = "# Benchmarks\n\nHand-written.\n\n"
    older = splice(intro, [_section("gone", "9"), _section("a", "8")], ["a", "b"], LATER, True)
    doc = splice(
        older,
        [_section("b", "1", (1.25, 1.5)), _section("a", "2", (1.5, 1.75))],
        ["a", "b"],
        STAMP,
        True,
    )
    assert doc.startswith(intro + MARKER)
    generated = doc.partition(MARKER)[2]
    # One stamp for the run, before every section; each section its own load average.
    assert generated.count(STAMP.line()) == 1
    assert LATER.date not in generated
    assert generated.index(STAMP.line()) < generated.index("<!-- bench:a -->")
    assert generated.index("<!-- bench:a -->") < generated.index("<!-- bench:b -->")
    assert "load average during this benchmark 1.50 → 1.75" in generated
    assert "load average during this benchmark 1.25 → 1.50" in generated
    # Nothing of the older run survives, not even a benchmark this run did not have.
    assert "bench:gone" not in generated and "| x | 8 |" not in generated
    assert "| a | goal | 2 | met |" in generated  # the summary of targets
    assert "load average 0.50 → 0.70 · took 20.0 min" in STAMP.line()


def test_a_benchmark_run_alone_replaces_its_section_only_with_its_own_stamp() -> None:
    intro = "# Benchmarks\n\nHand-written.\n\n"
    whole = splice(intro, [_section("a", "1"), _section("b", "2")], ["a", "b"], STAMP, False)
    whole = splice(whole, [_section("a", "1"), _section("b", "2")], ["a", "b"], STAMP, True)
    alone = splice(whole, [_section("b", "3")], ["a", "b"], LATER, False)
    assert alone.startswith(intro + MARKER)
    assert "| x | 1 |" in alone and "| x | 3 |" in alone and "| x | 2 |" not in alone
    assert alone.count(STAMP.line()) == 1  # the run block is kept
    block_b = alone[alone.index("<!-- bench:b -->") :]
    assert LATER.line() in block_b
    assert splice(alone, [_section("b", "3")], ["a", "b"], LATER, False) == alone


def test_splice_without_marker_keeps_the_whole_document() -> None:
    out = splice("# Old notes\n", [_section("a", "1")], ["a"], STAMP, True)
    assert out.startswith("# Old notes\n\n" + MARKER)


def test_a_skipped_benchmark_says_so_in_its_section_and_the_summary() -> None:
    skipped = Section("nri", "NRI", skipped="needs FUSE: not root")
    assert "skipped: needs FUSE: not root" in skipped.markdown()
    rows = summary([skipped, _section("a", "1")]).rows
    assert rows == [
        ["nri", "—", "skipped: needs FUSE: not root", "n/a"],
        ["a", "goal", "1", "met"],
    ]


def test_statistics() -> None:
    assert p99([float(i) for i in range(1, 201)]) == 198.0
    assert p99([3.0, 1.0, 2.0]) == 3.0
    assert fit_slope([100, 500, 2000], [1.0, 5.0, 20.0]) == pytest.approx(0.01)
    assert fit_slope([5, 5], [1.0, 2.0]) == 0.0
    spread = Spread.of([0.007, 0.0036, 0.004])
    assert (spread.low, spread.mid, spread.high) == (0.0036, 0.004, 0.007)
    assert spread.text() == "3.60 / 4.00 / 7.00"
    with pytest.raises(ValueError):
        p99([])
    with pytest.raises(ValueError):
        Spread.of([])


@pytest.mark.slow
def test_a_benchmark_run_alone_updates_its_own_section_of_the_real_page(tmp_path: Path) -> None:
    page = Path(__file__).parent.parent / "docs" / "benchmarks.md"
    doc = tmp_path / "benchmarks.md"
    shutil.copy(page, doc)
    before = doc.read_text()
    tiny = ["--pods", "3", "--containers", "1", "--threads", "2", "--runs", "2"]
    assert main(["reconcile", *tiny, "--write-docs", "--docs", str(doc)]) == 0
    after = doc.read_text()
    head, _, generated = after.partition(MARKER)
    assert head == before.partition(MARKER)[0]
    block = generated[generated.index("<!-- bench:reconcile -->") :]
    block = block[: block.index("<!-- /bench:reconcile -->")]
    assert "3 pods × 1 containers × 2 threads, 2 runs" in block
    assert "RLIMIT_NOFILE" in block and " · took " in block  # its own run's stamp
    for other in ("run", "sampler", "steady"):  # every other section kept as it was
        start = f"<!-- bench:{other} -->"
        kept = before[before.index(start) : before.index(f"<!-- /bench:{other} -->")]
        assert kept in after


def test_a_sections_plot_is_linked_from_its_markdown() -> None:
    from bench.report import Figure

    plot = Figure("benchmarks-x.svg", "CPU against pods", "<svg/>")
    section = Section("x", "Title x", [], [], figures=[plot])
    assert "![CPU against pods](benchmarks-x.svg)" in section.markdown()
