"""Readiness and metrics derived from the actors' heartbeats (pure over a snapshot).

The supervisor keeps the latest :class:`ActorStats` per actor plus its own process
facts; this module turns them into the ``/ready`` verdict and Prometheus families.
The actors' counters and gauges become families as :mod:`.families` describes
(histograms, labelled counters with bounded label values, plain counters and gauges).

Liveness: the supervisor records when (monotonic clock) each heartbeat arrived. An
actor silent for :data:`SILENT_AFTER` quiet heartbeat periods
(:func:`~resctrl_pipeline.topology.quiet_heartbeat_interval`: an actor with nothing to
report sends one that rarely) makes ``/ready`` 503 (``sampler: no heartbeat for
15.4 s``); the supervisor kills it after
``supervisor.liveness_timeout``. Times are passed in (``now``), so this stays pure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from resctrl_pipeline.messages import ActorStats, PodSummary
from resctrl_pipeline.supervise.families import ActorFamilies
from resctrl_pipeline.topology import HEARTBEAT_INTERVAL

__all__ = ["SILENT_AFTER", "ActorView", "MetricsCollector", "PipelineView", "readiness"]

#: Heartbeat intervals without one after which an actor is reported silent.
SILENT_AFTER = 3


@dataclass
class ActorView:
    """What the supervisor knows about one actor."""

    name: str
    pid: int | None = None
    running: bool = False
    restarts: int = 0
    started_at: float | None = None
    stats: ActorStats | None = None
    #: Monotonic time the current process was started / its last heartbeat arrived.
    started_mono: float | None = None
    heartbeat_at: float | None = None
    #: Monotonic time the supervisor SIGKILLed the current process for its silence
    #: (None otherwise); until the process is gone its replacement waits.
    killed_at: float | None = None
    #: Processes of this actor killed for their silence.
    liveness_kills: int = 0

    def heartbeat_age(self, now: float) -> float | None:
        """Seconds since the current process's last heartbeat (None: none yet)."""
        return None if self.heartbeat_at is None else max(0.0, now - self.heartbeat_at)


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
    #: The longest period between two heartbeats of a live actor (its quiet period).
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    #: Bytes of each L3 domain (``resctrl.cache``), for shares of the cache; {}: unknown.
    l3_cache_bytes: dict[int, int] = field(default_factory=dict)

    def current_pods(self) -> PodSummary | None:
        """:attr:`pods` while the sampler runs, else None: a dead sampler's last numbers
        are not current, so its pods' series go stale until the next one reports."""
        sampler = self.actors.get("sampler")
        return self.pods if sampler is not None and sampler.running else None

    def as_json(self, now: float | None = None) -> dict[str, object]:
        """The ``/status`` document (``now``: monotonic, default the current time)."""
        now = time.monotonic() if now is None else now
        ready, reasons = readiness(self, now)
        return {
            "ready": ready,
            "reasons": reasons,
            "started_at": self.started_at,
            "node": self.node,
            "l3_cache_bytes": {str(d): n for d, n in sorted(self.l3_cache_bytes.items())},
            "actors": {
                name: {
                    "pid": a.pid,
                    "running": a.running,
                    "restarts": a.restarts,
                    "started_at": a.started_at,
                    "heartbeat_age": a.heartbeat_age(now),
                    "liveness_kills": a.liveness_kills,
                    "counters": dict(a.stats.counters) if a.stats else {},
                    "gauges": dict(a.stats.gauges) if a.stats else {},
                    "ready": dict(a.stats.ready) if a.stats else {},
                    "info": dict(a.stats.info) if a.stats else {},
                }
                for name, a in self.actors.items()
            },
        }


def readiness(view: PipelineView, now: float | None = None) -> tuple[bool, list[str]]:
    """``/ready``: every actor runs, reported within :data:`SILENT_AFTER` heartbeat
    intervals, and every readiness flag is true.

    Args:
        now: monotonic time (default the current time).

    Returns:
        (ready, reasons) where reasons says, one line each, what is missing.
    """
    now = time.monotonic() if now is None else now
    reasons: list[str] = []
    if view.stopping:
        reasons.append("the pipeline is stopping")
    for name, actor in view.actors.items():
        if not actor.running:
            reasons.append(f"actor {name} is not running")
            continue
        if actor.killed_at is not None:
            reasons.append(
                f"{name}: pid {actor.pid} killed {now - actor.killed_at:.1f} s ago for its "
                "silence and not gone yet (an uninterruptible kernel wait?); its replacement "
                "starts when it is"
            )
            continue
        stats = actor.stats
        if stats is None or stats.pid != actor.pid:
            reasons.append(f"no heartbeat from {name} yet")
            continue
        age = actor.heartbeat_age(now)
        if age is not None and age > SILENT_AFTER * view.heartbeat_interval:
            reasons.append(f"{name}: no heartbeat for {age:.1f} s")
            continue
        for flag, ok in sorted(stats.ready.items()):
            if not ok:
                why = stats.info.get(flag, "not ready")
                # An actor's own flag (the sampler's "sampler") is not repeated.
                reasons.append(f"{name}: {why}" if flag == name else f"{name}: {flag}: {why}")
    return (not reasons, reasons)


class MetricsCollector:
    """prometheus_client collector reading a :class:`PipelineView` at scrape time."""

    def __init__(self, view: Callable[[], PipelineView]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families for one scrape."""
        view = self._view()
        now = time.monotonic()
        age = GaugeMetricFamily(
            "resctrl_pipeline_actor_heartbeat_age_seconds",
            "Seconds since the actor's last heartbeat arrived (one a second when busy, one every "
            "few seconds when idle).",
            labels=["actor"],
        )
        kills = CounterMetricFamily(
            "resctrl_pipeline_actor_liveness_kills",
            "Processes of the actor killed after supervisor.liveness_timeout without a heartbeat.",
            labels=["actor"],
        )
        up = GaugeMetricFamily("resctrl_pipeline_actor_up", "1 while the actor runs.",
                               labels=["actor"])  # fmt: skip
        restarts = CounterMetricFamily(
            "resctrl_pipeline_actor_restarts", "Restarts of each actor.", labels=["actor"]
        )
        ready_fam = GaugeMetricFamily("resctrl_pipeline_ready", "1 when /ready answers 200.")
        ready_fam.add_metric([], 1.0 if readiness(view, now)[0] else 0.0)
        families = ActorFamilies()
        for name, actor in sorted(view.actors.items()):
            up.add_metric([name], 1.0 if actor.running else 0.0)
            restarts.add_metric([name], float(actor.restarts))
            kills.add_metric([name], float(actor.liveness_kills))
            seconds = actor.heartbeat_age(now)
            if seconds is not None:
                age.add_metric([name], seconds)
            if actor.stats is not None:
                families.add(name, actor.stats.counters, actor.stats.gauges)
        yield from (up, restarts, ready_fam, age, kills)
        yield from families.collect()
