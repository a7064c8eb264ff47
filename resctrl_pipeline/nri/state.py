"""The listener's own map of live pods and containers.

End-of-life events carry little (REMOVE_POD_SANDBOX has no cgroups_path or pid,
REMOVE_CONTAINER has pid 0, Stop/Remove may come for containers never seen), and the
messages the pipeline needs are keyed by pod uid while NRI containers point at their
pod by sandbox id. So the listener remembers what it learnt from Synchronize and
RunPodSandbox/StartContainer, and every method here returns the messages one NRI
input produces. :meth:`ListenerState.snapshot` re-creates the full state at any time,
for the shell's re-send after drops and its periodic anti-entropy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from resctrl_pipeline.messages import (
    ContainerDown,
    ContainerUp,
    Message,
    PodDown,
    PodLabelsGone,
    PodUp,
)
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.translate import (
    container_is_live,
    container_up,
    pod_labels,
    pod_up,
    snapshots,
)

__all__ = ["ListenerState"]


class ListenerState:
    """Pods by uid, containers by id, and sandbox id → pod uid.

    Attributes:
        counters: ``pods_without_uid`` (sandboxes ignored for lack of a uid),
            ``containers_without_pod`` (containers whose pod could not be found).
    """

    def __init__(self) -> None:
        self.pods: dict[str, PodUp] = {}
        self.containers: dict[str, ContainerUp] = {}
        self._uid_by_sandbox: dict[str, str] = {}
        self.counters: Counter[str] = Counter()

    def snapshot(self) -> list[Message]:
        """A LifecycleSnapshot and a MetadataSnapshot of the current state."""
        return list(snapshots(self.pods.values(), self.containers.values()))

    def synchronize(
        self, pods: Sequence[nri_pb2.PodSandbox], containers: Sequence[nri_pb2.Container]
    ) -> list[Message]:
        """Replace the whole state with a Synchronize listing; return both snapshots.

        Containers that are not live (see :func:`container_is_live`) or whose sandbox
        is not listed are left out; cgroup paths and pids missing from the listing
        are kept from the old state.
        """
        old = self.containers
        self.pods, self.containers, self._uid_by_sandbox = {}, {}, {}
        for pod in pods:
            self._remember_pod(pod)
        for container in containers:
            if not container_is_live(container):
                continue
            uid = self._pod_uid(None, container)
            if not uid:
                self.counters["containers_without_pod"] += 1
                continue
            self.containers[container.id] = container_up(container, uid, old.get(container.id))
        return self.snapshot()

    def pod_started(self, pod: nri_pb2.PodSandbox) -> list[Message]:
        """RunPodSandbox: the pod and its labels exist before any container starts."""
        up = self._remember_pod(pod)
        return [] if up is None else [up, pod_labels(up)]

    def pod_removed(self, pod: nri_pb2.PodSandbox) -> list[Message]:
        """RemovePodSandbox: the pod, its labels and any container left in it are gone."""
        uid = pod.uid or self._uid_by_sandbox.get(pod.id, "")
        self._uid_by_sandbox.pop(pod.id, None)
        if not uid:
            self.counters["pods_without_uid"] += 1
            return []
        out: list[Message] = []
        for cid in sorted(c.id for c in self.containers.values() if c.pod_uid == uid):
            del self.containers[cid]
            out.append(ContainerDown(id=cid, pod_uid=uid))
        self.pods.pop(uid, None)
        out += [PodDown(uid=uid), PodLabelsGone(uid=uid)]
        return out

    def container_started(
        self, pod: nri_pb2.PodSandbox, container: nri_pb2.Container
    ) -> list[Message]:
        """StartContainer: the container's init process exists (pid set).

        A pod not seen before (e.g. its RunPodSandbox went to an earlier connection)
        is announced first from the event's own pod data.
        """
        out: list[Message] = []
        if pod.uid and pod.uid not in self.pods:
            out += self.pod_started(pod)
        uid = self._pod_uid(pod, container)
        if not uid:
            self.counters["containers_without_pod"] += 1
            return out
        up = container_up(container, uid, self.containers.get(container.id))
        self.containers[container.id] = up
        out.append(up)
        return out

    def container_removed(
        self, pod: nri_pb2.PodSandbox, container: nri_pb2.Container
    ) -> list[Message]:
        """RemoveContainer: always reported, even for a container never seen.

        Reporting unknown ids costs the consumer nothing (removal is idempotent) and
        covers containers it learnt about from an earlier snapshot.
        """
        known = self.containers.pop(container.id, None)
        uid = known.pod_uid if known is not None else self._pod_uid(pod, container)
        return [ContainerDown(id=container.id, pod_uid=uid)]

    def _remember_pod(self, pod: nri_pb2.PodSandbox) -> PodUp | None:
        if not pod.uid:
            self.counters["pods_without_uid"] += 1
            return None
        up = pod_up(pod)
        self.pods[up.uid] = up
        if pod.id:
            self._uid_by_sandbox[pod.id] = up.uid
        return up

    def _pod_uid(self, pod: nri_pb2.PodSandbox | None, container: nri_pb2.Container) -> str:
        if pod is not None and pod.uid:
            return pod.uid
        return self._uid_by_sandbox.get(container.pod_sandbox_id, "")
