"""Sampler core: the L0b handler tests of the reference plan (counterparts named l0b_*)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from resctrl_pipeline.errors import ResctrlReadError
from resctrl_pipeline.messages import (
    GroupGone,
    GroupSnapshot,
    GroupState,
    MetadataSnapshot,
    PodLabels,
    PodLabelsGone,
    PodSummary,
)
from resctrl_pipeline.resctrl.info import MonitoringInfo
from resctrl_pipeline.resctrl.mondata import GroupReading
from resctrl_pipeline.sampling import Sampler
from tests import golden_schema


class FakeLlcReader:
    """group path → value or ResctrlReadError; records forgotten groups."""

    def __init__(self, values: dict[str, int | ResctrlReadError] | None = None) -> None:
        self.values: dict[str, int | ResctrlReadError] = dict(values or {})
        self.forgotten: list[str] = []

    def read(self, group_path: str) -> GroupReading:
        value = self.values.get(group_path, ResctrlReadError("missing", group_path))
        if isinstance(value, ResctrlReadError):
            raise value
        return GroupReading(value, value * 10, value * 5)

    def forget(self, group_path: str) -> None:
        self.forgotten.append(group_path)


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        self.ns += 1000
        return self.ns


def make(values: dict[str, int | ResctrlReadError] | None = None, mbm: bool = False) -> Sampler:
    return Sampler(FakeLlcReader(values), with_mbm=mbm, wall_ns=FakeClock())


def test_l0b_1_ready_gating_via_handlers() -> None:
    s = make()
    assert not s.ready()
    s.handle_resctrl_event(GroupState("u1", "/r/mon_groups/pod_u1", 1, 1))
    assert not s.ready()
    s.handle_metadata_event(PodLabels("u1", "ns", "p"))
    assert s.ready()


def test_l0b_1_empty_snapshots_count_for_readiness() -> None:
    s = make()
    s.handle_metadata_event(MetadataSnapshot(()))
    assert not s.ready()
    s.handle_resctrl_event(GroupSnapshot(()))
    assert s.ready()


def test_l0b_2_schema_and_labeling() -> None:
    s = make({"/r/mon_groups/pod_u1": 4096})
    s.handle_resctrl_event(GroupState("u1", "/r/mon_groups/pod_u1", 2, 1))
    s.handle_metadata_event(PodLabels("u1", "default", "web-0"))
    batch = s.handle_sample_timer()
    assert batch is not None
    assert list(batch.columns) == [name for name, _, _ in golden_schema.FIXED]
    assert golden_schema.fields(s.create_schema())[:9] == golden_schema.FIXED
    row = {k: v[0] for k, v in batch.columns.items()}
    assert row["pod_namespace"] == "default"
    assert row["pod_name"] == "web-0"
    assert row["pod_uid"] == "u1"
    assert row["resctrl_group"] == "/r/mon_groups/pod_u1"
    assert row["llc_occupancy_bytes"] == 4096
    assert (row["total_containers"], row["reconciled_containers"]) == (2, 1)
    assert row["start_timestamp"] <= row["timestamp"]


def test_l0b_2_mbm_columns_follow_the_fixed_nine() -> None:
    s = make({"/g": 7}, mbm=True)
    s.handle_resctrl_event(GroupState("u1", "/g", 1, 1))
    batch = s.handle_sample_timer()
    assert batch is not None
    assert list(batch.columns)[9:] == ["mbm_total_bytes", "mbm_local_bytes", "mbm_state"]
    assert batch.columns["mbm_total_bytes"] == [70]
    assert batch.columns["mbm_local_bytes"] == [35]


def test_l0b_3_missing_metadata_gives_nulls_then_labels() -> None:
    s = make({"/g1": 100})
    s.handle_resctrl_event(GroupState("u1", "/g1", 1, 1))
    first = s.handle_sample_timer()
    assert first is not None
    assert first.columns["pod_namespace"] == [None]
    assert first.columns["pod_name"] == [None]
    assert first.columns["pod_uid"] == ["u1"]
    assert first.columns["llc_occupancy_bytes"] == [100]
    s.handle_metadata_event(PodLabels("u1", "ns", "name"))
    second = s.handle_sample_timer()
    assert second is not None
    assert second.columns["pod_namespace"] == ["ns"]
    assert second.columns["pod_name"] == ["name"]


def test_l0b_4_removal_lifecycle() -> None:
    s = make({"/g1": 1, "/g2": 2})
    s.handle_resctrl_event(GroupState("u1", "/g1", 1, 1))
    s.handle_resctrl_event(GroupState("u2", "/g2", 1, 1))
    batch = s.handle_sample_timer()
    assert batch is not None and sorted(batch.columns["pod_uid"]) == ["u1", "u2"]
    s.handle_resctrl_event(GroupGone("u1"))
    s.handle_metadata_event(PodLabelsGone("u1"))
    batch = s.handle_sample_timer()
    assert batch is not None and batch.columns["pod_uid"] == ["u2"]
    assert "/g1" in s.reader.forgotten  # type: ignore[attr-defined]


def test_l0b_4_snapshot_drops_pods_it_does_not_list() -> None:
    s = make({"/g1": 1, "/g2": 2})
    s.handle_resctrl_event(GroupState("u1", "/g1", 1, 1))
    s.handle_resctrl_event(GroupSnapshot((GroupState("u2", "/g2", 1, 1),)))
    batch = s.handle_sample_timer()
    assert batch is not None and batch.columns["pod_uid"] == ["u2"]


def test_l0b_5_read_failure_skips_row_and_logs_debug(caplog: pytest.LogCaptureFixture) -> None:
    s = make({"/g1": ResctrlReadError("unavailable", "/g1: b'Unavailable'")})
    s.handle_resctrl_event(GroupState("u1", "/g1", 1, 1))
    with caplog.at_level(logging.DEBUG, logger="resctrl_pipeline.sampling"):
        assert s.handle_sample_timer() is None
    assert s.read_errors == {"unavailable": 1}
    assert any(r.levelno == logging.DEBUG and "u1" in r.getMessage() for r in caplog.records)


def test_l0b_5_one_bad_group_does_not_hide_the_others() -> None:
    s = make({"/g1": ResctrlReadError("garbage", "x"), "/g2": 5})
    s.handle_resctrl_event(GroupState("u1", "/g1", 1, 1))
    s.handle_resctrl_event(GroupState("u2", "/g2", 1, 1))
    batch = s.handle_sample_timer()
    assert batch is not None and batch.columns["pod_uid"] == ["u2"]


def test_failed_group_has_no_row() -> None:
    s = make()
    s.handle_resctrl_event(GroupState("u1", None, 1, 0))
    assert s.handle_sample_timer() is None


def test_l0b_7_health_logging(caplog: pytest.LogCaptureFixture) -> None:
    s = make()
    s.handle_resctrl_event(GroupState("failed", None, 1, 0))
    s.handle_resctrl_event(GroupState("partial", "/g", 3, 1))
    s.handle_resctrl_event(GroupState("fine", "/h", 2, 2))
    with caplog.at_level(logging.INFO, logger="resctrl_pipeline.sampling"):
        line = s.handle_health_timer()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines == ["resctrl health: pods_failed=1, pods_unreconciled=2"]
    assert line == lines[0]


def test_l0b_7_health_quiet_when_all_fine(caplog: pytest.LogCaptureFixture) -> None:
    s = make()
    s.handle_resctrl_event(GroupState("fine", "/h", 2, 2))
    with caplog.at_level(logging.INFO, logger="resctrl_pipeline.sampling"):
        assert s.handle_health_timer() is None
    assert not caplog.records


def test_resctrl_probe_sets_readiness_flag_and_reason() -> None:
    bad = MonitoringInfo("/x", None, (), None, False, "/x does not exist")
    s = Sampler(FakeLlcReader(), probe=lambda: bad, with_mbm=False)
    st = s.statistics()
    assert st.ready["resctrl"] is False
    assert st.info["resctrl"] == "/x does not exist"
    assert "waiting for the first group and metadata event" in st.info["sampler"]


def test_mbm_columns_decided_by_probe() -> None:
    info = MonitoringInfo("/x", "resctrl", ("llc_occupancy", "mbm_total_bytes",
                                            "mbm_local_bytes"), 32, True, "")  # fmt: skip
    assert Sampler(FakeLlcReader(), probe=lambda: info).with_mbm is True
    info2 = MonitoringInfo("/x", "resctrl", ("llc_occupancy",), 32, True, "")
    assert Sampler(FakeLlcReader(), probe=lambda: info2).with_mbm is False


def _summaries(s: Sampler, ticks: list[float]) -> list[tuple[float, PodSummary]]:
    out = []
    for now in ticks:
        for edge, msg in s.on_timer("sample", now):
            if edge == "stats":
                assert isinstance(msg, PodSummary)
                out.append((now, msg))
    return out


def test_pod_summary_about_once_a_second_and_at_once_when_a_pod_goes() -> None:
    reader = FakeLlcReader({"/g/a": 100, "/g/b": 7})
    s = Sampler(reader, sampling_interval=0.1, with_mbm=True, wall_ns=FakeClock(),
                pod_summary_interval=1.0)  # fmt: skip
    s.on_message("groups", GroupState("a", "/g/a", 2, 1), 0.0)
    s.on_message("groups", GroupState("b", "/g/b", 1, 1), 0.0)
    s.on_message("metadata", PodLabels("a", "ns", "pa"), 0.0)
    sent = _summaries(s, [t / 10 for t in range(25)])  # 2.5 s of 100 ms ticks
    assert [round(t, 1) for t, _ in sent] == [0.0, 1.0, 2.0]
    cols = sent[0][1].columns
    assert cols == {
        "pod_namespace": ["ns", None], "pod_name": ["pa", None], "pod_uid": ["a", "b"],
        "total_containers": [2, 1], "reconciled_containers": [1, 1],
        "llc_occupancy_bytes": [100, 7], "mbm_total_bytes": [1000, 70],
        "mbm_local_bytes": [500, 35],
    }  # fmt: skip
    assert sent[0][1].timestamp > 1_700_000_000_000_000_000
    s.on_message("groups", GroupGone("b"), 2.55)
    ((when, summary),) = _summaries(s, [2.6, 2.7])
    assert when == 2.6 and summary.columns["pod_uid"] == ["a"]
    s.on_message("groups", GroupSnapshot(()), 2.75)
    ((when, summary),) = _summaries(s, [2.8, 2.9])
    assert when == 2.8 and summary.columns == {}  # the last pod's series go too
    # Without pods, that one empty summary is all: an idle node's supervisor is not
    # woken every second to hear that there is still no pod.
    assert _summaries(s, [t / 10 for t in range(30, 60)]) == []
    s.on_message("groups", GroupState("c", "/g/a", 1, 1), 6.05)
    ((when, summary),) = _summaries(s, [6.1, 6.2])
    assert when == 6.1 and summary.columns["pod_uid"] == ["c"]
    s.on_message("groups", GroupGone("c"), 6.25)
    ((when, summary),) = _summaries(s, [t / 10 for t in range(63, 90)])
    assert when == 6.3 and summary.columns == {}  # once more when the last pod goes


def test_no_pod_summary_when_pod_metrics_are_off() -> None:
    s = Sampler(FakeLlcReader({"/g/a": 100}), sampling_interval=0.1, wall_ns=FakeClock())
    s.on_message("groups", GroupState("a", "/g/a", 1, 1), 0.0)
    assert _summaries(s, [t / 10 for t in range(20)]) == []


# --- statistics, health and probe: what the heartbeat and the logs say ------------------


def test_statistics_count_ticks_samples_batches_errors_and_failed_pods() -> None:
    usable = MonitoringInfo("/x", "resctrl", ("llc_occupancy",), 32, True, "")
    s = Sampler(
        FakeLlcReader({"/g1": 4096, "/g2": ResctrlReadError("garbage", "/g2: b'x'")}),
        probe=lambda: usable,
        with_mbm=False,
        wall_ns=FakeClock(),
    )
    s.handle_resctrl_event(GroupState("ok", "/g1", 1, 1))
    s.handle_resctrl_event(GroupState("bad", "/g2", 1, 1))
    s.handle_resctrl_event(GroupState("nogroup", None, 1, 0))
    batches = [s.handle_sample_timer() for _ in range(3)]
    assert all(b is not None and b.columns["pod_uid"] == ["ok"] for b in batches)
    st = s.statistics()
    assert st.counters == {"samples": 3, "ticks": 3, "batches": 3, "read_errors_garbage": 3}
    last = batches[-1]
    assert last is not None
    assert st.gauges == {
        "pods": 3,
        "pods_failed": 1,
        "last_sample_seconds": last.columns["start_timestamp"][0] / 1e9,
        "rmid_capacity": 32,
    }


def test_readiness_info_names_the_missing_event() -> None:
    s = make()
    s.handle_resctrl_event(GroupSnapshot(()))
    assert s.statistics().info == {"sampler": "waiting for the first metadata event"}
    t = make()
    t.handle_metadata_event(MetadataSnapshot(()))
    assert t.statistics().info == {"sampler": "waiting for the first group event"}
    t.handle_resctrl_event(GroupSnapshot(()))
    st = t.statistics()
    assert st.info == {} and st.ready == {"sampler": True, "resctrl": True}


def test_health_counts_only_pods_with_fewer_reconciled_than_total() -> None:
    s = make()
    s.handle_resctrl_event(GroupState("extra", "/g", 1, 2))  # more placed than listed: fine
    assert s.handle_health_timer() is None


def test_probe_runs_on_its_timer_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = MonitoringInfo("/x", "resctrl", ("llc_occupancy",), 32, True, "")
    bad = MonitoringInfo("/x", None, (), None, False, "/x does not exist")
    answers = [good, good, bad, bad, good]
    calls: list[MonitoringInfo] = []

    def probe() -> MonitoringInfo:
        calls.append(answers[len(calls)])
        return calls[-1]

    with caplog.at_level(logging.INFO, logger="resctrl_pipeline.sampling"):
        s = Sampler(FakeLlcReader(), probe=probe, with_mbm=False)
        s.on_timer("health", 1.0)
        s.on_timer("sample", 1.0)
        assert len(calls) == 1  # only the probe timer probes
        for now in (2.0, 3.0, 4.0, 5.0):
            s.on_timer("probe", now)
    assert len(calls) == 5
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.ERROR, "resctrl monitoring unusable: /x does not exist"),
        (logging.INFO, "resctrl monitoring is usable again at /x"),
    ]


def test_a_first_probe_that_fails_is_logged() -> None:
    bad = MonitoringInfo("/x", None, (), None, False, "/x does not exist")
    logger = logging.getLogger("resctrl_pipeline.sampling")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        Sampler(FakeLlcReader(), probe=lambda: bad, with_mbm=False)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["resctrl monitoring unusable: /x does not exist"]


def test_a_tick_over_many_real_groups_reads_each_pod_once_and_skips_only_the_bad_one(
    tmp_path: Path,
) -> None:
    """Over a plain-file tree with more pods than one chunk of the batched read: every
    pod's row has its own counters, the one pod whose file holds garbage is skipped and
    counted, and each row's timestamp lies within the tick."""
    from resctrl_pipeline.resctrl.mondata import PreadReader
    from tests.support import make_group, set_counter

    pods = 70  # three chunks of up to 32
    reader = PreadReader(mbm=True)
    s = Sampler(reader, with_mbm=True)
    try:
        for i in range(pods):
            g = make_group(str(tmp_path / f"pod_u{i}"), domains=(0, 1), value=i)
            s.handle_resctrl_event(GroupState(f"u{i}", g, 1, 1))
        s.handle_metadata_event(MetadataSnapshot(()))
        s.handle_sample_timer()  # opens every descriptor
        set_counter(str(tmp_path / "pod_u40"), 1, "mbm_local_bytes", "1_000\n")
        before = time.time_ns()
        batch = s.handle_sample_timer()
        after = time.time_ns()
    finally:
        reader.close()
    assert batch is not None
    cols = batch.columns
    expected = {f"u{i}": (2 * i, 2 * i, 2 * i) for i in range(pods) if i != 40}
    counters = zip(
        cols["llc_occupancy_bytes"], cols["mbm_total_bytes"], cols["mbm_local_bytes"], strict=True
    )
    got = dict(zip(cols["pod_uid"], counters, strict=True))
    assert got == expected
    assert s.read_errors == {"garbage": 1}
    assert all(before <= t <= after for t in cols["timestamp"])
    assert all(t >= cols["start_timestamp"][0] for t in cols["timestamp"])
