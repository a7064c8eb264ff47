"""Readiness verdicts, /status JSON, metrics and the status table from heartbeats."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from resctrl_pipeline.messages import ActorStats
from resctrl_pipeline.nri.listener_core import LatencyHistogram
from resctrl_pipeline.status_table import format_status
from resctrl_pipeline.supervise.families import MAX_LABEL_VALUES
from resctrl_pipeline.supervise.health import (
    ActorView,
    MetricsCollector,
    PipelineView,
    readiness,
)
from resctrl_pipeline.supervise.http import HttpEndpoints
from tests.prerequisites import requires


def view() -> PipelineView:
    v = PipelineView(started_at=100.0)
    v.actors["sampler"] = ActorView("sampler", pid=10, running=True, started_at=100.0)
    v.actors["writer"] = ActorView("writer", pid=11, running=True, started_at=100.0)
    return v


def test_not_ready_without_heartbeats() -> None:
    ok, reasons = readiness(view())
    assert not ok
    assert reasons == ["no heartbeat from sampler yet", "no heartbeat from writer yet"]


def test_ready_flags_and_reasons() -> None:
    v = view()
    v.actors["sampler"].stats = ActorStats(
        "sampler", 10, 100.0, ready={"sampler": False, "resctrl": False},
        info={"resctrl": "/sys/fs/resctrl does not exist"},
    )  # fmt: skip
    v.actors["writer"].stats = ActorStats("writer", 11, 100.0)
    ok, reasons = readiness(v)
    assert not ok
    assert reasons == ["sampler: resctrl: /sys/fs/resctrl does not exist",
                       "sampler: not ready"]  # fmt: skip
    v.actors["sampler"].stats = ActorStats("sampler", 10, 100.0,
                                           ready={"sampler": True, "resctrl": True})  # fmt: skip
    assert readiness(v) == (True, [])
    v.actors["writer"].running = False
    assert readiness(v) == (False, ["actor writer is not running"])


def test_stale_heartbeat_from_previous_process_is_not_trusted() -> None:
    v = view()
    v.actors["writer"].stats = ActorStats("writer", 11, 100.0)
    v.actors["sampler"].stats = ActorStats("sampler", 999, 100.0, ready={"sampler": True})
    assert readiness(v) == (False, ["no heartbeat from sampler yet"])


def test_metrics_families() -> None:
    v = view()
    v.actors["sampler"].restarts = 2
    v.actors["sampler"].stats = ActorStats(
        "sampler", 10, 100.0,
        counters={"samples": 5, "dropped_occupancy": 3, "read_errors_unavailable": 1,
                  "rotations_size": 2},
        gauges={"pods": 4},
    )  # fmt: skip
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MetricsCollector(lambda: v))  # type: ignore[arg-type]
    text = generate_latest(reg).decode()
    assert 'resctrl_pipeline_dropped_messages_total{actor="sampler",edge="occupancy"} 3.0' in text
    assert 'resctrl_pipeline_read_errors_total{actor="sampler",reason="unavailable"} 1.0' in text
    assert 'resctrl_pipeline_samples_total{actor="sampler"} 5.0' in text
    assert 'resctrl_pipeline_rotations_total{actor="sampler",reason="size"} 2.0' in text
    assert 'resctrl_pipeline_pods{actor="sampler"} 4.0' in text
    assert 'resctrl_pipeline_actor_restarts_total{actor="sampler"} 2.0' in text
    assert 'resctrl_pipeline_actor_up{actor="writer"} 1.0' in text
    assert "resctrl_pipeline_ready 0.0" in text


def test_status_table() -> None:
    v = view()
    v.actors["sampler"].stats = ActorStats("sampler", 10, 100.0,
                                           counters={"dropped_occupancy": 7},
                                           gauges={"last_sample_seconds": 150.0})  # fmt: skip
    table = format_status(v.as_json(), now=160.0)
    lines = table.splitlines()
    assert lines[0].split() == ["ACTOR", "PID", "STATE", "UPTIME", "RESTARTS", "DROPPED",
                                "LAST", "SAMPLE"]  # fmt: skip
    assert lines[1].split() == ["sampler", "10", "running", "60s", "0", "7", "10s", "ago"]
    assert "not ready:" in table


def _families(v: PipelineView) -> dict[str, Metric]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MetricsCollector(lambda: v))  # type: ignore[arg-type]
    return {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}


def test_latency_counters_become_a_real_histogram() -> None:
    hist = LatencyHistogram()
    for seconds in (0.0003, 0.003, 0.004, 3.0):  # ≤0.5 ms, two ≤5 ms, one past 2 s
        hist.observe(seconds)
    v = view()
    counters = hist.counters("nri_answer_seconds")
    v.actors["sampler"].stats = ActorStats("sampler", 10, 100.0, counters=counters)
    fam = _families(v)["resctrl_pipeline_nri_answer_seconds"]
    assert fam.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 3 and buckets["2.0"] == 3
    assert buckets["+Inf"] == 4
    (count,) = [s.value for s in fam.samples if s.name.endswith("_count")]
    (total,) = [s.value for s in fam.samples if s.name.endswith("_sum")]
    assert count == 4 and total == pytest.approx(3.0073)
    assert all(s.labels["actor"] == "sampler" for s in fam.samples)


def test_methods_events_edges_and_timers_are_labels_not_names() -> None:
    v = view()
    v.actors["sampler"].stats = ActorStats(
        "sampler", 10, 100.0,
        counters={"nri_requests.Synchronize": 2, "nri_requests.other": 5,
                  "nri_event.START_CONTAINER": 7, "sent_occupancy": 9,
                  "missed_ticks_sample": 1, "nri_fast_path.ok": 3, "bytes_written": 4096,
                  "hook_errors_on_message": 2},
        gauges={"last_sample_seconds": 150.0},
    )  # fmt: skip
    fams = _families(v)
    text = {(f.name, tuple(sorted(s.labels.items())), s.value)
            for f in fams.values() for s in f.samples}  # fmt: skip
    assert ("resctrl_pipeline_nri_requests", (("actor", "sampler"), ("method", "Synchronize")),
            2.0) in text  # fmt: skip
    assert ("resctrl_pipeline_nri_requests", (("actor", "sampler"), ("method", "other")),
            5.0) in text  # fmt: skip
    assert ("resctrl_pipeline_nri_events", (("actor", "sampler"), ("event", "START_CONTAINER")),
            7.0) in text  # fmt: skip
    assert ("resctrl_pipeline_messages_sent", (("actor", "sampler"), ("edge", "occupancy")),
            9.0) in text  # fmt: skip
    assert ("resctrl_pipeline_missed_ticks", (("actor", "sampler"), ("timer", "sample")),
            1.0) in text  # fmt: skip
    assert ("resctrl_pipeline_nri_fast_path", (("actor", "sampler"), ("outcome", "ok")),
            3.0) in text  # fmt: skip
    assert ("resctrl_pipeline_hook_errors", (("actor", "sampler"), ("hook", "on_message")),
            2.0) in text  # fmt: skip
    assert fams["resctrl_pipeline_last_sample_timestamp_seconds"].type == "gauge"
    assert fams["resctrl_pipeline_written_bytes"].type == "counter"  # unit last, then _total
    assert not [n for n in fams if "Synchronize" in n or "START_CONTAINER" in n]


def test_label_values_are_bounded() -> None:
    v = view()
    counters = {f"nri_requests.M{i}": 1.0 for i in range(500)}
    counters["read_errors_not a label"] = 4.0
    v.actors["sampler"].stats = ActorStats("sampler", 10, 100.0, counters=counters)
    v.actors["writer"].stats = ActorStats("writer", 11, 100.0,
                                          counters={"nri_requests.W": 2.0,
                                                    "nri_requests.M0": 1.0})  # fmt: skip
    fams = _families(v)
    methods = fams["resctrl_pipeline_nri_requests"].samples
    assert len({s.labels["method"] for s in methods}) == MAX_LABEL_VALUES + 1  # kept + other
    assert sum(s.value for s in methods) == 503  # nothing lost: the rest counts as other
    # A value already kept stays itself for every actor; a new one is other.
    writer = {s.labels["method"]: s.value for s in methods if s.labels["actor"] == "writer"}
    assert writer == {"M0": 1.0, "other": 2.0}
    (bad,) = fams["resctrl_pipeline_read_errors"].samples
    assert bad.labels["reason"] == "other" and bad.value == 4


def _realistic_view() -> PipelineView:
    hist = LatencyHistogram()
    hist.observe(0.002)
    v = view()
    v.actors["sampler"].stats = ActorStats(
        "sampler", 10, 100.0,
        counters={"samples": 5, "ticks": 5, "dropped_occupancy": 3, "read_errors_unavailable": 1,
                  "received_groups": 4, "sent_occupancy": 5, "missed_ticks_sample": 0,
                  "decode_errors": 0, **hist.counters("nri_answer_seconds"),
                  **hist.counters("fastpath_seconds"), "nri_requests.Synchronize": 1,
                  "nri_event.START_CONTAINER": 1, "nri_disconnects.eof": 1},
        gauges={"pods": 4, "last_sample_seconds": 150.0, "nri_answer_seconds_max": 0.002,
                "buffered_bytes": 10},
    )  # fmt: skip
    v.actors["writer"].stats = ActorStats("writer", 11, 100.0,
                                          counters={"rows_written": 7, "rotations_size": 1},
                                          gauges={"disk_full": 0})  # fmt: skip
    return v


@pytest.mark.slow
@pytest.mark.slow
@requires("prometheus")
def test_promtool_finds_nothing_to_complain_about() -> None:
    promtool = shutil.which("promtool") or "promtool"
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MetricsCollector(_realistic_view))
    text = generate_latest(reg)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _get(port: int, path: str, accept: str | None) -> tuple[str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept is not None:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    http = HttpEndpoints("127.0.0.1:0", _realistic_view)
    http.start()
    try:
        prom_accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                       "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # fmt: skip
        ctype, body = _get(http.port, "/metrics", prom_accept)
        assert ctype.startswith("application/openmetrics-text")
        assert body.endswith("# EOF\n")
        fams = {f.name: f for f in openmetrics_families(body)}
        assert fams["resctrl_pipeline_nri_answer_seconds"].type == "histogram"
        assert fams["resctrl_pipeline_samples"].type == "counter"
        ctype, body = _get(http.port, "/metrics", None)
        assert ctype.startswith("text/plain") and "# EOF" not in body
        assert "resctrl_pipeline_samples_total" in body
    finally:
        http.stop()


def _reporting() -> PipelineView:
    v = view()
    v.actors["sampler"].stats = ActorStats("sampler", 10, 100.0)
    v.actors["writer"].stats = ActorStats("writer", 11, 100.0)
    v.actors["sampler"].heartbeat_at = v.actors["writer"].heartbeat_at = 50.0
    return v


def test_actor_silent_for_three_heartbeats_is_named() -> None:
    v = _reporting()
    assert readiness(v, now=52.9) == (True, [])
    v.actors["writer"].heartbeat_at = 53.0
    assert readiness(v, now=53.4) == (False, ["sampler: no heartbeat for 3.4 s"])
    assert v.as_json(now=53.4)["reasons"] == ["sampler: no heartbeat for 3.4 s"]


def test_killed_actor_that_lingers_is_named() -> None:
    v = _reporting()
    v.actors["sampler"].killed_at = 80.0
    ok, reasons = readiness(v, now=82.5)
    assert not ok
    assert len(reasons) == 2 and reasons[1] == "writer: no heartbeat for 32.5 s"
    assert reasons[0].startswith("sampler: pid 10 killed 2.5 s ago for its silence and not gone")


def test_heartbeat_age_and_liveness_kills_are_exported() -> None:
    import time

    v = _reporting()
    v.actors["sampler"].heartbeat_at = time.monotonic() - 5.0
    v.actors["sampler"].liveness_kills = 2
    v.actors["writer"].heartbeat_at = None  # no heartbeat yet: no age
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(lambda: v))
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    ages = {s.labels["actor"]: s.value for s in fams[
        "resctrl_pipeline_actor_heartbeat_age_seconds"].samples}  # fmt: skip
    assert list(ages) == ["sampler"] and 5.0 <= ages["sampler"] < 60
    kills = {s.labels["actor"]: s.value for s in fams[
        "resctrl_pipeline_actor_liveness_kills"].samples if s.name.endswith("_total")}  # fmt: skip
    assert kills == {"sampler": 2.0, "writer": 0.0}
