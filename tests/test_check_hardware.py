"""``resctrl-pipeline check`` names the hardware it finds and what the agent does about
each (issue 13, deliverable 7). Trees use the file formats of ``resctrl-modern.md``."""

from __future__ import annotations

import os
from pathlib import Path

from resctrl_pipeline.config import load as load_config
from resctrl_pipeline.config import resolve
from resctrl_pipeline.preflight import Verdict, run_checks
from tests.support import make_group, make_resctrl_tree

CID = "c" * 64


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def hardware(root: Path, **overrides: object) -> dict[str, Verdict]:
    cfg = resolve(load_config(environ={}, overrides={"resctrl.root": str(root), **overrides}))
    return {v.name: v for v in run_checks(cfg) if v.name.startswith("hardware")}


def test_classic(tmp_path: Path) -> None:
    make_resctrl_tree(str(tmp_path), domains=(0, 1))
    found = hardware(tmp_path)
    assert list(found) == ["hardware: L3"]
    assert "classic L3 monitoring, 2 L3 domain(s)" in found["hardware: L3"].detail


def test_snc_names_its_node_count(tmp_path: Path) -> None:
    make_resctrl_tree(str(tmp_path), domains=(0, 1), snc=3)
    found = hardware(tmp_path)
    assert found["hardware: SNC"].detail.startswith("SNC-3 (sub-NUMA clustering, 3 nodes")


def test_abmc_counters_and_what_the_policy_does(tmp_path: Path) -> None:
    make_resctrl_tree(str(tmp_path))
    info = tmp_path / "info" / "L3_MON"
    write(info / "mbm_assign_mode", "[mbm_event]\ndefault\n")
    write(info / "num_mbm_cntrs", "0=32;1=32\n")
    write(info / "available_mbm_cntrs", "0=30;1=28\n")
    verdict = hardware(tmp_path, **{"resctrl.mbm_assign": "prod,tier=gold"})["hardware: ABMC"]
    assert verdict.status == "OK"
    assert "28/32 MBM counters free per domain" in verdict.detail
    assert "about 14 more pods" in verdict.detail
    assert "resctrl.mbm_assign = prod, tier=gold" in verdict.detail
    write(info / "available_mbm_cntrs", "0=1;1=0\n")
    assert hardware(tmp_path)["hardware: ABMC"].status == "WARN"  # no pod can get MBM now


def test_abmc_switched_off(tmp_path: Path) -> None:
    make_resctrl_tree(str(tmp_path))
    write(tmp_path / "info" / "L3_MON" / "mbm_assign_mode", "[default]\nmbm_event\n")
    assert "available but off" in hardware(tmp_path)["hardware: ABMC"].detail


def test_aet_classes_and_runtime_groups(tmp_path: Path) -> None:
    make_resctrl_tree(str(tmp_path), num_rmids=256)
    write(tmp_path / "info" / "PERF_PKG_MON" / "mon_features", "core_energy\nactivity\n")
    write(tmp_path / "info" / "PERF_PKG_MON" / "num_rmids", "48\n")
    for cls in ("gold", "silver"):
        make_group(str(tmp_path / cls))
        os.makedirs(tmp_path / cls / "mon_groups")
    make_group(str(tmp_path / "gold" / "mon_groups" / CID))
    make_group(str(tmp_path / "mon_groups" / ("d" * 64)))
    found = hardware(tmp_path, **{"resctrl.runtime_groups": "move"})
    assert "core_energy, activity" in found["hardware: AET"].detail
    assert "groups limited to 48" in found["hardware: AET"].detail
    assert found["hardware: classes"].detail.startswith(
        "2 RDT class(es) (CTRL_MON groups): gold, silver"
    )
    runtime = found["hardware: runtime groups"].detail
    assert runtime.startswith("2 runtime-made MON group(s)")
    assert "moves their threads" in runtime
    assert "reads them for their pods" in hardware(tmp_path)["hardware: runtime groups"].detail
