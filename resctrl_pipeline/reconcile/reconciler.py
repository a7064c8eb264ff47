"""The reconciler core: lifecycle messages in, group messages out (see the package doc).

:class:`Reconciler` wires the pod book (:mod:`.pods`), the group operations
(:mod:`.pod_groups`) and thread placement (:mod:`.placement`) into the passes the
actor shell drives, and reports what changed.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import overload

from resctrl_pipeline.cgroups import CgroupView
from resctrl_pipeline.core import Core, Outputs, Stats, Timer
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
from resctrl_pipeline.podid import validate_prefix
from resctrl_pipeline.reconcile.mbm_counters import CounterAssigner, CounterPolicy
from resctrl_pipeline.reconcile.placement import ThreadPlacer
from resctrl_pipeline.reconcile.pod_groups import PodGroups
from resctrl_pipeline.reconcile.pods import RMID_WAIT, Container, Pod, PodBook
from resctrl_pipeline.resctrl.errnos import ResctrlWriteError
from resctrl_pipeline.resctrl.groups import ResctrlGroups

__all__ = ["STEP_CONTAINERS", "GroupMessage", "LifecycleMessage", "Reconciler"]

log = logging.getLogger(__name__)

LifecycleMessage = PodUp | PodDown | ContainerUp | ContainerDown | LifecycleSnapshot
GroupMessage = GroupState | GroupGone | GroupSnapshot

STEP_CONTAINERS = 256
"""Containers one step of the actor's work checks (a tasks read and a cgroup read
each, more when threads are written): long work is cut into such steps so that the
shell's loop, and with it the heartbeat, keeps turning between them."""


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
        snapshot_period: seconds between the listener's lifecycle snapshots (default
            ``retry_interval``, as the actors are configured).
        orphan_grace: seconds a prefix group of no known pod survives; at least, and by
            default, twice the longer of ``retry_interval`` and ``snapshot_period``: a
            group that the StartContainer fast path created whose PodUp was dropped
            must outlive the pod's next snapshot, wherever the passes fall.
        max_passes: writing rounds per container per reconcile before giving up until
            the next pass (threads fork while we write).
        mbm_policy: who gets MBM counters on an ``mbm_event`` (ABMC) node, applied
            on every retry pass and after every snapshot.
        runtime_groups: ``resctrl.runtime_groups``: ``auto``/``attribute`` leave threads
            in the MON group their runtime made for their container and read that
            group for the pod; ``move`` moves them into the pod's group.
        step_containers: containers per step when driven by the actor shell (see
            :data:`STEP_CONTAINERS`); the direct API runs whole passes.

    Raises:
        InvalidPrefix: unsafe prefix. ValueError: ``max_passes`` or
        ``step_containers`` < 1, ``orphan_grace`` shorter than its floor.
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
        snapshot_period: float | None = None,
        orphan_grace: float | None = None,
        max_passes: int = 4,
        mbm_policy: CounterPolicy | None = None,
        runtime_groups: str = "auto",
        step_containers: int = STEP_CONTAINERS,
    ) -> None:
        if max_passes < 1:
            raise ValueError(f"max_passes must be at least 1, not {max_passes}")
        if step_containers < 1:
            raise ValueError(f"step_containers must be at least 1, not {step_containers}")
        floor = 2 * max(retry_interval, retry_interval if snapshot_period is None
                        else snapshot_period)  # fmt: skip
        if orphan_grace is not None and orphan_grace < floor:
            raise ValueError(f"orphan_grace {orphan_grace:g} s is shorter than twice the "
                             f"retry interval and the snapshot period ({floor:g} s)")  # fmt: skip
        self._retry_interval = retry_interval
        self._health_interval = health_interval
        self._groups = groups
        prefix = validate_prefix(prefix)
        grace = floor if orphan_grace is None else orphan_grace
        self._counters: Counter[str] = Counter()
        self._book = PodBook(prefix, self._counters)
        self._pod_groups = PodGroups(groups, prefix, grace, self._counters, self._book.dirty)
        self._placer = ThreadPlacer(
            groups, cgroups, self._pod_groups, self._counters, max_passes, runtime_groups
        )
        self._assigner = CounterAssigner(groups, mbm_policy or CounterPolicy(), self._counters)
        self._synced = False
        self._classes: list[str] = []
        self._class_of: dict[int, str] = {}  # thread -> class, read at each pass
        self._reported: dict[str, GroupState] = {}
        self._capacity: int | None = None
        self._now = 0.0
        self._step = step_containers
        self._pass: deque[str] = deque()  # pods the retry pass has still to check

    # -- the actor shell's hooks (resctrl_pipeline.core) ---------------------------------

    def timers(self) -> list[Timer]:
        """``retry``: a full pass; ``health``: one log line."""
        return [Timer("retry", self._retry_interval), Timer("health", self._health_interval)]

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        """Lifecycle messages go to :meth:`handle`; anything else is counted, ignored."""
        if not isinstance(msg, LIFECYCLE_KINDS):
            self._counters["unknown_messages"] += 1
            return []
        return [("groups", out) for out in self._handle(msg, now, self._step)]

    def on_timer(self, name: str, now: float) -> Outputs:
        """Start the ``retry`` pass (its first step) or log the ``health`` line."""
        if name == "retry":
            if self._pass:
                # Still going: starting over would never reach the pods at its end.
                self._counters["recheck_passes_overlapped"] += 1
            else:
                self._begin_pass(now)
            return self.on_continue(now)
        if name == "health":
            log.info("%s", self.health_line())
        return []

    def more_work(self) -> bool:
        """True while a retry pass, or threads of a big snapshot, wait for steps."""
        return bool(self._pass or self._book.to_sync)

    def on_continue(self, now: float) -> Outputs:
        """One step: at most ``step_containers`` containers checked."""
        self._now = now
        budget = self._step - self._flush_sync(now, self._step)
        pods = self._book.pods
        in_pass = bool(self._pass)
        while self._pass and budget > 0:
            pod = pods.get(self._pass.popleft())
            if pod is not None:  # else removed since the pass started
                self._check_pod(pod, now)
                budget -= max(1, len(pod.containers))
        if in_pass and not self._pass:
            self._end_pass()
        return [("groups", out) for out in self._changes()]

    # -- inputs ----------------------------------------------------------------------

    def handle(self, msg: LifecycleMessage, now: float) -> list[GroupMessage]:
        """Apply one lifecycle message, with every thread it concerns placed.

        Returns:
            GroupState/GroupGone for every pod whose reported state changed; after a
            LifecycleSnapshot a single GroupSnapshot instead.
        """
        return self._handle(msg, now, None)

    def _handle(self, msg: LifecycleMessage, now: float, limit: int | None) -> list[GroupMessage]:
        """:meth:`handle`, placing threads of at most ``limit`` containers (the rest
        is left to :meth:`on_continue`)."""
        self._now = now
        book = self._book
        if isinstance(msg, LifecycleSnapshot | ContainerUp | PodUp):
            self._read_classes()
        if isinstance(msg, LifecycleSnapshot):
            self._apply_snapshot(msg, now)
            self._flush_sync(now, limit)
            self._assigner.run(book.pods.values())
            book.dirty.clear()
            snap = self.snapshot()
            self._reported = {s.pod_uid: s for s in snap.states}
            return [snap]
        if isinstance(msg, PodUp):
            self._pod_up(msg, now)
        elif isinstance(msg, PodDown):
            if book.accept(msg.uid):
                self._drop_pod(msg.uid, "removed")
        elif isinstance(msg, ContainerUp):
            book.container_up(msg)
        else:
            book.container_down(msg)
        self._flush_sync(now, limit)
        return self._changes()

    def on_retry_timer(self, now: float) -> list[GroupMessage]:
        """One full pass at once: liveness, orphans, failed creations, every
        container's threads (the actor shell runs the same pass in steps).

        Returns:
            GroupState/GroupGone for every pod whose reported state changed.
        """
        self._begin_pass(now)
        pods = self._book.pods
        while self._pass:
            pod = pods.get(self._pass.popleft())
            if pod is not None:
                self._check_pod(pod, now)
        self._end_pass()
        return self._changes()

    def _begin_pass(self, now: float) -> None:
        """A pass's first part (one stat per pod, one listing, mkdirs of waiting
        pods); the pods whose threads it checks are queued in ``_pass``."""
        self._now = now
        self._counters["recheck_passes"] += 1
        self._read_classes()
        pods = self._book.pods
        for pod in list(pods.values()):
            if not self._placer.look_for_pod_cgroup(pod) and self._synced:
                self._counters["pods_gone_cgroup"] += 1
                self._drop_pod(pod.uid, "cgroup gone")
        self._sweep(now)
        waiting = [p for p in pods.values() if not p.has_group]
        waiting.sort(key=lambda p: p.waiting_since if p.waiting_since is not None else now)
        for pod in waiting:
            self._pod_groups.ensure(pod, now)
        self._pass = deque(pods)

    def _check_pod(self, pod: Pod, now: float) -> None:
        """The pass's work for one pod: every container's threads, and the removal of
        its group in a class none of its threads is in any more."""
        self._book.dirty.add(pod.uid)
        seen = self._placer.sync(pod, list(pod.containers.values()), now, self._class_of)
        if seen is None:
            return  # incomplete: keep every group
        for ctrl in pod.class_groups - seen:
            self._pod_groups.remove_class(pod, ctrl, f"pod {pod.uid} left class {ctrl}")

    def _end_pass(self) -> None:
        """A pass's last part, once every pod's threads were checked: MBM counters."""
        self._book.dirty.update(self._assigner.run(self._book.pods.values()))

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
        pods = self._book.pods
        return GroupSnapshot(tuple(self._state(pods[uid]) for uid in sorted(pods)))

    def statistics(self) -> Stats:
        """Counters (cumulative) and gauges (current), for ActorStats and /metrics.

        ``rmid_capacity`` is ``info/L3_MON/num_rmids`` (the root group uses one); it is
        absent while unreadable. ``synced`` is 1 once the first lifecycle snapshot
        arrived (before it nothing is removed); a reconciler waiting for its first
        snapshot still places threads. Readiness flag ``resctrl_access``: false while a
        pod has no group because resctrl refused the agent (EACCES/EPERM: a node-level
        problem, e.g. a read-only mount or missing privileges); its info says so.
        """
        if self._capacity is None:
            self._capacity = self._groups.num_rmids()
        pods = self._book.pods.values()
        running = [c for p in pods for c in p.running()]
        waits = [self._now - p.waiting_since for p in pods if p.waiting_since is not None]
        gauges: dict[str, float] = {
            "pods": len(pods),
            "groups_in_use": sum(p.has_group for p in pods),
            "pods_without_group": sum(not p.has_group for p in pods),
            "pods_waiting_rmid": sum(p.failure in RMID_WAIT for p in pods),
            "rmid_wait_max_seconds": max(waits, default=0.0),
            "pods_unreconciled": sum(p.unreconciled() for p in pods),
            "containers": len(running),
            "containers_reconciled": sum(c.reconciled for c in running),
            "containers_unresolved": sum(c.directory is None for c in running),
            "containers_without_pod": self._book.containers_without_pod(),
            "orphan_groups_pending": len(self._pod_groups.orphans),
            "classes": len(self._classes),
            "pods_in_classes": sum(bool(p.class_groups) for p in pods),
            "class_groups": sum(len(p.class_groups) for p in pods),
            "synced": float(self._synced),
        }
        if self._capacity is not None:
            gauges["rmid_capacity"] = self._capacity
        gauges.update(self._assigner.gauges(pods))
        denied = sum(p.failure == "permission" for p in pods)
        gauges["pods_permission_denied"] = denied
        info = {}
        if denied:
            info["resctrl_access"] = (
                f"resctrl refused to create the monitoring group of {denied} pod(s): "
                "permission denied (needs root and a writable resctrl mount); retrying"
            )
        return Stats(
            counters={k: float(v) for k, v in self._counters.items()},
            gauges=gauges,
            ready={"resctrl_access": not denied},
            info=info,
        )

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

    # -- passes ----------------------------------------------------------------------

    def _pod_up(self, msg: PodUp, now: float) -> None:
        pod = self._book.pod_up(msg)
        if pod is not None:
            self._placer.look_for_pod_cgroup(pod)
            self._pod_groups.ensure(pod, now)

    def _apply_snapshot(self, msg: LifecycleSnapshot, now: float) -> None:
        self._counters["snapshots"] += 1
        book = self._book
        pods = {p.uid: p for p in msg.pods if book.accept(p.uid)}
        containers = {c.id: c for c in msg.containers if book.accept(c.pod_uid)}
        # Removals first: they free RMIDs (after limbo) for the creations below.
        for uid in [u for u in book.pods if u not in pods]:
            self._drop_pod(uid, "not in snapshot")
        for cid in [c for c in book.container_ids() if c not in containers]:
            book.drop_container(cid)
        for pod_msg in pods.values():
            self._pod_up(pod_msg, now)
        for container_msg in containers.values():
            book.container_up(container_msg)
        if not self._synced:
            log.info("first lifecycle snapshot: %d pods, %d containers", len(pods), len(containers))
        self._synced = True
        self._sweep(now)

    def _drop_pod(self, uid: str, reason: str) -> None:
        """Forget a pod and its containers, remove its groups."""
        pod = self._book.drop_pod(uid)
        if pod is not None:
            for name in pod.group_names():
                self._pod_groups.remove(name, f"pod {uid} {reason}")

    def _sweep(self, now: float) -> None:
        """Remove orphan prefix groups; nothing is inferred stale before the first snapshot."""
        if self._synced:
            self._pod_groups.sweep(now, self._book.pods, self._classes)

    def _read_classes(self) -> None:
        """Which class (CTRL_MON group) holds which thread, from the classes' ``tasks``.

        Read once per pass and per lifecycle message that places threads; a thread
        that changes class in between is refused (EINVAL) and followed next pass.
        """
        self._classes = self._groups.classes()
        class_of: dict[int, str] = {}
        for ctrl in self._classes:
            try:
                class_of.update(dict.fromkeys(self._groups.class_threads(ctrl), ctrl))
            except ResctrlWriteError as err:
                self._counters["class_read_errors"] += 1
                log.debug("cannot read the threads of class %s: %s", ctrl, err)
        self._class_of = class_of

    def _flush_sync(self, now: float, limit: int | None = None) -> int:
        """Place the threads of containers that arrived; of at most about ``limit``
        of them (whole pods), the rest stays queued. Returns how many were checked."""
        to_sync = self._book.to_sync
        pods = self._book.pods
        done = 0
        while to_sync and (limit is None or done < limit):
            uid = next(iter(to_sync))
            cids = to_sync.pop(uid)
            pod = pods.get(uid)
            if pod is not None:
                self._sync_pod(pod, [pod.containers[c] for c in cids if c in pod.containers], now)
            done += max(1, len(cids))
        return done

    def _sync_pod(self, pod: Pod, containers: list[Container], now: float) -> set[str] | None:
        """Place the containers' threads; the classes holding them (None: unknown)."""
        if not containers:
            return set()
        self._book.dirty.add(pod.uid)
        return self._placer.sync(pod, containers, now, self._class_of)

    def _state(self, pod: Pod) -> GroupState:
        running = pod.running()
        paths = [self._groups.path(name) for name in (*pod.group_names(), *pod.runtime_groups())]
        return GroupState(
            pod.uid,
            paths[0] if pod.has_group else None,
            len(running),
            sum(c.reconciled for c in running),
            mbm_epoch=pod.mbm_epoch,
            class_paths=tuple(paths[1:]) if pod.has_group else (),
        )

    def _changes(self) -> list[GroupMessage]:
        out: list[GroupMessage] = []
        dirty = sorted(self._book.dirty)
        self._book.dirty.clear()
        for uid in dirty:
            pod = self._book.pods.get(uid)
            if pod is None:
                if self._reported.pop(uid, None) is not None:
                    out.append(GroupGone(uid))
                continue
            state = self._state(pod)
            if self._reported.get(uid) != state:
                self._reported[uid] = state
                out.append(state)
        return out
