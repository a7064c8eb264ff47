"""Readiness and metrics derived from the actors' heartbeats (pure over a snapshot).

The supervisor keeps the latest :class:`ActorStats` per actor plus its own process
facts; this module turns them into the ``/ready`` verdict and Prometheus families.
The actors' counters and gauges become families as :mod:`.families` describes
(histograms, labelled counters with bounded label values, plain counters and gauges).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from resctrl_pipeline.messages import ActorStats, PodSummary
from resctrl_pipeline.supervise.families import ActorFamilies

__all__ = ["ActorView", "MetricsCollector", "PipelineView", "readiness"]



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
    node: str = ""
    #: The sampler's latest per-pod summary (None: none yet, or ``http.pod_metrics`` off).
    pods: PodSummary | None = None
    pod_metrics: bool = True

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
        families = ActorFamilies()
        for name, actor in sorted(view.actors.items()):
            up.add_metric([name], 1.0 if actor.running else 0.0)
            restarts.add_metric([name], float(actor.restarts))
            if actor.stats is not None:
                families.add(name, actor.stats.counters, actor.stats.gauges)
        yield from (up, restarts, ready_fam)
        yield from families.collect()
