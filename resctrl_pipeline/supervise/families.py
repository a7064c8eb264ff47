"""Prometheus families from the actors' heartbeat counters and gauges (pure).

Actors know nothing of Prometheus: their heartbeats carry flat ``name → number`` maps.
The form of a counter's name decides its family here:

* ``<base>_seconds_bucket_le_<bound>``, ``<base>_seconds_sum``, ``<base>_seconds_count``
  (cumulative, built by :class:`resctrl_pipeline.nri.listener_core.LatencyHistogram`)
  → one histogram ``resctrl_pipeline_<base>_seconds`` with ``_bucket{le}``, ``_sum``
  and ``_count``;
* a known prefix with a value after it, e.g. ``dropped_<edge>``, ``missed_ticks_<timer>``,
  ``read_errors_<reason>`` → a counter labelled with that value (:data:`PREFIXED`);
* ``<family>.<value>``, e.g. ``nri_requests.Synchronize`` or ``nri_event.START_CONTAINER``
  → a counter labelled with the value (:data:`DOTTED`);
* any other counter → ``resctrl_pipeline_<name>_total``.

Every gauge becomes ``resctrl_pipeline_<name>`` (a few are renamed for Prometheus'
unit conventions, :data:`GAUGE_NAMES`; likewise counters, :data:`COUNTER_NAMES`).
Every family has the label ``actor``.

Label values are bounded: the producers already map what a peer sends (NRI method
names, event numbers) onto fixed sets plus ``other``; here, as a second line, a value
that is not a short identifier, and every value past :data:`MAX_LABEL_VALUES` distinct
ones of a family, is counted under ``other``. No heartbeat can grow the number of
series beyond that.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = [
    "COUNTER_NAMES",
    "DOTTED",
    "GAUGE_NAMES",
    "MAX_LABEL_VALUES",
    "PREFIXED",
    "ActorFamilies",
    "Labelled",
]

#: Distinct label values kept per family; further values are counted under ``other``.
MAX_LABEL_VALUES = 48
_VALUE = re.compile(r"[A-Za-z0-9_]{1,64}")
_NAME = re.compile(r"[^a-zA-Z0-9_]")
_HISTOGRAM = re.compile(
    r"(?P<base>[a-z][a-z0-9_]*_seconds)_(?:bucket_le_(?P<le>inf|[0-9][0-9.e+-]*)|(?P<part>sum|count))"
)


@dataclass(frozen=True, slots=True)
class Labelled:
    """A counter family whose heartbeat keys carry one label value."""

    metric: str
    label: str
    help: str


PREFIXED: tuple[tuple[str, Labelled], ...] = (
    ("dropped_", Labelled("dropped_messages", "edge",
                          "Messages dropped at a full high-water mark, by edge.")),
    ("received_", Labelled("messages_received", "edge", "Messages received, by input edge.")),
    ("sent_", Labelled("messages_sent", "edge", "Messages sent, by output edge.")),
    ("missed_ticks_", Labelled("missed_ticks", "timer",
                               "Timer ticks skipped after a stall (never replayed), by timer.")),
    ("read_errors_", Labelled("read_errors", "reason",
                              "Counter reads that gave no number, by reason.")),
    ("write_errors_", Labelled("write_errors", "reason", "Output writes that failed, by errno.")),
    ("rotations_", Labelled("rotations", "reason", "Output files finalised, by reason.")),
    ("rejected_batches_", Labelled("rejected_batches", "reason",
                                   "Occupancy batches refused, by reason.")),
    ("hook_errors_", Labelled("hook_errors", "hook",
                              "Handler calls that raised (their input dropped), by hook.")),
)  # fmt: skip
"""``<prefix><value>`` counters, matched in this order."""

DOTTED: dict[str, Labelled] = {
    "nri_requests": Labelled("nri_requests", "method", "NRI requests served, by method."),
    "nri_errors": Labelled("nri_errors", "code", "NRI requests answered with an error, by code."),
    "nri_event": Labelled("nri_events", "event", "NRI events delivered, by event."),
    "nri_event_ignored": Labelled("nri_events_ignored", "event",
                                  "NRI events outside the subscription, by event."),
    "nri_disconnects": Labelled("nri_disconnects", "reason",
                                "NRI connections ended, by reason."),
    "nri_fast_path": Labelled("nri_fast_path", "outcome",
                              "StartContainer fast-path placements, by outcome."),
}  # fmt: skip
"""``<family>.<value>`` counters; an unlisted family gets the label ``kind``."""

GAUGE_NAMES: dict[str, str] = {"last_sample_seconds": "last_sample_timestamp_seconds"}
"""Heartbeat gauge → metric name where the heartbeat's name breaks a convention."""

