"""L3 size per domain from resctrl's ``size`` file, else from sysfs cache directories."""

from __future__ import annotations

import os
from pathlib import Path

from resctrl_pipeline.resctrl.cache import l3_sizes


def cache_dir(cpu_root: Path, cpu: int, index: int, level: int, ident: int, size: str) -> None:
    d = cpu_root / f"cpu{cpu}" / "cache" / f"index{index}"
    os.makedirs(d)
    (d / "level").write_text(f"{level}\n")
    (d / "id").write_text(f"{ident}\n")
    (d / "size").write_text(f"{size}\n")


def test_sysfs_gives_each_l3_by_cache_id(tmp_path: Path) -> None:
    cpus = tmp_path / "cpu"
    cache_dir(cpus, 0, 2, 2, 0, "1024K")
    cache_dir(cpus, 0, 3, 3, 0, "32768K")
    cache_dir(cpus, 1, 3, 3, 1, "36M")
    assert l3_sizes(str(tmp_path / "no-resctrl"), str(cpus)) == {0: 32 << 20, 1: 36 << 20}


def test_resctrl_size_file_wins_and_ignores_cdp_halves_and_mb(tmp_path: Path) -> None:
    root = tmp_path / "resctrl"
    root.mkdir()
    (root / "size").write_text("L3CODE:0=1;1=1\nL3:0=33554432;1=25165824\nMB:0=100;1=100\n")
    cpus = tmp_path / "cpu"
    cache_dir(cpus, 0, 3, 3, 0, "1K")
    assert l3_sizes(str(root), str(cpus)) == {0: 33554432, 1: 25165824}
    assert l3_sizes(str(tmp_path / "none"), str(tmp_path / "none")) == {}
