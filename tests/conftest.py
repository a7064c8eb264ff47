"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory: ipc:// socket paths must stay under 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rp-", dir="/tmp") as d:
        os.chmod(d, 0o700)
        yield d


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the end-to-end Parquet artifacts kept under ``$RP_E2E_ARTIFACTS``."""
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
