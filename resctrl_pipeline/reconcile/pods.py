"""Pod bookkeeping: the pods and containers the reconciler knows, from lifecycle messages.

:class:`PodBook` validates untrusted uids, keeps containers whose pod is not known yet
aside until its PodUp, and records which pods changed (``dirty``: their state is to be
reported) and which containers need their threads placed (``to_sync``). It touches no
file: group and thread work is the caller's.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from resctrl_pipeline.messages import ContainerDown, ContainerUp, PodUp
from resctrl_pipeline.podid import is_valid_uid

__all__ = ["RMID_WAIT", "Container", "Pod", "PodBook"]

log = logging.getLogger(__name__)

RMID_WAIT = ("no_free_rmid", "rmids_in_limbo")
"""The values of :attr:`Pod.failure` that mean "waiting for an RMID"."""

_MAX_REMEMBERED_REJECTS = 1024


@dataclass(slots=True)
class Container:
    """A container of a pod, and what placing its threads found."""

    id: str
    pod_uid: str
    cgroup_path: str
    directory: str | None = None  # cgroup dir once found
    exited: bool = False  # its cgroup existed and is gone: not running, not counted
    reconciled: bool = False
    runtime_group: str | None = None  # a MON group its runtime made, read for the pod
    runtime_checked: bool = False  # looked for one at least once


@dataclass(slots=True)
class Pod:
    """A live pod: its group name, containers and why it has no group (if so)."""

    uid: str
    name: str
    cgroup_parent: str
    containers: dict[str, Container] = field(default_factory=dict)
    has_group: bool = False
    failure: str = ""  # why there is no group; one of RMID_WAIT, permission, error…
    waiting_since: float | None = None
    cgroup_seen: bool = False
    pod_dir: str | None = None
    warned: set[str] = field(default_factory=set)  # warnings already logged for it
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    seq: int = 0  # order in which pods became known (older first)
    mbm: str = ""  # counters: "assigned", "partial", "none", "" (not known)
    mbm_epoch: int = 0  # bumped when we assign counters: the MBM counts restart at 0
    class_groups: set[str] = field(default_factory=set)  # classes where we hold a group

    def group_names(self) -> list[str]:
        """Names of every group we hold for the pod: the root's first, then by class."""
        names = [self.name] if self.has_group else []
        return names + [f"{c}/{self.name}" for c in sorted(self.class_groups)]

    def runtime_groups(self) -> list[str]:
        """Names of the MON groups runtimes made for its running containers (read and
        summed into the pod's row, never written)."""
        return sorted({c.runtime_group for c in self.running() if c.runtime_group})

    def warn(self, logger: logging.Logger, key: str, fmt: str, *args: object) -> None:
        """Warn once per pod and kind of problem; repeats go to debug."""
        level = logging.DEBUG if key in self.warned else logging.WARNING
        self.warned.add(key)
        logger.log(level, fmt, *args)

    def running(self) -> list[Container]:
        """Containers not known to have exited."""
        return [c for c in self.containers.values() if not c.exited]

    def unreconciled(self) -> bool:
        """Whether a running container has threads outside the group (or unknown)."""
        return any(not c.reconciled for c in self.running())


