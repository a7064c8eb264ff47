"""resctrl read side on 2025–2026 kernels: SNC sums, AET telemetry, counter states,
unknown ``mon_data`` entries, the per-domain breakdown, and the columns they become.

File formats follow ``resctrl-modern.md`` §1–3 (plain directories stand in for the
kernel; the emulator profiles are exercised by the L3 tests).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from resctrl_pipeline.errors import ResctrlReadError
from resctrl_pipeline.messages import GroupState, PodLabels
from resctrl_pipeline.resctrl.info import parse_assign_mode, parse_domain_counts, probe
from resctrl_pipeline.resctrl.mondata import PreadReader, parse_telemetry, read_group
from resctrl_pipeline.sampling import Sampler
from resctrl_pipeline.schema import FIXED_COLUMNS
from tests.support import make_group, make_resctrl_tree, set_counter, write_batch


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def sub_counter(group: str, l3: int, node: int, feature: str, text: str) -> None:
    base = os.path.join(group, "mon_data", f"mon_L3_{l3:02d}", f"mon_sub_L3_{node:02d}")
    write(os.path.join(base, feature), text)


def pkg_counter(group: str, pkg: int, event: str, text: str) -> None:
    write(os.path.join(group, "mon_data", f"mon_PERF_PKG_{pkg:02d}", event), text)


# --- SNC ------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [2, 3, 4, 6])
def test_snc_l3_level_read_once_for_every_node_count(tmp_path: Path, nodes: int) -> None:
    g = make_group(str(tmp_path), domains=(0, 1), snc=nodes, value=10)
    # Each L3 file holds its nodes' sum (10 * nodes); adding the nodes too would double.
    assert read_group(g).llc_occupancy == 2 * 10 * nodes
    assert PreadReader().read(g).llc_occupancy == 2 * 10 * nodes


def test_snc_zero_sum_after_cpu_offline_is_flagged_and_read_from_the_nodes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g = make_group(str(tmp_path / "a"), domains=(0,), snc=2, value=50)
    h = make_group(str(tmp_path / "b"), domains=(0,), snc=2, value=30)
    reader = PreadReader()
    assert reader.read(g).llc_occupancy == 100
    # The kernel bug (no 594902c986e2): the L3-level sums read 0, the nodes do not.
    set_counter(g, 0, "llc_occupancy", "0\n")
    set_counter(h, 0, "llc_occupancy", "0\n")
    with caplog.at_level(logging.WARNING):
        assert reader.read(g).llc_occupancy == 100
        assert reader.read(h).llc_occupancy == 60
        assert reader.read(g).llc_occupancy == 100
    assert reader.reads_sub_nodes
    assert caplog.text.count("594902c986e2") == 1


def test_snc_genuine_zero_stays_zero(tmp_path: Path) -> None:
    g = make_group(str(tmp_path), domains=(0,), snc=2, value=0)
    reader = PreadReader()
    assert reader.read(g).llc_occupancy == 0
    assert not reader.reads_sub_nodes


# --- MBM counter states -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "local", "state", "values"),
    [
        (("5\n", "6\n"), ("1\n", "2\n"), "assigned", (11, 3)),
        (("Unassigned\n", "Unassigned\n"), ("Unassigned\n", "Unassigned\n"), "unassigned",
         (None, None)),
        # Partly assigned (counters ran out in domain 1): never a silent partial sum.
        (("5\n", "Unassigned\n"), ("1\n", "Unassigned\n"), "unassigned", (None, None)),
        # Local unassigned to double coverage: total still counts.
        (("5\n", "6\n"), ("Unassigned\n", "Unassigned\n"), "unassigned", (11, None)),
        # First read after an assignment.
        (("Unavailable\n", "6\n"), ("1\n", "2\n"), "unavailable", (None, 3)),
    ],
)  # fmt: skip
def test_mbm_missing_counter_is_a_state_not_a_skipped_row(
    tmp_path: Path,
    total: tuple[str, str],
    local: tuple[str, str],
    state: str,
    values: tuple[int | None, int | None],
) -> None:
    g = make_group(str(tmp_path), domains=(0, 1), value=7)
    for dom in (0, 1):
        set_counter(g, dom, "mbm_total_bytes", total[dom])
        set_counter(g, dom, "mbm_local_bytes", local[dom])
    for reading in (read_group(g), PreadReader().read(g)):
        assert reading.llc_occupancy == 14
        assert (reading.mbm_total, reading.mbm_local) == values
        assert reading.mbm_state == state


def test_mbm_state_follows_an_assignment(tmp_path: Path) -> None:
    g = make_group(str(tmp_path), domains=(0,), value=7)
    set_counter(g, 0, "mbm_total_bytes", "Unassigned\n")
    reader = PreadReader()
    assert reader.read(g).mbm_state == "unassigned"
    set_counter(g, 0, "mbm_total_bytes", "0\n")
    assert reader.read(g)[1:4] == (0, 7, "assigned")


def test_group_without_mbm_files_is_unsupported(tmp_path: Path) -> None:
    g = make_group(str(tmp_path), features=("llc_occupancy",), value=5)
    assert PreadReader().read(g).mbm_state == "unsupported"
    assert PreadReader(mbm=False).read(g).mbm_state is None


def test_mbm_error_word_still_skips_the_row(tmp_path: Path) -> None:
    g = make_group(str(tmp_path), domains=(0,), value=5)
    set_counter(g, 0, "mbm_total_bytes", "Error\n")
    with pytest.raises(ResctrlReadError) as exc:
        PreadReader().read(g)
    assert exc.value.reason == "error"


# --- AET ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"12.500000\n", 12.5), (b"0.000004\n", 0.000004), (b"42\n", 42.0), (b"Unavailable\n", None),
     (b"Error\n", None), (b"-1.5\n", None), (b"1.2.3\n", None), (b"\n", None), (b"1e5\n", None)],
)  # fmt: skip
def test_telemetry_values_parse_as_fixed_point_or_integer(raw: bytes, value: float | None) -> None:
    assert parse_telemetry(raw) == value


def test_aet_events_sum_over_packages(tmp_path: Path) -> None:
    g = make_group(str(tmp_path), domains=(0,), value=1)
    pkg_counter(g, 0, "core_energy", "10.250000\n")
    pkg_counter(g, 1, "core_energy", "1.500000\n")
    pkg_counter(g, 0, "activity", "Unavailable\n")  # this package has no data for the RMID
    pkg_counter(g, 1, "activity", "0.000100\n")
    pkg_counter(g, 0, "uops_retired", "Unavailable\n")
    pkg_counter(g, 1, "uops_retired", "Unavailable\n")
    events = ("core_energy", "activity", "uops_retired", "c6_res")
    for reading in (read_group(g, telemetry=events), PreadReader(telemetry=events).read(g)):
        energy, activity, uops, c6 = reading.telemetry
        assert energy == pytest.approx(11.75)
        assert activity == pytest.approx(0.0001)
        assert uops is None and c6 is None  # no valid value anywhere; not offered
        assert reading.llc_occupancy == 1  # L3 reading unaffected


def test_aet_info_and_group_limit(tmp_path: Path) -> None:
    make_resctrl_tree(str(tmp_path), num_rmids=256)
    write(str(tmp_path / "info" / "PERF_PKG_MON" / "mon_features"), "core_energy\nactivity\n")
    write(str(tmp_path / "info" / "PERF_PKG_MON" / "num_rmids"), "128\n")
    info = probe(str(tmp_path))
    assert info.telemetry == ("core_energy", "activity")
    assert info.group_limit == 128  # the smaller RMID pool


# --- unknown entries ------------------------------------------------------------------------


def test_unknown_mon_data_directory_is_ignored_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    groups = [make_group(str(tmp_path / f"g{i}"), domains=(0,), value=3) for i in range(3)]
    for g in groups:
        write(os.path.join(g, "mon_data", "mon_FUTURE_ZZ_00", "llc_occupancy"), "99999\n")
        write(os.path.join(g, "mon_data", "mon_FUTURE_ZZ_01", "llc_occupancy"), "99999\n")
    with caplog.at_level(logging.INFO, logger="resctrl_pipeline.resctrl.mondata"):
        assert [PreadReader().read(g).llc_occupancy for g in groups] == [3, 3, 3]
    assert caplog.text.count("mon_FUTURE_ZZ_") == 1


# --- per-domain -----------------------------------------------------------------------------


def test_per_domain_breakdown_names_each_l3(tmp_path: Path) -> None:
    g = make_group(str(tmp_path), domains=(0, 3), snc=2, value=0)
    set_counter(g, 0, "llc_occupancy", "4096\n")
    set_counter(g, 3, "llc_occupancy", "0\n")
    sub_counter(g, 3, 6, "llc_occupancy", "0\n")
    sub_counter(g, 3, 7, "llc_occupancy", "0\n")
    set_counter(g, 0, "mbm_total_bytes", "100\n")
    set_counter(g, 3, "mbm_total_bytes", "Unassigned\n")
    set_counter(g, 0, "mbm_local_bytes", "50\n")
    set_counter(g, 3, "mbm_local_bytes", "Unassigned\n")
    expected = [
        {"domain": 0, "llc_occupancy_bytes": 4096, "mbm_total_bytes": 100, "mbm_local_bytes": 50},
        {"domain": 3, "llc_occupancy_bytes": 0, "mbm_total_bytes": None, "mbm_local_bytes": None},
    ]
    assert read_group(g, per_domain=True).domains == expected
    reader = PreadReader(per_domain=True)
    assert reader.read(g).domains == expected
    assert reader.read(g).domains == expected  # from the open descriptors
    assert PreadReader().read(g).domains is None


def test_sampler_columns_reach_parquet(tmp_path: Path) -> None:
    root = tmp_path / "resctrl"
    make_resctrl_tree(str(root), domains=(0, 1))
    g = make_group(str(root / "mon_groups" / "pod_u1"), domains=(0, 1), value=8)
    set_counter(g, 1, "mbm_total_bytes", "Unassigned\n")
    pkg_counter(g, 0, "core_energy", "3.000001\n")
    pkg_counter(g, 0, "activity", "2\n")
    events = ("core_energy", "activity", "some_future_event")
    sampler = Sampler(
        PreadReader(telemetry=events, per_domain=True),
        with_mbm=True,
        telemetry=events,
        per_domain=True,
    )
    sampler.handle_resctrl_event(GroupState("u1", g, 1, 1))
    sampler.handle_metadata_event(PodLabels("u1", "ns", "p"))
    batch = sampler.handle_sample_timer()
    assert batch is not None
    table = pq.read_table(write_batch(batch, tmp_path / "out"))
    assert table.schema.names[:9] == [c[0] for c in FIXED_COLUMNS]
    assert table.schema.names[9:] == [
        "mbm_total_bytes", "mbm_local_bytes", "mbm_state", "core_energy_joules", "activity",
        "domains", "node",
    ]  # fmt: skip
    row = table.to_pylist()[0]
    assert (row["llc_occupancy_bytes"], row["mbm_total_bytes"], row["mbm_local_bytes"]) == (
        16, None, 16,
    )  # fmt: skip
    assert row["mbm_state"] == "unassigned"
    assert row["core_energy_joules"] == pytest.approx(3.000001)
    assert row["activity"] == 2.0
    assert str(table.schema.field("domains").type.value_type) == (
        "struct<domain: int32, llc_occupancy_bytes: int64, "
        "mbm_total_bytes: int64, mbm_local_bytes: int64>"
    )
    assert row["domains"][1] == {
        "domain": 1, "llc_occupancy_bytes": 8, "mbm_total_bytes": None, "mbm_local_bytes": 8,
    }  # fmt: skip


# --- info parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode"),
    [("[mbm_event]\ndefault\n", "mbm_event"), ("[default]\nmbm_event\n", "default"),
     ("[default]\n", "default"), ("garbage\n", None)],
)  # fmt: skip
def test_assign_mode_is_the_bracketed_line(text: str, mode: str | None) -> None:
    assert parse_assign_mode(text) == mode


@pytest.mark.parametrize(
    ("text", "counts"),
    [("0=32;1=32\n", {0: 32, 1: 32}), ("0=30;1=28\n", {0: 30, 1: 28}), ("0=\n", None),
     ("x=3\n", None), ("\n", None)],
)  # fmt: skip
def test_domain_counts_parse(text: str, counts: dict[int, int] | None) -> None:
    assert parse_domain_counts(text) == counts
