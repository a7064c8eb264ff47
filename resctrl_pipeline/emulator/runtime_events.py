"""What containerd sends to NRI plugins for each pod/container operation (pure).

The emulated runtime keeps its node as :class:`EmulatedPod` and
:class:`EmulatedContainer` records; the functions here turn an operation into the
ordered NRI events a real containerd emits, with the object contents it was seen to
send (``nri-protocol.md``, "Verified on the wire"): container state and pid per event
(CREATED + pid at START, STOPPED + pid 0 at REMOVE), minimal pods at end of life, and
the teardown order StopContainer → STOP_POD_SANDBOX → REMOVE_CONTAINER →
REMOVE_POD_SANDBOX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.events import Event

__all__ = [
    "EmulatedContainer",
    "EmulatedPod",
    "RuntimeEvent",
    "cgroups_path",
    "container_removed",
    "container_started",
    "container_updated",
    "pod_removed",
    "pod_started",
    "sync_listing",
]

RuntimeEvent = tuple[Event, nri_pb2.PodSandbox, nri_pb2.Container | None]
"""One event as delivered: the event, its pod, and its container (None for pod events)."""

_UNKNOWN, _CREATED, _RUNNING, _STOPPED = (
    nri_pb2.CONTAINER_UNKNOWN,
    nri_pb2.CONTAINER_CREATED,
    nri_pb2.CONTAINER_RUNNING,
    nri_pb2.CONTAINER_STOPPED,
)


def cgroups_path(cgroup_parent: str, object_id: str) -> str:
    """containerd's formula: systemd ``<slice>:cri-containerd:<id>`` or ``<parent>/<id>``."""
    base = cgroup_parent.rstrip("/").rsplit("/", 1)[-1]
    if base.endswith(".slice"):
        return f"{base}:cri-containerd:{object_id}"
    return f"{cgroup_parent.rstrip('/')}/{object_id}" if cgroup_parent else object_id


@dataclass(slots=True)
class EmulatedPod:
    """A pod sandbox of the emulated node."""

    uid: str
    namespace: str
    name: str
    cgroup_parent: str
    sandbox_id: str
    pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def message(self, *, minimal: bool = False, pid: int | None = None) -> nri_pb2.PodSandbox:
        """The pod as NRI carries it; ``minimal`` as in end-of-life events."""
        linux = nri_pb2.LinuxPodSandbox(cgroup_parent=self.cgroup_parent)
        pod = nri_pb2.PodSandbox(
            id=self.sandbox_id,
            name=self.name,
            uid=self.uid,
            namespace=self.namespace,
            labels=self.labels,
            linux=linux,
        )
        if not minimal:
            pod.annotations.update(self.annotations)
            linux.cgroups_path = cgroups_path(self.cgroup_parent, self.sandbox_id)
            pod.pid = self.pid if pid is None else pid
        return pod


@dataclass(slots=True)
class EmulatedContainer:
    """A container of the emulated node; ``pid`` is its (real) init process."""

    id: str
    pod_uid: str
    name: str
    cgroups_path: str
    pid: int

    def message(self, pod: EmulatedPod, state: int, pid: int) -> nri_pb2.Container:
        """The container as NRI carries it, in ``state`` with ``pid``."""
        return nri_pb2.Container(
            id=self.id,
            pod_sandbox_id=pod.sandbox_id,
            name=self.name,
            state=state,  # type: ignore[arg-type]  # plain ints are valid enum values
            linux=nri_pb2.LinuxContainer(cgroups_path=self.cgroups_path),
            pid=pid,
        )


def pod_started(pod: EmulatedPod) -> list[RuntimeEvent]:
    """CRI RunPodSandbox."""
    return [(Event.RUN_POD_SANDBOX, pod.message(), None)]


def container_started(pod: EmulatedPod, ctr: EmulatedContainer) -> list[RuntimeEvent]:
    """CRI CreateContainer + StartContainer: no pid until the task exists at START."""
    p = pod.message()
    return [
        (Event.CREATE_CONTAINER, p, ctr.message(pod, _UNKNOWN, 0)),
        (Event.POST_CREATE_CONTAINER, p, ctr.message(pod, _CREATED, 0)),
        (Event.START_CONTAINER, p, ctr.message(pod, _CREATED, ctr.pid)),
        (Event.POST_START_CONTAINER, p, ctr.message(pod, _RUNNING, ctr.pid)),
    ]


def container_updated(pod: EmulatedPod, ctr: EmulatedContainer) -> list[RuntimeEvent]:
    """CRI UpdateContainerResources."""
    running = ctr.message(pod, _RUNNING, ctr.pid)
    return [
        (Event.UPDATE_CONTAINER, pod.message(), running),
        (Event.POST_UPDATE_CONTAINER, pod.message(), running),
    ]


def container_removed(pod: EmulatedPod, ctr: EmulatedContainer) -> list[RuntimeEvent]:
    """CRI StopContainer + RemoveContainer (StopContainer still shows RUNNING + pid)."""
    return [
        (Event.STOP_CONTAINER, pod.message(), ctr.message(pod, _RUNNING, ctr.pid)),
        (Event.REMOVE_CONTAINER, pod.message(), ctr.message(pod, _STOPPED, 0)),
    ]


def pod_removed(pod: EmulatedPod, ctrs: Sequence[EmulatedContainer]) -> list[RuntimeEvent]:
    """CRI StopPodSandbox + RemovePodSandbox with the containers still in the pod."""
    out: list[RuntimeEvent] = [
        (Event.STOP_CONTAINER, pod.message(), c.message(pod, _RUNNING, c.pid)) for c in ctrs
    ]
    out.append((Event.STOP_POD_SANDBOX, pod.message(pid=0), None))
    minimal = pod.message(minimal=True)
    out += [(Event.REMOVE_CONTAINER, minimal, c.message(pod, _STOPPED, 0)) for c in ctrs]
    out.append((Event.REMOVE_POD_SANDBOX, minimal, None))
    return out


def sync_listing(
    pods: Sequence[EmulatedPod], ctrs: Sequence[EmulatedContainer]
) -> tuple[list[nri_pb2.PodSandbox], list[nri_pb2.Container]]:
    """What Synchronize lists: every pod, every container RUNNING with its pid."""
    by_uid = {p.uid: p for p in pods}
    return (
        [p.message() for p in pods],
        [c.message(by_uid[c.pod_uid], _RUNNING, c.pid) for c in ctrs],
    )
