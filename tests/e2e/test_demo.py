"""``resctrl-pipeline demo`` as a user runs it: exit 0, rows for every pod, busy > idle."""

from __future__ import annotations

import os
import re
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


@pytest.mark.slow
@requires("fuse")
def test_demo_runs_on_emulated_abmc_hardware_with_classes(tmp_path: str) -> None:
    out = os.path.join(str(tmp_path), "demo-out")
    result = subprocess.run(
        [sys.executable, "-m", "resctrl_pipeline.cli", "demo", "--duration", "6s", "--pods", "2",
         "--output", out, "--hardware", "abmc+classes"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "emulated node (abmc+classes)" in result.stdout
    assert "RDT classes: idle-1 in gold" in result.stdout
    # Root + gold + silver + the pipeline's groups took counters: fewer than 32 free.
    free = re.search(r"MBM counters free per domain: 0=(\d+);1=(\d+)", result.stdout)
    assert free is not None, result.stdout
    assert int(free.group(1)) < 32 - 6
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("demo/")]
    assert [(r[0], r[1]) for r in rows] == [("demo/busy-0", "busy"), ("demo/idle-1", "idle")]
    assert all(int(r[2]) > 0 for r in rows), result.stdout


def test_demo_refuses_an_unknown_hardware_profile() -> None:
    from click.testing import CliRunner

    from resctrl_pipeline.cli import main

    result = CliRunner().invoke(main, ["demo", "--hardware", "abmc+mpam"])
    assert result.exit_code == 2
    assert "unknown hardware profile 'mpam'" in result.output


def test_demo_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from resctrl_pipeline.cli import main

    monkeypatch.setenv("PATH", "/nonexistent")  # no fusermount3 to be found
    result = CliRunner().invoke(main, ["demo", "--duration", "1s"])
    assert result.exit_code == 1
    assert "fuse3 is not installed: apt-get install fuse3" in result.output
