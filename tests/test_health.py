"""Readiness verdicts, /status JSON, metrics and the status table from heartbeats."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from resctrl_pipeline.messages import ActorStats
from resctrl_pipeline.status_table import format_status
from resctrl_pipeline.supervise.health import (
    ActorView,
    MetricsCollector,
    PipelineView,
    readiness,
)


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
                       "sampler: sampler: not ready"]  # fmt: skip
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
