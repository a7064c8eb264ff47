"""Readiness and metrics derived from the actors' heartbeats (pure over a snapshot).

The supervisor keeps the latest :class:`ActorStats` per actor plus its own process
facts; this module turns them into the ``/ready`` verdict and Prometheus families.
Counter names from the actors follow conventions that map onto labelled metrics:
``dropped_<edge>`` → ``resctrl_pipeline_dropped_messages_total{edge}``,
``read_errors_<reason>`` → ``resctrl_pipeline_read_errors_total{reason}`` (likewise
``write_errors_``, ``rotations_``, ``rejected_batches_``); every other
counter becomes ``resctrl_pipeline_<name>_total{actor}`` and every gauge
``resctrl_pipeline_<name>{actor}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from resctrl_pipeline.messages import ActorStats

__all__ = ["ActorView", "MetricsCollector", "PipelineView", "readiness"]

_NAME = re.compile(r"[^a-zA-Z0-9_]")
_LABELLED = {
    "dropped_": ("dropped_messages", "edge", "Messages dropped at a full high-water mark."),
    "read_errors_": ("read_errors", "reason", "Counter reads that gave no number, by reason."),
    "write_errors_": ("write_errors", "reason", "Output writes that failed, by errno name."),
    "rotations_": ("rotations", "reason", "Output files finalised, by reason."),
    "rejected_batches_": ("rejected_batches", "reason", "Occupancy batches refused, by reason."),
}


@dataclass
class ActorView:
    """What the supervisor knows about one actor."""

    name: str
    pid: int | None = None
    running: bool = False
    restarts: int = 0
    started_at: float | None = None
    stats: ActorStats | None = None


@dataclass
class PipelineView:
    """Everything the HTTP endpoints report; replaced or updated by the supervisor."""

    actors: dict[str, ActorView] = field(default_factory=dict)
    started_at: float = 0.0
    stopping: bool = False

    def as_json(self) -> dict[str, object]:
        """The ``/status`` document."""
        ready, reasons = readiness(self)
        return {
            "ready": ready,
            "reasons": reasons,
            "started_at": self.started_at,
            "actors": {
                name: {
                    "pid": a.pid,
                    "running": a.running,
                    "restarts": a.restarts,
                    "started_at": a.started_at,
                    "counters": dict(a.stats.counters) if a.stats else {},
                    "gauges": dict(a.stats.gauges) if a.stats else {},
                    "ready": dict(a.stats.ready) if a.stats else {},
                    "info": dict(a.stats.info) if a.stats else {},
                }
                for name, a in self.actors.items()
            },
        }


def readiness(view: PipelineView) -> tuple[bool, list[str]]:
    """``/ready``: every actor runs and reported, and every readiness flag is true.

    Returns:
        (ready, reasons) where reasons says, one line each, what is missing.
    """
    reasons: list[str] = []
    if view.stopping:
        reasons.append("the pipeline is stopping")
    for name, actor in view.actors.items():
        if not actor.running:
            reasons.append(f"actor {name} is not running")
            continue
        stats = actor.stats
        if stats is None or stats.pid != actor.pid:
            reasons.append(f"no heartbeat from {name} yet")
            continue
        for flag, ok in sorted(stats.ready.items()):
            if not ok:
                why = stats.info.get(flag, "not ready")
                reasons.append(f"{name}: {flag}: {why}")
    return (not reasons, reasons)


def _metric_name(text: str) -> str:
    return _NAME.sub("_", text).strip("_")[:120] or "unnamed"


class MetricsCollector:
    """prometheus_client collector reading a :class:`PipelineView` at scrape time."""

    def __init__(self, view: Callable[[], PipelineView]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families for one scrape."""
        view = self._view()
        up = GaugeMetricFamily("resctrl_pipeline_actor_up", "1 while the actor runs.",
                               labels=["actor"])  # fmt: skip
        restarts = CounterMetricFamily(
            "resctrl_pipeline_actor_restarts", "Restarts of each actor.", labels=["actor"]
        )
        ready_fam = GaugeMetricFamily("resctrl_pipeline_ready", "1 when /ready answers 200.")
        ready_fam.add_metric([], 1.0 if readiness(view)[0] else 0.0)
        labelled = {
            prefix: CounterMetricFamily(f"resctrl_pipeline_{name}", help_, labels=["actor", label])
            for prefix, (name, label, help_) in _LABELLED.items()
        }
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        for name, actor in sorted(view.actors.items()):
            up.add_metric([name], 1.0 if actor.running else 0.0)
            restarts.add_metric([name], float(actor.restarts))
            if actor.stats is None:
                continue
            for key, value in sorted(actor.stats.counters.items()):
                for prefix, fam in labelled.items():
                    if key.startswith(prefix):
                        fam.add_metric([name, _metric_name(key[len(prefix) :])], value)
                        break
                else:
                    metric = _metric_name(key)
                    fam_c = counters.setdefault(metric, CounterMetricFamily(
                        f"resctrl_pipeline_{metric}", f"Actor counter {metric}.",
                        labels=["actor"]))  # fmt: skip
                    fam_c.add_metric([name], value)
            for key, value in sorted(actor.stats.gauges.items()):
                metric = _metric_name(key)
                fam_g = gauges.setdefault(metric, GaugeMetricFamily(
                    f"resctrl_pipeline_{metric}", f"Actor gauge {metric}.",
                    labels=["actor"]))  # fmt: skip
                fam_g.add_metric([name], value)
        yield from (up, restarts, ready_fam, *labelled.values())
        yield from counters.values()
        yield from gauges.values()
