"""Shared fixtures and hooks: prerequisites (skip or fail), the skip summary."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Generator, Iterator

import pluggy
import pytest

from tests.prerequisites import PREFIX, REQUIRE_ENV, need, require_all


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory: ipc:// socket paths must stay under 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rp-", dir="/tmp") as d:
        os.chmod(d, 0o700)
        yield d


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skips by reason; the end-to-end Parquet artifacts kept under ``$RP_E2E_ARTIFACTS``."""
    _summarise_skips(terminalreporter)
    root = os.environ.get("RP_E2E_ARTIFACTS")
    if not root or not os.path.isdir(root):
        return
    import pyarrow.parquet as pq

    files = sorted(
        os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.endswith(".parquet")
    )
    terminalreporter.section(f"end-to-end Parquet artifacts in {root}")
    for f in files:
        try:
            rows = str(pq.ParquetFile(f).metadata.num_rows)
        except Exception as err:  # report, don't fail the summary
            rows = f"unreadable: {err}"
        terminalreporter.write_line(f"{os.path.relpath(f, root)}: {rows} rows")
    terminalreporter.write_line(f"{len(files)} file(s)")


# --- prerequisites: skip outside CI, fail in CI (tests/prerequisites.py) -------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``requires(...)`` skip (or fail under ``$RESCTRL_REQUIRE_ALL``)
    before their fixtures start anything."""
    for mark in item.iter_markers("requires"):
        need(*mark.args)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """Under ``$RESCTRL_REQUIRE_ALL`` every skip is a failure, whoever raised it (a
    plain ``skipif`` in a new test included): CI cannot go green by skipping."""
    outcome = yield
    report = outcome.get_result()
    if require_all() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = f"skipped, and {REQUIRE_ENV}=1 makes every skip a failure: {reason}"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _summarise_skips(terminalreporter: pytest.TerminalReporter) -> None:
    """The count of skipped tests by reason (and, under ``$RESCTRL_REQUIRE_ALL``, of
    the failures that would have been skips)."""
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if isinstance(r, pytest.TestReport)
    ]
    reasons = Counter(_skip_reason(r) for r in skipped if not hasattr(r, "wasxfail"))
    failed = [
        r
        for key in ("failed", "error")
        for r in terminalreporter.stats.get(key, [])
        if isinstance(r, pytest.TestReport)
        and (PREFIX in str(r.longrepr) or "makes every skip a failure" in str(r.longrepr))
    ]
    if not reasons and not failed:
        return
    terminalreporter.section("skips by reason")
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"{n:5d} skipped: {reason}")
    total = sum(reasons.values())
    if require_all():
        terminalreporter.write_line(
            f"{len(failed)} test(s) failed instead of skipping ({REQUIRE_ENV}=1)"
        )
    else:
        terminalreporter.write_line(
            f"{total} test(s) skipped; with {REQUIRE_ENV}=1 (CI as root) each is a failure"
        )
