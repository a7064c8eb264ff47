"""The reconciler core: one resctrl monitoring group per pod, every thread in it.

Pure and synchronous (see architecture §4.2): :class:`Reconciler` takes lifecycle
messages and the time, does filesystem work only through its two seams
(:class:`~resctrl_pipeline.resctrl.groups.ResctrlGroups` and
:class:`~resctrl_pipeline.cgroups.CgroupView`) and returns group messages. Its direct
API is :meth:`~Reconciler.handle`, :meth:`~Reconciler.on_retry_timer`,
:meth:`~Reconciler.snapshot`, :meth:`~Reconciler.statistics` and
:meth:`~Reconciler.health_line`; the :class:`~resctrl_pipeline.core.Core` hooks put
it on the ``lifecycle`` → ``groups`` edges of the actor shell, with a ``retry`` timer
every ``reconcile.retry_interval`` and a ``health`` timer.

Rules, in the order a pass applies them:

1. Remove: a pod is gone on PodDown, when a snapshot no longer lists it, or when its
   cgroup (seen before) has disappeared; its group is removed. Prefix groups of no
   known pod are orphans, removed once they have been orphans for ``orphan_grace``
   (default: one retry interval, so a group the listener's StartContainer fast path
   just created is not taken while its PodUp is still queued). Nothing is removed
   by inference before the first snapshot, and nothing without the prefix ever.
2. Create: a live pod without a group gets one (mkdir; EEXIST adopts it). When no RMID
   is free the pod waits and is retried, oldest first, on every pass.
3. Threads: every TID of every running container not yet in the group is written,
   one per write, re-reading until stable (at most ``max_passes`` writing rounds).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import overload

from resctrl_pipeline.cgroups import CgroupGone, CgroupView
from resctrl_pipeline.core import Core, Outputs, Stats, Timer
from resctrl_pipeline.errors import ResctrlUnavailable
from resctrl_pipeline.messages import (
    LIFECYCLE_KINDS,
    ContainerDown,
    ContainerUp,
    GroupGone,
    GroupSnapshot,
    GroupState,
    LifecycleSnapshot,
    Message,
    PodDown,
    PodUp,
)
from resctrl_pipeline.podid import is_valid_uid, uid_from_group_name, validate_prefix
from resctrl_pipeline.resctrl.groups import (
    GroupVanished,
    NoFreeRmid,
    PermissionProblem,
    ResctrlGroups,
    ResctrlWriteError,
    RmidsInLimbo,
    TaskRefused,
)

__all__ = ["GroupMessage", "LifecycleMessage", "Reconciler"]

log = logging.getLogger(__name__)

LifecycleMessage = PodUp | PodDown | ContainerUp | ContainerDown | LifecycleSnapshot
GroupMessage = GroupState | GroupGone | GroupSnapshot

_RMID_WAIT = ("no_free_rmid", "rmids_in_limbo")
_MAX_REMEMBERED_REJECTS = 1024


@dataclass(slots=True)
class _Container:
    id: str
    pod_uid: str
    cgroup_path: str
    directory: str | None = None  # cgroup dir once found
    exited: bool = False  # its cgroup existed and is gone: not running, not counted
    reconciled: bool = False


@dataclass(slots=True)
class _Pod:
    uid: str
    name: str
    cgroup_parent: str
    containers: dict[str, _Container] = field(default_factory=dict)
    has_group: bool = False
    failure: str = ""  # why there is no group; one of _RMID_WAIT, permission, error…
    waiting_since: float | None = None
    cgroup_seen: bool = False
    pod_dir: str | None = None
    warned: set[str] = field(default_factory=set)  # warnings already logged for it


class Reconciler(Core):
    """Keeps one monitoring group per live pod and every thread of the pod in it.

    Args:
        groups: classified resctrl operations (the write side).
        cgroups: where containers' threads are.
        prefix: group name prefix; the reconciler owns every group starting with it.
        retry_interval: seconds between :meth:`on_retry_timer` calls (the ``retry``
            timer).
        health_interval: seconds between :meth:`health_line` log lines (the ``health``
            timer).
        orphan_grace: seconds a prefix group of no known pod survives; default
            ``retry_interval``.
        max_passes: writing rounds per container per reconcile before giving up until
            the next pass (threads fork while we write).

    Raises:
        InvalidPrefix: unsafe prefix. ValueError: ``max_passes`` < 1.
    """

    name = "reconciler"

    def __init__(
        self,
        groups: ResctrlGroups,
        cgroups: CgroupView,
        *,
        prefix: str = "pod_",
        retry_interval: float = 10.0,
        health_interval: float = 60.0,
        orphan_grace: float | None = None,
        max_passes: int = 4,
    ) -> None:
        if max_passes < 1:
            raise ValueError(f"max_passes must be at least 1, not {max_passes}")
        self._retry_interval = retry_interval
        self._health_interval = health_interval
        self._groups = groups
        self._cgroups = cgroups
        self._prefix = validate_prefix(prefix)
        self._grace = retry_interval if orphan_grace is None else orphan_grace
        self._max_passes = max_passes
        self._pods: dict[str, _Pod] = {}
        # Containers whose pod is not known yet wait here, keyed by pod uid.
        self._orphan_containers: dict[str, dict[str, _Container]] = {}
        self._container_pod: dict[str, str] = {}
        self._synced = False
        self._orphans: dict[str, float] = {}  # group name -> first seen without a pod
        self._reported: dict[str, GroupState] = {}
        self._dirty: set[str] = set()
        self._to_sync: dict[str, set[str]] = {}
        self._rejected: set[str] = set()
        self._capacity: int | None = None
        self._now = 0.0
        self._counters: Counter[str] = Counter()

    # -- the actor shell's hooks (resctrl_pipeline.core) ---------------------------------

    def timers(self) -> list[Timer]:
        """``retry``: a full pass; ``health``: one log line."""
        return [Timer("retry", self._retry_interval), Timer("health", self._health_interval)]

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        """Lifecycle messages go to :meth:`handle`; anything else is counted, ignored."""
        if not isinstance(msg, LIFECYCLE_KINDS):
            self._counters["unknown_messages"] += 1
            return []
        return [("groups", out) for out in self.handle(msg, now)]

    def on_timer(self, name: str, now: float) -> Outputs:
        """Run the ``retry`` pass or log the ``health`` line."""
        if name == "retry":
            return [("groups", out) for out in self.on_retry_timer(now)]
        if name == "health":
            log.info("%s", self.health_line())
        return []

    # -- inputs ----------------------------------------------------------------------

    def handle(self, msg: LifecycleMessage, now: float) -> list[GroupMessage]:
        """Apply one lifecycle message.

        Returns:
            GroupState/GroupGone for every pod whose reported state changed; after a
            LifecycleSnapshot a single GroupSnapshot instead.
        """
        self._now = now
        if isinstance(msg, LifecycleSnapshot):
            self._apply_snapshot(msg, now)
            self._flush_sync(now)
            self._dirty.clear()
            snap = self.snapshot()
            self._reported = {s.pod_uid: s for s in snap.states}
            return [snap]
        if isinstance(msg, PodUp):
            self._pod_up(msg, now)
        elif isinstance(msg, PodDown):
            if self._accept(msg.uid):
                self._drop_pod(msg.uid, "removed")
        elif isinstance(msg, ContainerUp):
            self._container_up(msg)
        else:
            self._container_down(msg)
        self._flush_sync(now)
        return self._changes()

    def on_retry_timer(self, now: float) -> list[GroupMessage]:
        """One full pass: liveness, orphans, failed creations, every container's threads.

        Returns:
            GroupState/GroupGone for every pod whose reported state changed.
        """
        self._now = now
        self._counters["recheck_passes"] += 1
        for pod in list(self._pods.values()):
            if not self._look_for_pod_cgroup(pod) and self._synced:
                self._counters["pods_gone_cgroup"] += 1
                self._drop_pod(pod.uid, "cgroup gone")
        self._sweep(now)
        waiting = [p for p in self._pods.values() if not p.has_group]
        waiting.sort(key=lambda p: p.waiting_since if p.waiting_since is not None else now)
        for pod in waiting:
            self._ensure_group(pod, now)
        for pod in list(self._pods.values()):
            self._sync_pod(pod, list(pod.containers.values()), now)
        return self._changes()

    # -- outputs ---------------------------------------------------------------------

    @overload
    def snapshot(self) -> GroupSnapshot: ...

    @overload
    def snapshot(self, edge: str) -> GroupSnapshot | None: ...

    def snapshot(self, edge: str | None = None) -> GroupSnapshot | None:
        """The state of every tracked pod, sorted by uid (the ``groups`` edge's state).

        Called by the actor shell with the edge name (anti-entropy, recovery after a
        drop), it returns None until the first ``LifecycleSnapshot``: a snapshot
        replaces the sampler's state, and one sent before this reconciler knows the
        pods (after a restart while the runtime is away) would make the sampler drop
        every pod it is sampling.
        """
        if edge is not None and not self._synced:
            return None
        return GroupSnapshot(tuple(self._state(self._pods[uid]) for uid in sorted(self._pods)))

    def statistics(self) -> Stats:
        """Counters (cumulative) and gauges (current), for ActorStats and /metrics.

        ``rmid_capacity`` is ``info/L3_MON/num_rmids`` (the root group uses one); it is
        absent while unreadable. ``synced`` is 1 once the first lifecycle snapshot
        arrived (before it nothing is removed). No readiness flag: a reconciler
        waiting for its first snapshot still places threads.
        """
        if self._capacity is None:
            self._capacity = self._groups.num_rmids()
        pods = self._pods.values()
        running = [c for p in pods for c in p.containers.values() if not c.exited]
        waits = [self._now - p.waiting_since for p in pods if p.waiting_since is not None]
        gauges: dict[str, float] = {
            "pods": len(self._pods),
            "groups_in_use": sum(p.has_group for p in pods),
            "pods_without_group": sum(not p.has_group for p in pods),
            "pods_waiting_rmid": sum(p.failure in _RMID_WAIT for p in pods),
            "rmid_wait_max_seconds": max(waits, default=0.0),
            "pods_unreconciled": sum(self._unreconciled(p) for p in pods),
            "containers": len(running),
            "containers_reconciled": sum(c.reconciled for c in running),
            "containers_unresolved": sum(c.directory is None for c in running),
            "containers_without_pod": sum(len(d) for d in self._orphan_containers.values()),
            "orphan_groups_pending": len(self._orphans),
            "synced": float(self._synced),
        }
        if self._capacity is not None:
            gauges["rmid_capacity"] = self._capacity
        return Stats(counters={k: float(v) for k, v in self._counters.items()}, gauges=gauges)

    def health_line(self) -> str:
        """One log line summarising groups, RMIDs and reconciliation."""
        stats = self.statistics()
        counters, gauges = stats.counters, stats.gauges
        capacity = gauges.get("rmid_capacity")
        return (
            f"reconciler: pods={gauges['pods']:.0f} groups={gauges['groups_in_use']:.0f}"
            f"/{'?' if capacity is None else f'{capacity:.0f}'} rmids"
            f" waiting_rmid={gauges['pods_waiting_rmid']:.0f}"
            f" (enospc={counters.get('mkdir_enospc', 0):.0f}"
            f" ebusy={counters.get('mkdir_ebusy', 0):.0f})"
            f" pods_unreconciled={gauges['pods_unreconciled']:.0f}"
            f" containers={gauges['containers_reconciled']:.0f}/{gauges['containers']:.0f}"
            f" tasks_written={counters.get('tasks_written', 0):.0f}"
            f" esrch={counters.get('tasks_esrch', 0):.0f}"
            f" einval={counters.get('tasks_einval', 0):.0f}"
            f" rejected_uids={counters.get('uids_rejected', 0):.0f}"
        )

    # -- lifecycle -------------------------------------------------------------------

    def _accept(self, uid: str) -> bool:
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

    def _pod_up(self, msg: PodUp, now: float) -> None:
        if not self._accept(msg.uid):
            return
        pod = self._pods.get(msg.uid)
        if pod is not None:
            if msg.cgroup_parent and msg.cgroup_parent != pod.cgroup_parent:
                pod.cgroup_parent, pod.pod_dir = msg.cgroup_parent, None
            return
        pod = _Pod(msg.uid, self._prefix + msg.uid, msg.cgroup_parent)
        pod.containers = self._orphan_containers.pop(msg.uid, {})
        self._pods[msg.uid] = pod
        self._dirty.add(msg.uid)
        self._look_for_pod_cgroup(pod)
        self._ensure_group(pod, now)
        self._to_sync.setdefault(msg.uid, set()).update(pod.containers)

    def _container_up(self, msg: ContainerUp) -> None:
        if not self._accept(msg.pod_uid):
            return
        old_uid = self._container_pod.get(msg.id)
        if old_uid is not None:
            old = self._containers_of(old_uid).get(msg.id)
            if old is not None and old_uid == msg.pod_uid and old.cgroup_path == msg.cgroup_path:
                return  # a replay: the retry pass keeps it in shape
            self._drop_container(msg.id)
        self._containers_of(msg.pod_uid, create=True)[msg.id] = _Container(
            msg.id, msg.pod_uid, msg.cgroup_path
        )
        self._container_pod[msg.id] = msg.pod_uid
        self._dirty.add(msg.pod_uid)
        self._to_sync.setdefault(msg.pod_uid, set()).add(msg.id)

    def _container_down(self, msg: ContainerDown) -> None:
        if msg.pod_uid and not self._accept(msg.pod_uid):
            return
        self._drop_container(msg.id)

    def _apply_snapshot(self, msg: LifecycleSnapshot, now: float) -> None:
        self._counters["snapshots"] += 1
        pods = {p.uid: p for p in msg.pods if self._accept(p.uid)}
        containers = {c.id: c for c in msg.containers if self._accept(c.pod_uid)}
        # Removals first: they free RMIDs (after limbo) for the creations below.
        for uid in [u for u in self._pods if u not in pods]:
            self._drop_pod(uid, "not in snapshot")
        for cid in [c for c in self._container_pod if c not in containers]:
            self._drop_container(cid)
        for pod_msg in pods.values():
            self._pod_up(pod_msg, now)
        for container_msg in containers.values():
            self._container_up(container_msg)
        if not self._synced:
            log.info("first lifecycle snapshot: %d pods, %d containers", len(pods), len(containers))
        self._synced = True
        self._sweep(now)

    def _containers_of(self, uid: str, create: bool = False) -> dict[str, _Container]:
        pod = self._pods.get(uid)
        if pod is not None:
            return pod.containers
        if create:
            return self._orphan_containers.setdefault(uid, {})
        return self._orphan_containers.get(uid, {})

    def _drop_container(self, cid: str) -> None:
        uid = self._container_pod.pop(cid, None)
        if uid is None:
            return
        self._containers_of(uid).pop(cid, None)
        if uid in self._orphan_containers and not self._orphan_containers[uid]:
            del self._orphan_containers[uid]
        self._dirty.add(uid)

    def _drop_pod(self, uid: str, reason: str) -> None:
        """Forget a pod and its containers, remove its group."""
        for cid in self._orphan_containers.pop(uid, {}):
            self._container_pod.pop(cid, None)
        pod = self._pods.pop(uid, None)
        if pod is None:
            return
        for cid in pod.containers:
            self._container_pod.pop(cid, None)
        self._dirty.add(uid)
        self._to_sync.pop(uid, None)
        if pod.has_group:
            self._remove_group(pod.name, f"pod {uid} {reason}")

    def _remove_group(self, name: str, why: str) -> bool:
        try:
            removed = self._groups.remove(name)
        except ResctrlWriteError as err:
            # It is now an orphan: the sweep retries it on the next pass.
            self._counters["group_remove_errors"] += 1
            log.error("cannot remove group %s (%s): %s", name, why, err)
            return False
        self._counters["groups_removed" if removed else "groups_already_gone"] += 1
        log.info("removed group %s: %s", name, why)
        return True

    # -- groups ----------------------------------------------------------------------

    def _look_for_pod_cgroup(self, pod: _Pod) -> bool:
        """Refresh the pod's cgroup dir; False only if it existed once and is gone."""
        if pod.pod_dir is not None and self._cgroups.exists(pod.pod_dir):
            return True
        pod.pod_dir = self._cgroups.find_pod(pod.cgroup_parent, pod.uid)
        if pod.pod_dir is not None:
            pod.cgroup_seen = True
            return True
        # Never seen: the parent may be in a layout we cannot resolve; keep the pod.
        return not pod.cgroup_seen

    def _ensure_group(self, pod: _Pod, now: float) -> bool:
        """Create or adopt the pod's group; on failure record why. Returns has_group."""
        if pod.has_group:
            return True
        failure, detail = "error", ""
        try:
            created = self._groups.create(pod.name)
        except NoFreeRmid as err:
            self._counters["mkdir_enospc"] += 1
            failure, detail = _RMID_WAIT[0], str(err)
        except RmidsInLimbo as err:
            self._counters["mkdir_ebusy"] += 1
            failure, detail = _RMID_WAIT[1], str(err)
        except PermissionProblem as err:
            self._counters["permission_errors"] += 1
            failure, detail = "permission", str(err)
        except ResctrlUnavailable as err:
            self._counters["mkdir_errors"] += 1
            failure, detail = "unavailable", str(err)
        except ResctrlWriteError as err:
            self._counters["mkdir_errors"] += 1
            failure, detail = "error", str(err)
        else:
            self._counters["groups_created" if created else "groups_adopted"] += 1
            log.info("%s group %s", "created" if created else "adopted", pod.name)
            pod.has_group, pod.failure, pod.waiting_since = True, "", None
            pod.warned.clear()  # a later failure deserves a warning again
            self._orphans.pop(pod.name, None)
            self._dirty.add(pod.uid)
            return True
        if pod.waiting_since is None:
            pod.waiting_since = now
        self._warn(pod, failure, "pod %s has no group (%s), retrying: %s", pod.uid, failure, detail)
        pod.failure = failure
        self._dirty.add(pod.uid)
        return False

    def _sweep(self, now: float) -> None:
        """Remove prefix groups that have had no known pod for ``orphan_grace``."""
        if not self._synced:
            return
        try:
            names = self._groups.list_groups()
        except (ResctrlWriteError, ResctrlUnavailable) as err:
            self._counters["list_errors"] += 1
            log.error("cannot list monitoring groups: %s", err)
            return
        orphans = set()
        for name in names:
            if not name.startswith(self._prefix):
                continue  # not ours, whatever it is
            uid = uid_from_group_name(self._prefix, name)
            if uid is not None and uid in self._pods:
                continue
            orphans.add(name)
            since = self._orphans.setdefault(name, now)
            if now - since >= self._grace and self._remove_group(name, "orphan"):
                self._counters["orphans_removed"] += 1
                orphans.discard(name)
        self._orphans = {n: t for n, t in self._orphans.items() if n in orphans}

    # -- threads ---------------------------------------------------------------------

    def _flush_sync(self, now: float) -> None:
        work, self._to_sync = self._to_sync, {}
        for uid, cids in work.items():
            pod = self._pods.get(uid)
            if pod is not None:
                self._sync_pod(pod, [pod.containers[c] for c in cids if c in pod.containers], now)

    def _locate(self, pod: _Pod, c: _Container) -> str | None:
        """The container's cgroup directory, found once; None while it cannot be found.

        Whether a found directory still exists is learnt when its threads are read
        (CgroupGone); a pod without a group reads none, so it is checked here.
        """
        if c.directory is None:
            c.directory = self._cgroups.find_container(
                c.cgroup_path, c.id, pod.cgroup_parent, pod.pod_dir
            )
            c.exited = False
        elif not pod.has_group:
            c.exited = not self._cgroups.exists(c.directory)
        if c.directory is None:
            c.reconciled = False
        return c.directory

    def _sync_pod(self, pod: _Pod, containers: list[_Container], now: float) -> None:
        """Write every thread of ``containers`` that is not yet in the pod's group."""
        if not containers:
            return
        self._dirty.add(pod.uid)
        # Located even without a group: an exited container leaves total_containers.
        live = [(c, d) for c in containers if (d := self._locate(pod, c)) is not None]
        if not pod.has_group:
            for c, _ in live:
                c.reconciled = False
            return
        gone: set[int] = set()  # ESRCH: exited between listing and writing
        refused: set[int] = set()  # the kernel said no; tried again next pass
        pending, recreated, rounds = live, False, 0
        while pending:
            try:
                in_group = self._groups.tasks(pod.name)
                pending = self._sync_round(pod, pending, in_group, gone, refused, rounds)
            except GroupVanished:
                if recreated or not self._recreate(pod, now):
                    break
                pending, recreated = live, True
                continue
            except ResctrlWriteError as err:
                self._counters["tasks_read_errors"] += 1
                log.error("cannot read tasks of %s: %s", pod.name, err)
                break
            rounds += 1
        if pending:
            # Stopped early: what these containers hold is not known to be complete.
            for c, _ in live:
                c.reconciled = False

    def _sync_round(
        self,
        pod: _Pod,
        pending: list[tuple[_Container, str]],
        in_group: set[int],
        gone: set[int],
        refused: set[int],
        rounds: int,
    ) -> list[tuple[_Container, str]]:
        """Compare each container's threads with ``in_group`` and write what is missing.

        Returns:
            The containers that had threads written (to verify in the next round).

        Raises:
            GroupVanished: the group disappeared during a write.
        """
        written: list[tuple[_Container, str]] = []
        for c, directory in pending:
            try:
                tids = self._cgroups.threads(directory)
            except CgroupGone:
                c.exited, c.reconciled = True, False
                continue
            c.exited = False
            missing = tids - in_group - gone
            c.reconciled = not missing
            todo = missing - refused
            if todo and rounds < self._max_passes:
                self._write(pod, sorted(todo), gone, refused)
                written.append((c, directory))
        return written

    def _recreate(self, pod: _Pod, now: float) -> bool:
        self._counters["groups_recreated"] += 1
        log.warning("group %s vanished, recreating it", pod.name)
        pod.has_group = False
        return self._ensure_group(pod, now)

    def _write(self, pod: _Pod, tids: list[int], gone: set[int], refused: set[int]) -> None:
        """Write each tid, classifying failures into ``gone`` and ``refused``.

        Raises:
            GroupVanished: the group disappeared (the caller recreates it).
        """
        for tid in tids:
            try:
                if self._groups.add_task(pod.name, tid):
                    self._counters["tasks_written"] += 1
                else:
                    self._counters["tasks_esrch"] += 1
                    gone.add(tid)
            except TaskRefused as err:
                self._counters["tasks_einval"] += 1
                refused.add(tid)
                self._warn(pod, "einval", "%s", err)
            except PermissionProblem as err:
                self._counters["permission_errors"] += 1
                refused.add(tid)
                log.error("cannot move tid %d into %s: %s", tid, pod.name, err)
            except ResctrlWriteError as err:
                self._counters["task_write_errors"] += 1
                refused.add(tid)
                self._warn(pod, "write", "%s", err)

    # -- helpers ---------------------------------------------------------------------

    def _warn(self, pod: _Pod, key: str, fmt: str, *args: object) -> None:
        """Warn once per pod and kind of problem; repeats go to debug."""
        level = logging.DEBUG if key in pod.warned else logging.WARNING
        pod.warned.add(key)
        log.log(level, fmt, *args)

    def _unreconciled(self, pod: _Pod) -> bool:
        return any(not c.reconciled for c in pod.containers.values() if not c.exited)

    def _state(self, pod: _Pod) -> GroupState:
        running = [c for c in pod.containers.values() if not c.exited]
        return GroupState(
            pod.uid,
            self._groups.path(pod.name) if pod.has_group else None,
            len(running),
            sum(c.reconciled for c in running),
        )

    def _changes(self) -> list[GroupMessage]:
        out: list[GroupMessage] = []
        dirty, self._dirty = self._dirty, set()
        for uid in sorted(dirty):
            pod = self._pods.get(uid)
            if pod is None:
                if self._reported.pop(uid, None) is not None:
                    out.append(GroupGone(uid))
                continue
            state = self._state(pod)
            if self._reported.get(uid) != state:
                self._reported[uid] = state
                out.append(state)
        return out
