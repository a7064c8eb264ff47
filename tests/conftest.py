"""Shared fixtures and hooks.

* prerequisites: ``requires(...)`` skips, or fails under ``$RESCTRL_REQUIRE_ALL``
  (``tests/prerequisites.py``); the run ends with the skips counted by reason;
* timeouts: every test has one (pytest-timeout; ``slow`` tests a longer one), so a
  hang fails with a traceback instead of stopping the run;
* markers stay true: a test not marked ``slow`` that starts a process fails;
* Hypothesis: profiles ``dev`` (default) and ``ci`` (``--hypothesis-profile=ci``: at
  least :data:`CI_EXAMPLES` examples per fuzzer), a random seed per run, printed in the
  header and with every failure.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Generator, Iterator
from typing import Any

import pluggy
import pytest
from hypothesis import HealthCheck, settings

from tests.prerequisites import PREFIX, REQUIRE_ENV, need, require_all
from tests.support import CI_EXAMPLES

#: Seconds a test may take, set-up and teardown included, before it fails with a
#: traceback: generous for quick tests on a loaded 2-core machine (the slowest takes
#: ~11 s there); ``slow`` tests start pipelines, containerd or FUSE mounts.
QUICK_TIMEOUT = 120
SLOW_TIMEOUT = 600

settings.register_profile(
    "dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("dev"),
    max_examples=CI_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("dev")


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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A random Hypothesis seed for this run unless ``--hypothesis-seed`` names one:
    every run explores new inputs, and a failure can be repeated with the seed."""
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().getrandbits(32))


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed")
    profile = settings.get_current_profile_name()
    return f"hypothesis profile {profile!r}, seed {seed} (repeat with --hypothesis-seed={seed})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow`` tests get the longer timeout unless they name their own."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            slow = item.get_closest_marker("slow") is not None
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT if slow else QUICK_TIMEOUT))


# --- markers stay true: quick tests start no process ------------------------------------

#: Audit events that start a process (PEP 578); mounting goes through one too.
_SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.system"}
)
#: Programs libraries run on their own to find things (matplotlib's font cache:
#: fc-list; ctypes.util.find_library: ldconfig, ld), once per machine or process.
_LOOKUPS = frozenset({"fc-list", "ldconfig", "ld"})
_spawns: list[str] = []
_watching = [False]


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching[0] and event in _SPAWN_EVENTS:
        program = os.path.basename(str(args[0])) if args else ""
        if program not in _LOOKUPS:
            _spawns.append(f"{event} {str(args[:2])[:120]}")


sys.addaudithook(_audit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    _spawns.clear()
    _watching[0] = item.get_closest_marker("slow") is None
    try:
        yield
    finally:
        _watching[0] = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    # Teardown is not watched: the last test of a session also tears down the
    # session's fixtures (a containerd started by slow tests, say), which are not its own.
    # A quick test's fixture that starts a process does so in its set-up, seen there.
    _watching[0] = False
    yield


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
    plain ``skipif`` in a new test included): CI cannot go green by skipping. A quick
    test that started a process fails (mark it ``slow``). Failures of Hypothesis
    tests carry the run's seed."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" and _spawns and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            "started a process but is not marked slow (-m 'not slow' must stay quick and "
            "hermetic): " + "; ".join(_spawns[:3])
        )
    if report.failed and item.get_closest_marker("hypothesis") is not None:
        seed = item.config.getoption("hypothesis_seed")
        report.sections.append(("hypothesis seed", f"repeat with --hypothesis-seed={seed}"))
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
