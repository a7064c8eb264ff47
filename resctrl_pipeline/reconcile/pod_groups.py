"""Group operations for pods: create or adopt, recreate, remove, sweep orphans.

:class:`PodGroups` applies the reconciler's ownership rule (only names starting with
the prefix are ours) and records on the pod why it has no group, turning each
classified resctrl error into a retryable state and a counter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from resctrl_pipeline.errors import ResctrlUnavailable
from resctrl_pipeline.podid import uid_from_group_name
from resctrl_pipeline.reconcile.pods import RMID_WAIT, Pod
from resctrl_pipeline.resctrl.errnos import (
    GroupVanished,
    NoFreeRmid,
    PermissionProblem,
    ResctrlWriteError,
    RmidsInLimbo,
)
from resctrl_pipeline.resctrl.groups import ResctrlGroups

__all__ = ["PodGroups"]

log = logging.getLogger(__name__)


class PodGroups:
    """Monitoring groups of pods, below ``mon_groups/``, named prefix + uid.

    Args:
        groups: classified resctrl operations.
        prefix: the validated prefix; groups without it are never touched.
        grace: seconds a prefix group of no known pod survives.
        counters: shared counters.
        dirty: shared set of uids whose reported state may have changed.
    """

    def __init__(
        self,
        groups: ResctrlGroups,
        prefix: str,
        grace: float,
        counters: Counter[str],
        dirty: set[str],
    ) -> None:
        self._groups = groups
        self._prefix = prefix
        self._grace = grace
        self._counters = counters
        self._dirty = dirty
        self.orphans: dict[str, float] = {}  # group name -> first seen without a pod
        #: Every MON group name (``<name>``, ``<class>/<name>``) the last sweep listed.
        self.listed: frozenset[str] = frozenset()

    def ensure(self, pod: Pod, now: float) -> bool:
        """Create or adopt the pod's group; on failure record why. Returns has_group."""
        if pod.has_group:
            return True
        failure, detail = "error", ""
        try:
            created = self._groups.create(pod.name)
        except NoFreeRmid as err:
            self._counters["mkdir_enospc"] += 1
            failure, detail = RMID_WAIT[0], str(err)
        except RmidsInLimbo as err:
            self._counters["mkdir_ebusy"] += 1
            failure, detail = RMID_WAIT[1], str(err)
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
            self.orphans.pop(pod.name, None)
            self._dirty.add(pod.uid)
            return True
        if pod.waiting_since is None:
            pod.waiting_since = now
        pod.warn(log, failure, "pod %s has no group (%s), retrying: %s", pod.uid, failure, detail)
        pod.failure = failure
        self._dirty.add(pod.uid)
        return False

    def ensure_class(self, pod: Pod, ctrl: str) -> bool:
        """Create or adopt the pod's MON group below class ``ctrl``. Returns success.

        Failures (no RMID, the class gone, …) are counted and logged once per pod and
        kind; the threads in that class stay where they are until a later pass.
        """
        if ctrl in pod.class_groups:
            return True
        name = f"{ctrl}/{pod.name}"
        try:
            created = self._groups.create(name)
        except GroupVanished:
            return False  # the class was removed; the next pass sees where the threads went
        except (ResctrlWriteError, ResctrlUnavailable) as err:
            key = (
                "mkdir_enospc"
                if isinstance(err, NoFreeRmid)
                else "mkdir_ebusy"
                if isinstance(err, RmidsInLimbo)
                else "mkdir_errors"
            )
            self._counters[key] += 1
            why = f"pod {pod.uid} has no group in class {ctrl}"
            pod.warn(log, f"class:{ctrl}", "%s: %s", why, err)
            return False
        self._counters["class_groups_created" if created else "groups_adopted"] += 1
        log.info("%s group %s", "created" if created else "adopted", name)
        pod.class_groups.add(ctrl)
        self.orphans.pop(name, None)
        self._dirty.add(pod.uid)
        return True

    def remove_class(self, pod: Pod, ctrl: str, why: str) -> None:
        """Remove the pod's group below class ``ctrl`` (no thread of it left there)."""
        if self.remove(f"{ctrl}/{pod.name}", why):
            pod.class_groups.discard(ctrl)
            self._dirty.add(pod.uid)

    def recreate(self, pod: Pod, now: float) -> bool:
        """The pod's group vanished behind our back: create it again."""
        self._counters["groups_recreated"] += 1
        log.warning("group %s vanished, recreating it", pod.name)
        pod.has_group = False
        return self.ensure(pod, now)

    def remove(self, name: str, why: str) -> bool:
        """Remove group ``name``; a failure leaves it to the orphan sweep."""
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

    def sweep(self, now: float, known: Mapping[str, Pod], classes: list[str]) -> None:
        """Remove prefix groups of no known pod, in the root's and every class's
        ``mon_groups/``, once they have been orphans for ``grace`` seconds. A known
        pod's group in a class it holds no group in (by our account) is an orphan too:
        if the pod's threads are there, the pass adopts it before the grace ends."""
        names: list[str] = []
        for ctrl in ("", *classes):
            try:
                listed = self._groups.list_groups(ctrl)
            except GroupVanished:
                continue  # the class went away with its groups
            except (ResctrlWriteError, ResctrlUnavailable) as err:
                self._counters["list_errors"] += 1
                log.error("cannot list monitoring groups: %s", err)
                return
            names += [f"{ctrl}/{n}" if ctrl else n for n in listed]
        self.listed = frozenset(names)
        orphans = set()
        for name in names:
            ctrl, _, leaf = name.rpartition("/")
            if not leaf.startswith(self._prefix):
                continue  # not ours, whatever it is
            uid = uid_from_group_name(self._prefix, leaf)
            pod = known.get(uid) if uid is not None else None
            if pod is not None and (not ctrl or ctrl in pod.class_groups):
                continue
            orphans.add(name)
            since = self.orphans.setdefault(name, now)
            if now - since >= self._grace and self.remove(name, "orphan"):
                self._counters["orphans_removed"] += 1
                orphans.discard(name)
        self.orphans = {n: t for n, t in self.orphans.items() if n in orphans}