class PodBook:
    """Pods and containers by uid/id, fed by lifecycle messages.

    Args:
        prefix: the validated group name prefix (a pod's group is prefix + uid).
        counters: shared counters (``uids_rejected``).
    """

    def __init__(self, prefix: str, counters: Counter[str]) -> None:
        self._prefix = prefix
        self._counters = counters
        self.pods: dict[str, Pod] = {}
        # Containers whose pod is not known yet wait here, keyed by pod uid.
        self._orphan_containers: dict[str, dict[str, Container]] = {}
        self._container_pod: dict[str, str] = {}
        self._rejected: set[str] = set()
        self.dirty: set[str] = set()  # uids whose reported state may have changed
        self.to_sync: dict[str, set[str]] = {}  # uid -> container ids to place
        self._seq = 0

    def accept(self, uid: str) -> bool:
        """Validate an untrusted uid; count and log (once per uid) a rejection."""
        if is_valid_uid(uid):
            return True
        self._counters["uids_rejected"] += 1
        if uid not in self._rejected:
            if len(self._rejected) >= _MAX_REMEMBERED_REJECTS:
                self._rejected.clear()  # bound memory; at worst a uid is logged again
            self._rejected.add(uid)
            log.warning("rejected pod uid %.80r: not a plain Kubernetes uid", uid)
        return False

    def pod_up(self, msg: PodUp) -> Pod | None:
        """Record a pod (its waiting containers join it).

        Returns:
            The pod if this message made it known, None for a known or rejected one.
        """
        if not self.accept(msg.uid):
            return None
        pod = self.pods.get(msg.uid)
        if pod is not None:
            if msg.cgroup_parent and msg.cgroup_parent != pod.cgroup_parent:
                pod.cgroup_parent, pod.pod_dir = msg.cgroup_parent, None
            pod.namespace, pod.labels = msg.namespace, msg.labels
            return None
        self._seq += 1
        pod = Pod(
            msg.uid,
            self._prefix + msg.uid,
            msg.cgroup_parent,
            namespace=msg.namespace,
            labels=msg.labels,
            seq=self._seq,
        )
        pod.containers = self._orphan_containers.pop(msg.uid, {})
        self.pods[msg.uid] = pod
        self.dirty.add(msg.uid)
        self.to_sync.setdefault(msg.uid, set()).update(pod.containers)
        return pod

    def container_up(self, msg: ContainerUp) -> None:
        """Record a container (a replay of a known one changes nothing)."""
        if not self.accept(msg.pod_uid):
            return
        old_uid = self._container_pod.get(msg.id)
        if old_uid is not None:
            old = self._containers_of(old_uid).get(msg.id)
            if old is not None and old_uid == msg.pod_uid and old.cgroup_path == msg.cgroup_path:
                return  # a replay: the retry pass keeps it in shape
            self.drop_container(msg.id)
        self._containers_of(msg.pod_uid, create=True)[msg.id] = Container(
            msg.id, msg.pod_uid, msg.cgroup_path
        )
        self._container_pod[msg.id] = msg.pod_uid
        self.dirty.add(msg.pod_uid)
        self.to_sync.setdefault(msg.pod_uid, set()).add(msg.id)

    def container_down(self, msg: ContainerDown) -> None:
        """Forget a container."""
        if msg.pod_uid and not self.accept(msg.pod_uid):
            return
        self.drop_container(msg.id)

    def container_ids(self) -> list[str]:
        """Every known container id (of known pods and of pods still unknown)."""
        return list(self._container_pod)

    def containers_without_pod(self) -> int:
        """Containers waiting for their pod's PodUp."""
        return sum(len(d) for d in self._orphan_containers.values())

    def drop_container(self, cid: str) -> None:
        """Forget container ``cid`` if known."""
        uid = self._container_pod.pop(cid, None)
        if uid is None:
            return
        self._containers_of(uid).pop(cid, None)
        if uid in self._orphan_containers and not self._orphan_containers[uid]:
            del self._orphan_containers[uid]
        self.dirty.add(uid)

    def drop_pod(self, uid: str) -> Pod | None:
        """Forget a pod and its containers.

        Returns:
            The forgotten pod (its group is the caller's to remove), or None if unknown.
        """
        for cid in self._orphan_containers.pop(uid, {}):
            self._container_pod.pop(cid, None)
        pod = self.pods.pop(uid, None)
        if pod is None:
            return None
        for cid in pod.containers:
            self._container_pod.pop(cid, None)
        self.dirty.add(uid)
        self.to_sync.pop(uid, None)
        return pod

    def _containers_of(self, uid: str, create: bool = False) -> dict[str, Container]:
        pod = self.pods.get(uid)
        if pod is not None:
            return pod.containers
        if create:
            return self._orphan_containers.setdefault(uid, {})
        return self._orphan_containers.get(uid, {})
