"""Thread placement: every thread of a pod's running containers into the pod's group.

:class:`ThreadPlacer` finds the containers' cgroups, compares their thread lists with
the group's ``tasks`` and writes what is missing, one id per write, re-reading until
stable (at most ``max_passes`` writing rounds: threads fork while we write). Per-thread
failures are classified, never fatal: ESRCH (gone), EINVAL (refused; tried again on the
next pass), EACCES/EPERM; a group that vanished is recreated once per call.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping

from resctrl_pipeline.cgroups import CgroupGone, CgroupUnreadable, CgroupView
from resctrl_pipeline.reconcile.pod_groups import PodGroups
from resctrl_pipeline.reconcile.pods import Container, Pod
from resctrl_pipeline.resctrl.errnos import (
    GroupVanished,
    PermissionProblem,
    ResctrlWriteError,
    TaskRefused,
)
from resctrl_pipeline.resctrl.groups import ResctrlGroups

__all__ = ["ThreadPlacer"]

log = logging.getLogger(__name__)

# Container ids as runtimes name their MON groups (64 hex digits in practice).
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ThreadPlacer:
    """Places pods' threads into their groups.

    Args:
        groups: classified resctrl operations. cgroups: where containers' threads are.
        pod_groups: recreates a group that vanished. counters: shared counters.
        max_passes: writing rounds per container per call.
        runtime_groups: ``move``: threads a runtime put into its own MON group
            (``[<class>/]mon_groups/<container-id>``, runc/crun ``enableMonitoring``)
            are moved into the pod's group like any other; ``attribute``/``auto``: they
            stay there and the group is read for the pod (``Container.runtime_group``).
    """

    def __init__(
        self,
        groups: ResctrlGroups,
        cgroups: CgroupView,
        pod_groups: PodGroups,
        counters: Counter[str],
        max_passes: int,
        runtime_groups: str = "move",
    ) -> None:
        self._groups = groups
        self._cgroups = cgroups
        self._pod_groups = pod_groups
        self._counters = counters
        self._max_passes = max_passes
        self._attribute = runtime_groups != "move"

    def look_for_pod_cgroup(self, pod: Pod) -> bool:
        """Refresh the pod's cgroup dir; False only if it existed once and is gone."""
        if pod.pod_dir is not None and self._cgroups.exists(pod.pod_dir):
            return True
        pod.pod_dir = self._cgroups.find_pod(pod.cgroup_parent, pod.uid)
        if pod.pod_dir is not None:
            pod.cgroup_seen = True
            return True
        # Never seen: the parent may be in a layout we cannot resolve; keep the pod.
        return not pod.cgroup_seen

    def sync(
        self,
        pod: Pod,
        containers: list[Container],
        now: float,
        class_of: Mapping[int, str] | None = None,
    ) -> set[str] | None:
        """Write every thread of ``containers`` not yet in the pod's group of its class.

        Args:
            class_of: thread → CTRL_MON group (class) holding it; absent = the root.

        Returns:
            The classes (``""`` = the root) holding threads of these containers, or
            None when the work stopped early (what they hold is not known).
        """
        classes = class_of if class_of is not None else {}
        # Located even without a group: an exited container leaves total_containers.
        live = [(c, d) for c in containers if (d := self._locate(pod, c)) is not None]
        if not pod.has_group:
            for c, _ in live:
                c.reconciled = False
            return None
        gone: set[int] = set()  # ESRCH: exited between listing and writing
        refused: set[int] = set()  # the kernel said no; tried again next pass
        seen: set[str] = set()
        if not live:
            self._check_exists(pod, now)
            return seen
        pending, recreated, rounds = live, False, 0
        while pending:
            try:
                members: dict[str, set[int] | None] = {}
                # Read even when no thread is for it (all in classes or in runtime-made
                # groups): a group that vanished (a runtime's prune) is found and remade.
                self._members(pod, "", members)
                pending = self._round(pod, pending, members, gone, refused, rounds, classes, seen)
            except GroupVanished:
                if recreated or not self._pod_groups.recreate(pod, now):
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
            return None
        return seen

    def _check_exists(self, pod: Pod, now: float) -> None:
        """A pod with nothing to place: is its group still there (a runtime's prune
        removes empty MON groups)? Made again if not."""
        try:
            self._groups.tasks(pod.name)
        except GroupVanished:
            self._pod_groups.recreate(pod, now)
        except ResctrlWriteError as err:
            self._counters["tasks_read_errors"] += 1
            log.error("cannot read tasks of %s: %s", pod.name, err)

    def _members(
        self, pod: Pod, ctrl: str, members: dict[str, set[int] | None]
    ) -> set[int] | None:
        """Threads in the pod's group of class ``ctrl`` (made when missing); None when
        the pod cannot have one there now.

        Raises:
            GroupVanished: the pod's group in the root class vanished.
        """
        if ctrl in members:
            return members[ctrl]
        if not ctrl:
            found: set[int] | None = self._groups.tasks(pod.name)
        elif not self._pod_groups.ensure_class(pod, ctrl):
            found = None
        else:
            try:
                found = self._groups.tasks(f"{ctrl}/{pod.name}")
            except GroupVanished:
                # Pruned (a runtime's restart) or its class went: make it again, once.
                pod.class_groups.discard(ctrl)
                self._counters["groups_recreated"] += 1
                found = set() if self._pod_groups.ensure_class(pod, ctrl) else None
        members[ctrl] = found
        return found

    def _round(
        self,
        pod: Pod,
        pending: list[tuple[Container, str]],
        members: dict[str, set[int] | None],
        gone: set[int],
        refused: set[int],
        rounds: int,
        class_of: Mapping[int, str],
        seen: set[str],
    ) -> list[tuple[Container, str]]:
        """Compare each container's threads with the pod's groups and write what is
        missing, each thread into the group of the class that holds it.

        Returns:
            The containers that had threads written (to verify in the next round).

        Raises:
            GroupVanished: the root-class group disappeared during a write.
        """
        written: list[tuple[Container, str]] = []
        for c, directory in pending:
            try:
                tids = self._cgroups.threads(directory)
            except CgroupGone:
                c.exited, c.reconciled = True, False
                continue
            except CgroupUnreadable as err:
                # Not gone, not known: unreconciled until a later pass reads it.
                self._counters["cgroup_read_errors"] += 1
                c.reconciled = False
                pod.warn(log, "cgroup", "cannot read the threads of container %.64r: %s",
                         c.id, err)  # fmt: skip
                continue
            c.exited = False
            by_class: dict[str, set[int]] = {}
            if class_of:
                for tid in tids:
                    by_class.setdefault(class_of.get(tid, ""), set()).add(tid)
            elif tids:
                by_class[""] = tids
            if self._attribute:
                self._leave_runtime_threads(pod, c, by_class, members)
            complete, wrote = True, False
            for ctrl, in_class in by_class.items():
                seen.add(ctrl)
                group = self._members(pod, ctrl, members)
                if group is None:
                    complete = False
                    continue
                missing = in_class - group - gone
                complete = complete and not missing
                todo = missing - refused
                if todo and rounds < self._max_passes:
                    name = f"{ctrl}/{pod.name}" if ctrl else pod.name
                    self._write(pod, name, sorted(todo), gone, refused)
                    wrote = True
            c.reconciled = complete
            if wrote:
                written.append((c, directory))
        return written

    def _leave_runtime_threads(
        self,
        pod: Pod,
        c: Container,
        by_class: dict[str, set[int]],
        members: dict[str, set[int] | None],
    ) -> None:
        """Take the threads that sit in the container's runtime-made MON group out of
        ``by_class`` (they stay there) and remember that group for the pod's row."""
        if not _CONTAINER_ID.fullmatch(c.id):
            return  # untrusted text that cannot name a group
        found = None
        # A container is looked at when first seen (its runtime made the group before
        # starting it); later only where it had one or the pass's listing of
        # mon_groups shows the name (no read per container per pass otherwise).
        fresh, c.runtime_checked = not c.runtime_checked, True
        listed = self._pod_groups.listed
        for ctrl in list(by_class):
            name = f"{ctrl}/{c.id}" if ctrl else c.id
            key = "\x00runtime:" + name  # cached per call beside the pod's own groups
            known = name == c.runtime_group or name in listed
            if key not in members and not fresh and not known:
                members[key] = None
            if key not in members:
                try:
                    members[key] = self._groups.tasks(name)
                except ResctrlWriteError:  # none (ENOENT), or not readable: not attributed
                    members[key] = None
            in_runtime = members[key]
            if in_runtime:
                by_class[ctrl] -= in_runtime
                found = name
                if not by_class[ctrl]:
                    del by_class[ctrl]
        if found != c.runtime_group:
            c.runtime_group = found
            self._counters["runtime_groups_attributed" if found else "runtime_groups_gone"] += 1
            log.info("container %.64s: %s", c.id,
                     f"runtime-made group {found} attributed to pod {pod.uid}" if found
                     else "runtime-made group gone")  # fmt: skip

    def _locate(self, pod: Pod, c: Container) -> str | None:
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

    def _write(
        self, pod: Pod, name: str, tids: list[int], gone: set[int], refused: set[int]
    ) -> None:
        """Write each tid into group ``name``, classifying failures into ``gone`` and
        ``refused``.

        Raises:
            GroupVanished: the root-class group disappeared (the caller recreates it).
        """
        for tid in tids:
            try:
                if self._groups.add_task(name, tid):
                    self._counters["tasks_written"] += 1
                else:
                    self._counters["tasks_esrch"] += 1
                    gone.add(tid)
            except TaskRefused as err:
                # Typically the thread changed class since the classes were read: the
                # next pass reads them again and writes it into that class's group.
                self._counters["tasks_einval"] += 1
                refused.add(tid)
                pod.warn(log, "einval", "%s", err)
            except GroupVanished:
                if name == pod.name:
                    raise
                pod.class_groups.discard(name.partition("/")[0])  # remade next pass
                refused.add(tid)
            except PermissionProblem as err:
                self._counters["permission_errors"] += 1
                refused.add(tid)
                log.error("cannot move tid %d into %s: %s", tid, name, err)
            except ResctrlWriteError as err:
                self._counters["task_write_errors"] += 1
                refused.add(tid)
                pod.warn(log, "write", "%s", err)
