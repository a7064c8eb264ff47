"""``resctrl-pipeline demo`` as a user runs it: exit 0, rows for every pod, busy > idle."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.prerequisites import requires


@pytest.mark.slow
@requires("fuse")
def test_demo_prints_a_summary_with_rows_for_every_pod(tmp_path: str) -> None:
    out = os.path.join(str(tmp_path), "demo-out")
    result = subprocess.run(
        [sys.executable, "-m", "resctrl_pipeline.cli", "demo", "--duration", "8s", "--pods", "4",
         "--output", out],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("demo/"):
            table[parts[1]] = parts
    assert set(table) == {"busy", "idle", "threads", "churn"}
    for kind, parts in table.items():
        assert int(parts[2]) > 0, f"no rows for the {kind} pod"
        assert parts[-2] == "1/1", f"{kind}: container not reconciled: {parts}"
    assert float(table["busy"][3]) > float(table["idle"][3])
    assert f"Parquet file(s) under {out}" in result.stdout


def test_demo_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from resctrl_pipeline.cli import main

    monkeypatch.setenv("PATH", "/nonexistent")  # no fusermount3 to be found
    result = CliRunner().invoke(main, ["demo", "--duration", "1s"])
    assert result.exit_code == 1
    assert "fuse3 is not installed: apt-get install fuse3" in result.output
