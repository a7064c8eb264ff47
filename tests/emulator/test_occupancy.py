"""The occupancy model and CPU ledger: pure, driven with explicit times and readings."""

from __future__ import annotations

import pytest

from resctrl_pipeline.emulator.occupancy import (
    CacheParams,
    CpuLedger,
    LeafCounters,
    OccupancyModel,
)
from resctrl_pipeline.emulator.threads import ThreadStat

MIB = 1024 * 1024
PARAMS = CacheParams(leaf_bytes=32 * MIB, resolution=64 * 1024, fill_per_cpu=0.5)


def run(model: OccupancyModel[str], seconds: float, usage: dict[str, float], start: float) -> float:
    """Advance in 0.25 s steps with ``usage`` CPUs busy per key on leaf 0."""
    now = start
    for _ in range(int(seconds / 0.25)):
        now += 0.25
        model.advance(now, {key: [cpus * 0.25, 0.0] for key, cpus in usage.items()})
    return now


def occupancy(model: OccupancyModel[str], key: str, leaf: int = 0) -> int:
    counters = model.counters(key, leaf)
    assert counters is not None
    return counters.llc_occupancy


def test_a_busy_group_fills_toward_its_share_and_an_idle_one_stays_empty() -> None:
    model: OccupancyModel[str] = OccupancyModel(PARAMS, leaves=2, now=0.0)
    model.track("busy")
    model.track("idle")
    run(model, 5.0, {"busy": 1.0}, start=0.0)
    assert occupancy(model, "idle") == 0
    # One busy CPU settles at fill_per_cpu of the leaf (within a few time constants).
    assert 0.95 * 16 * MIB <= occupancy(model, "busy") <= 16 * MIB
    assert occupancy(model, "busy", leaf=1) == 0


def test_occupancy_is_quantised_to_the_resolution() -> None:
    model: OccupancyModel[str] = OccupancyModel(PARAMS, leaves=2, now=0.0)
    model.track("g")
    run(model, 0.5, {"g": 0.3}, start=0.0)
    value = occupancy(model, "g")
    assert value > 0
    assert value % PARAMS.resolution == 0


def test_the_sum_over_groups_never_exceeds_the_leaf_capacity() -> None:
    model: OccupancyModel[str] = OccupancyModel(PARAMS, leaves=2, now=0.0)
    keys = [f"g{i}" for i in range(5)]
    for key in keys:
        model.track(key)
    now = run(model, 3.0, {"g0": 2.0}, start=0.0)
    # The others start at once, at full speed: g0 must be evicted, not the bound broken.
    for _ in range(12):
        now = run(model, 0.25, dict.fromkeys(keys[1:], 4.0), start=now)
        assert sum(occupancy(model, k) for k in keys) <= PARAMS.leaf_bytes


def test_occupancy_decays_when_the_group_goes_idle_but_mbm_never_decreases() -> None:
    model: OccupancyModel[str] = OccupancyModel(PARAMS, leaves=2, now=0.0)
    model.track("g")
    now = run(model, 3.0, {"g": 1.0}, start=0.0)
    counters = model.counters("g", 0)
    assert counters is not None
    peak, mbm = counters.llc_occupancy, counters.mbm_total_bytes
    assert mbm == pytest.approx(3.0 * PARAMS.mbm_bytes_per_cpu_second, rel=1e-6)
    assert counters.mbm_local_bytes == int(mbm * PARAMS.local_fraction)
    run(model, 6.0, {}, start=now)
    after = model.counters("g", 0)
    assert after is not None
    assert after.llc_occupancy < peak / 4
    assert after.mbm_total_bytes == mbm


def test_time_not_moving_forward_changes_nothing_and_unknown_keys_are_none() -> None:
    model: OccupancyModel[str] = OccupancyModel(PARAMS, leaves=1, now=5.0)
    model.track("g")
    model.advance(5.0, {"g": [1.0]})
    model.advance(4.0, {"g": [1.0]})
    assert model.counters("g", 0) == LeafCounters(0, 0, 0)
    model.forget("g")
    assert model.counters("g", 0) is None


def test_ledger_counts_cpu_time_since_the_last_reading_on_the_leaf_of_the_last_cpu() -> None:
    ledger: CpuLedger[str] = CpuLedger(lambda cpu: cpu % 2, leaves=2, ticks_per_second=100)
    first = ledger.account({"g": [ThreadStat(10, start_ticks=5, cpu_ticks=1000, cpu=0)]})
    assert first == {"g": [0.0, 0.0]}  # the first reading is only a baseline
    later = ledger.account({"g": [ThreadStat(10, start_ticks=5, cpu_ticks=1050, cpu=1)]})
    assert later == {"g": [0.0, 0.5]}


def test_ledger_treats_a_reused_tid_as_a_new_thread() -> None:
    ledger: CpuLedger[str] = CpuLedger(lambda cpu: 0, leaves=1, ticks_per_second=100)
    ledger.account({"g": [ThreadStat(10, start_ticks=5, cpu_ticks=1000, cpu=0)]})
    reused = ledger.account({"g": [ThreadStat(10, start_ticks=9, cpu_ticks=2000, cpu=0)]})
    assert reused == {"g": [0.0]}


def test_ledger_host_usage_is_per_leaf_and_ignores_counters_going_backwards() -> None:
    ledger: CpuLedger[str] = CpuLedger(lambda cpu: cpu // 2, leaves=2, ticks_per_second=100)
    assert ledger.account_host([100, 100, 100, 100]) == [0.0, 0.0]
    assert ledger.account_host([150, 120, 100, 90]) == [0.7, 0.0]


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        CacheParams(leaf_bytes=0)
    with pytest.raises(ValueError):
        CacheParams(local_fraction=1.5)
    with pytest.raises(ValueError):
        OccupancyModel(PARAMS, leaves=0, now=0.0)