COUNTER_NAMES: dict[str, str] = {
    "bytes_written": "written_bytes",
    "nri_bytes_received": "nri_received_bytes",
    "nri_bytes_sent": "nri_sent_bytes",
}
"""Heartbeat counter → metric name (``_total`` added) where the unit is not last."""


def _metric_name(text: str) -> str:
    return _NAME.sub("_", text).strip("_")[:120] or "unnamed"


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


def _bound(value: str) -> float:
    return math.inf if value == "inf" else float(value)


class ActorFamilies:
    """Collects the families of every actor's heartbeat for one scrape.

    Usage: :meth:`add` once per actor, then :meth:`collect`.
    """

    def __init__(self) -> None:
        # (metric, label, help) → actor → label value → number
        self._labelled: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
        self._counters: dict[str, dict[str, float]] = {}
        self._gauges: dict[str, dict[str, float]] = {}
        # base → actor → (bound → cumulative count, raw heartbeat keys → numbers)
        self._histograms: dict[str, dict[str, tuple[dict[float, float], dict[str, float]]]] = {}

    def add(self, actor: str, counters: Mapping[str, float], gauges: Mapping[str, float]) -> None:
        """Sort one actor's heartbeat counters and gauges into families."""
        for key, value in counters.items():
            self._add_counter(actor, key, value)
        for key, value in gauges.items():
            name = GAUGE_NAMES.get(key) or _metric_name(key)
            self._gauges.setdefault(name, {})[actor] = value

    def _add_counter(self, actor: str, key: str, value: float) -> None:
        hist = _HISTOGRAM.fullmatch(key)
        if hist is not None:
            buckets, raw = self._histograms.setdefault(hist["base"], {}).setdefault(
                actor, ({}, {})
            )
            raw[key] = value
            if hist["le"] is not None:
                with contextlib.suppress(ValueError):  # "1.2.3" is no bound: no bucket
                    buckets[_bound(hist["le"])] = value
            return
        for prefix, fam in PREFIXED:
            if key.startswith(prefix) and len(key) > len(prefix):
                self._label(fam, actor, key[len(prefix) :], value)
                return
        family, dot, label_value = key.partition(".")
        if dot:
            fam = DOTTED.get(family) or Labelled(_metric_name(family), "kind",
                                                 f"Actor counter {family}, by kind.")  # fmt: skip
            self._label(fam, actor, label_value, value)
            return
        self._counters.setdefault(COUNTER_NAMES.get(key) or _metric_name(key), {})[actor] = value

    def _label(self, fam: Labelled, actor: str, value: str, number: float) -> None:
        per_actor = self._labelled.setdefault((fam.metric, fam.label, fam.help), {})
        values = per_actor.setdefault(actor, {})
        seen = {v for vs in per_actor.values() for v in vs}
        if not _VALUE.fullmatch(value) or (value not in seen and len(seen) >= MAX_LABEL_VALUES):
            value = "other"
        values[value] = values.get(value, 0.0) + number

    def collect(self) -> Iterator[Metric]:
        """The families, each name once, in a stable order."""
        for (metric, label, help_), per_actor in sorted(self._labelled.items()):
            fam = CounterMetricFamily(f"resctrl_pipeline_{metric}", help_,
                                      labels=["actor", label])  # fmt: skip
            for actor, values in sorted(per_actor.items()):
                for value, number in sorted(values.items()):
                    fam.add_metric([actor, value], number)
            yield fam
        for base, per_actor_h in sorted(self._histograms.items()):
            hfam = HistogramMetricFamily(f"resctrl_pipeline_{base}",
                                         f"Histogram of {base.replace('_', ' ')}.",
                                         labels=["actor"])  # fmt: skip
            for actor, (buckets, raw) in sorted(per_actor_h.items()):
                if math.inf in buckets:
                    pairs = [(_le(b), n) for b, n in sorted(buckets.items())]
                    hfam.add_metric([actor], pairs, raw.get(f"{base}_sum", 0.0))
                else:  # no +Inf bucket, so no histogram: plain counters, nothing lost
                    for key, number in raw.items():
                        self._counters.setdefault(_metric_name(key), {})[actor] = number
            if hfam.samples:
                yield hfam
        for name, per_actor_c in sorted(self._counters.items()):
            cfam = CounterMetricFamily(f"resctrl_pipeline_{name}", f"Actor counter {name}.",
                                       labels=["actor"])  # fmt: skip
            for actor, number in sorted(per_actor_c.items()):
                cfam.add_metric([actor], number)
            yield cfam
        for name, per_actor_g in sorted(self._gauges.items()):
            gfam = GaugeMetricFamily(f"resctrl_pipeline_{name}", f"Actor gauge {name}.",
                                     labels=["actor"])  # fmt: skip
            for actor, number in sorted(per_actor_g.items()):
                gfam.add_metric([actor], number)
            yield gfam
