"""Pure translation of NRI objects into the pipeline's lifecycle and metadata messages.

Nothing here keeps state or does I/O; :mod:`.state` decides *when* to translate and
fills in what end-of-life events leave out. All text is copied verbatim: uids, names
and cgroup paths are untrusted and validated by their consumers, never turned into
paths here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from resctrl_pipeline.messages import (
    ContainerUp,
    LifecycleSnapshot,
    MetadataSnapshot,
    PodLabels,
    PodUp,
)
from resctrl_pipeline.nri import nri_pb2

__all__ = [
    "container_is_live",
    "container_up",
    "pod_labels",
    "pod_up",
    "snapshots",
]

_PROCESS_STATES: Final = frozenset(
    {nri_pb2.CONTAINER_CREATED, nri_pb2.CONTAINER_PAUSED, nri_pb2.CONTAINER_RUNNING}
)


def pod_up(pod: nri_pb2.PodSandbox) -> PodUp:
    """The :class:`PodUp` for a sandbox; ``cgroup_parent`` is the CRI value verbatim."""
    return PodUp(
        uid=pod.uid,
        namespace=pod.namespace,
        name=pod.name,
        cgroup_parent=pod.linux.cgroup_parent,
        labels=dict(pod.labels),
    )


def pod_labels(pod: PodUp) -> PodLabels:
    """The metadata message for a pod already translated to :class:`PodUp`."""
    return PodLabels(uid=pod.uid, namespace=pod.namespace, name=pod.name,
                     labels=dict(pod.labels))  # fmt: skip


def container_is_live(container: nri_pb2.Container) -> bool:
    """Whether a container listed by Synchronize has (or may have) a process.

    RUNNING counts even with pid 0 (newer runtimes may not fill the pid; the
    reconciler then reads the cgroup). CREATED and PAUSED count only with a pid: a
    created container without a task has no process yet, and its StartContainer will
    follow. STOPPED and UNKNOWN never count.
    """
    if container.state == nri_pb2.CONTAINER_RUNNING:
        return True
    return container.state in _PROCESS_STATES and container.pid > 0


def container_up(
    container: nri_pb2.Container, pod_uid: str, known: ContainerUp | None = None
) -> ContainerUp:
    """The :class:`ContainerUp` for ``container`` in the pod ``pod_uid``.

    ``cgroup_path`` is ``linux.cgroups_path`` verbatim and ``pid`` the init pid; either
    falls back to ``known`` (what was seen earlier for this id) when the event lacks it.
    """
    cgroup_path = container.linux.cgroups_path
    pid = container.pid
    if known is not None:
        cgroup_path = cgroup_path or known.cgroup_path
        pid = pid or known.pid
    return ContainerUp(id=container.id, pod_uid=pod_uid, cgroup_path=cgroup_path, pid=pid)


def snapshots(
    pods: Iterable[PodUp], containers: Iterable[ContainerUp]
) -> tuple[LifecycleSnapshot, MetadataSnapshot]:
    """Both full-state messages for the given pods and containers (sorted, so equal
    states give equal messages)."""
    pod_list = sorted(pods, key=lambda p: p.uid)
    return (
        LifecycleSnapshot(
            pods=tuple(pod_list),
            containers=tuple(sorted(containers, key=lambda c: c.id)),
        ),
        MetadataSnapshot(pods=tuple(pod_labels(p) for p in pod_list)),
    )
