"""The messages that travel between the actors.

One frozen dataclass per kind. Each docstring names the producer, the consumer and
what the message means. The wire form (msgpack envelope) lives in :mod:`codec`.

Edges and their kinds:

* ``lifecycle`` (nri-listener → reconciler): :class:`PodUp`, :class:`PodDown`,
  :class:`ContainerUp`, :class:`ContainerDown`, :class:`LifecycleSnapshot`.
* ``metadata`` (nri-listener → sampler): :class:`PodLabels`, :class:`PodLabelsGone`,
  :class:`MetadataSnapshot`.
* ``groups`` (reconciler → sampler): :class:`GroupState`, :class:`GroupGone`,
  :class:`GroupSnapshot`.
* ``occupancy`` (sampler → writer): :class:`OccupancyBatch`.
* ``stats`` (every actor → supervisor): :class:`ActorStats`; the sampler also sends
  :class:`PodSummary`.

A snapshot replaces the consumer's whole state for its edge; deltas update it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GROUP_KINDS",
    "LIFECYCLE_KINDS",
    "METADATA_KINDS",
    "POD_SUMMARY_COLUMNS",
    "ActorStats",
    "ContainerDown",
    "ContainerUp",
    "GroupGone",
    "GroupSnapshot",
    "GroupState",
    "LifecycleSnapshot",
    "Message",
    "MetadataSnapshot",
    "OccupancyBatch",
    "PodDown",
    "PodLabels",
    "PodLabelsGone",
    "PodSummary",
    "PodUp",
]


# --- lifecycle: nri-listener → reconciler -------------------------------------------


@dataclass(frozen=True, slots=True)
class PodUp:
    """A pod sandbox exists (RunPodSandbox, or listed by Synchronize).

    ``cgroup_parent`` is the sandbox's ``linux.cgroup_parent`` as the runtime gave it
    (e.g. ``/kubepods/besteffort/pod<uid>`` or ``kubepods-besteffort-pod<uid>.slice``);
    empty when unknown. ``uid`` is untrusted text: consumers validate it before use.
    ``labels`` are the pod's labels (the reconciler's counter policy selects by them).
    """

    uid: str
    namespace: str
    name: str
    cgroup_parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PodDown:
    """A pod sandbox is gone (RemovePodSandbox). The reconciler removes its group."""

    uid: str


@dataclass(frozen=True, slots=True)
class ContainerUp:
    """A container's process exists (StartContainer, or running at Synchronize).

    ``cgroup_path`` is the container's ``linux.cgroups_path`` verbatim (systemd form
    ``slice:runtime:id`` or a cgroupfs path); the reconciler resolves it under its
    cgroup root. ``pid`` is the init process in the host PID namespace, 0 if unknown.
    """

    id: str
    pod_uid: str
    cgroup_path: str = ""
    pid: int = 0


@dataclass(frozen=True, slots=True)
class ContainerDown:
    """A container is gone (RemoveContainer). ``pod_uid`` may be empty if unknown."""

    id: str
    pod_uid: str = ""


@dataclass(frozen=True, slots=True)
class LifecycleSnapshot:
    """Every live pod and running container, replacing the reconciler's view.

    Sent after each NRI Synchronize, after a dropped lifecycle message once sending
    works again, and periodically (anti-entropy).
    """

    pods: tuple[PodUp, ...] = ()
    containers: tuple[ContainerUp, ...] = ()


# --- metadata: nri-listener → sampler ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodLabels:
    """Namespace, name and labels of a pod, for the sampler's output rows (the labels
    that ``output.pod_labels`` names become columns)."""

    uid: str
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PodLabelsGone:
    """The pod is gone; the sampler forgets its labels."""

    uid: str


@dataclass(frozen=True, slots=True)
class MetadataSnapshot:
    """Labels of every live pod, replacing the sampler's label map."""

    pods: tuple[PodLabels, ...] = ()


# --- groups: reconciler → sampler ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupState:
    """State of a pod's monitoring group.

    ``group_path`` is the absolute path of the group directory, or None when the group
    could not be created (e.g. no free RMID). ``reconciled_containers`` counts the
    containers whose every thread is in the group. ``mbm_epoch`` changes whenever
    the reconciler assigned MBM counters to the group (ABMC): its MBM counts restarted
    at 0. ``class_paths`` are the pod's further groups, one per RDT class (CTRL_MON
    group) holding some of its threads (``<class>/mon_groups/<prefix><uid>``); the
    pod's values are the sums over ``group_path`` and these.
    """

    pod_uid: str
    group_path: str | None
    total_containers: int = 0
    reconciled_containers: int = 0
    mbm_epoch: int = 0
    class_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupGone:
    """The pod and its group are gone; the sampler stops sampling it."""

    pod_uid: str


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """Every pod the reconciler tracks, replacing the sampler's pod map."""

    states: tuple[GroupState, ...] = ()


# --- occupancy: sampler → writer ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OccupancyBatch:
    """One sampling tick's rows, columnar: column name → list of values.

    Every list has the same length. Column names and order follow
    :func:`resctrl_pipeline.schema.column_names`; columnar so that the writer builds
    Arrow arrays without transposing rows.
    """

    columns: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Number of rows (length of the first column; 0 when empty)."""
        for values in self.columns.values():
            return len(values)
        return 0


# --- stats: every actor → supervisor --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActorStats:
    """Periodic heartbeat with an actor's counters.

    ``counters`` are cumulative since ``started_at`` (epoch seconds); ``gauges`` are
    current values; ``ready`` holds named readiness flags (e.g. ``sampler``,
    ``resctrl``, ``nri_connected``); ``info`` holds short strings such as the reason
    for not being ready.
    """

    actor: str
    pid: int
    started_at: float
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


#: The :class:`OccupancyBatch` columns a :class:`PodSummary` carries (MBM ones only
#: where the hardware has MBM).
POD_SUMMARY_COLUMNS: tuple[str, ...] = (
    "pod_namespace", "pod_name", "pod_uid", "total_containers", "reconciled_containers",
    "llc_occupancy_bytes", "mbm_total_bytes", "mbm_local_bytes",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PodSummary:
    """The latest reading of every sampled pod, for per-pod metrics and ``/pods``.

    Producer: the sampler, after a sampling tick, at most about once a second (and on
    the first tick after a pod went away); consumer: the supervisor, which keeps only
    the latest one and renders it when scraped. ``timestamp`` is the tick's start (ns
    since the epoch); ``columns`` are the tick's :class:`OccupancyBatch` columns named in
    :data:`POD_SUMMARY_COLUMNS`, one entry per pod read on that tick (none: no pod).
    """

    timestamp: int
    columns: dict[str, list[Any]] = field(default_factory=dict)


Message = (
    PodUp
    | PodDown
    | ContainerUp
    | ContainerDown
    | LifecycleSnapshot
    | PodLabels
    | PodLabelsGone
    | MetadataSnapshot
    | GroupState
    | GroupGone
    | GroupSnapshot
    | OccupancyBatch
    | ActorStats
    | PodSummary
)

LIFECYCLE_KINDS = (PodUp, PodDown, ContainerUp, ContainerDown, LifecycleSnapshot)
METADATA_KINDS = (PodLabels, PodLabelsGone, MetadataSnapshot)
GROUP_KINDS = (GroupState, GroupGone, GroupSnapshot)
