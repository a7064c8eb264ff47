"""Per-pod series and the ``/pods`` document, from the sampler's latest :class:`PodSummary`.

The supervisor keeps only the latest summary (the sampler sends one about once a
second) and renders it when asked, so a pod that is gone from the summary is gone
from the next scrape, and the cost is paid per scrape, not per tick. Series, each
labelled ``namespace``, ``pod``, ``pod_uid`` and ``node``:

* ``resctrl_pod_llc_occupancy_bytes`` (gauge): the L3 occupancy at the last tick;
* ``resctrl_pod_mbm_total_bytes_total``, ``resctrl_pod_mbm_local_bytes_total``
  (counters, where the hardware has MBM): the groups' cumulative memory traffic; a
  group created again starts from 0, which ``rate()`` takes as a counter reset;
* ``resctrl_pod_containers``, ``resctrl_pod_reconciled_containers`` (gauges).

A summary entry of the wrong type is left out (and counted in
``resctrl_pipeline_pod_entries_rejected``): the supervisor renders only what it
could check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeGuard

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from resctrl_pipeline.messages import PodSummary

__all__ = ["PodMetricsCollector", "PodRow", "pod_rows", "pods_document"]

_LABELS = ["namespace", "pod", "pod_uid", "node"]


@dataclass(frozen=True, slots=True)
class PodRow:
    """One pod's latest reading (``/pods`` entry; ``None``: the hardware has no MBM)."""

    namespace: str
    pod: str
    pod_uid: str
    llc_occupancy_bytes: int
    mbm_total_bytes: int | None
    mbm_local_bytes: int | None
    containers: int
    reconciled_containers: int


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def pod_rows(summary: PodSummary | None) -> tuple[list[PodRow], int]:
    """The summary's pods, and how many entries were left out for a wrong type."""
    if summary is None:
        return [], 0
    cols = summary.columns
    uids = cols.get("pod_uid") or []
    none: list[object] = [None] * len(uids)
    rows, rejected = [], 0
    for ns, name, uid, total, rec, llc, mbm_t, mbm_l in zip(
        cols.get("pod_namespace", none), cols.get("pod_name", none), uids,
        cols.get("total_containers", none), cols.get("reconciled_containers", none),
        cols.get("llc_occupancy_bytes", none), cols.get("mbm_total_bytes", none),
        cols.get("mbm_local_bytes", none), strict=False,
    ):  # fmt: skip
        if not (
            isinstance(uid, str) and isinstance(ns, str | None) and isinstance(name, str | None)
            and _int(total) and _int(rec) and _int(llc)
            and (mbm_t is None or _int(mbm_t)) and (mbm_l is None or _int(mbm_l))
        ):  # fmt: skip
            rejected += 1
            continue
        rows.append(PodRow(ns or "", name or "", uid, llc, mbm_t, mbm_l, total, rec))
    return rows, rejected


def pods_document(node: str, summary: PodSummary | None) -> dict[str, object]:
    """The ``GET /pods`` JSON document (``timestamp``: ns, 0 before the first summary)."""
    rows, _ = pod_rows(summary)
    return {
        "node": node,
        "timestamp": summary.timestamp if summary is not None else 0,
        "pods": [
            {
                "namespace": r.namespace,
                "pod": r.pod,
                "pod_uid": r.pod_uid,
                "llc_occupancy_bytes": r.llc_occupancy_bytes,
                "mbm_total_bytes": r.mbm_total_bytes,
                "mbm_local_bytes": r.mbm_local_bytes,
                "containers": r.containers,
                "reconciled_containers": r.reconciled_containers,
            }
            for r in rows
        ],
    }


class PodMetricsCollector:
    """prometheus_client collector of the ``resctrl_pod_*`` families.

    Args:
        latest: returns the node name and the latest summary (None: no series).
    """

    def __init__(self, latest: Callable[[], tuple[str, PodSummary | None]]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        """Yield the per-pod families for one scrape."""
        node, summary = self._latest()
        rows, rejected = pod_rows(summary)
        llc = GaugeMetricFamily("resctrl_pod_llc_occupancy_bytes",
                                "L3 cache occupancy of the pod's monitoring group at the "
                                "last sampling tick.", labels=_LABELS)  # fmt: skip
        mbm_total = CounterMetricFamily("resctrl_pod_mbm_total_bytes",
                                        "Memory traffic of the pod's group (MBM total).",
                                        labels=_LABELS)  # fmt: skip
        mbm_local = CounterMetricFamily("resctrl_pod_mbm_local_bytes",
                                        "Memory traffic of the pod's group to its local "
                                        "memory (MBM local).", labels=_LABELS)  # fmt: skip
        containers = GaugeMetricFamily("resctrl_pod_containers",
                                       "Containers of the pod.", labels=_LABELS)  # fmt: skip
        reconciled = GaugeMetricFamily("resctrl_pod_reconciled_containers",
                                       "Containers whose every thread is in the pod's group.",
                                       labels=_LABELS)  # fmt: skip
        for r in rows:
            labels = [r.namespace, r.pod, r.pod_uid, node]
            llc.add_metric(labels, r.llc_occupancy_bytes)
            if r.mbm_total_bytes is not None:
                mbm_total.add_metric(labels, r.mbm_total_bytes)
            if r.mbm_local_bytes is not None:
                mbm_local.add_metric(labels, r.mbm_local_bytes)
            containers.add_metric(labels, r.containers)
            reconciled.add_metric(labels, r.reconciled_containers)
        rejected_fam = GaugeMetricFamily(
            "resctrl_pipeline_pod_entries_rejected",
            "Entries of the sampler's latest per-pod summary left out for a wrong type.",
        )
        rejected_fam.add_metric([], rejected)
        yield from (llc, mbm_total, mbm_local, containers, reconciled, rejected_fam)
