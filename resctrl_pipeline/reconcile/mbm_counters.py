"""MBM counter assignment for pod groups (AMD ABMC, ``mbm_event`` mode).

On such a node a group counts memory bandwidth only while it holds a counter, and
counters are few (about 32 per L3 domain, one per event, two events per group); the
kernel hands them out at mkdir in creation order while they last
(``resctrl-modern.md`` §1). :class:`CounterAssigner` replaces that accident by a
stated policy (``resctrl.mbm_assign``):

* ``auto``: pods keep counters they hold; the others get free ones, oldest first;
* ``none``: pod groups hold no counter (ones the kernel gave at mkdir are freed);
* selectors (namespaces, ``key=value`` labels): matching pods first, in the order of
  the selectors, taking counters from our own non-matching pods if needed; then the
  rest as with ``auto``.

It only ever writes the ``mbm_L3_assignments`` of our own pod groups: a counter held
by a group we do not own (the root, a runtime's, another tool's) is never taken. A
group partly assigned when counters ran out is freed again (a partial count is never
reported). Every assignment restarts the group's counts at 0; ``Pod.mbm_epoch`` tells
the sampler so (no false rate spike).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from resctrl_pipeline.reconcile.pods import Pod
from resctrl_pipeline.resctrl.counters import CounterBudget, fully_assigned
from resctrl_pipeline.resctrl.errnos import (
    CountersExhausted,
    GroupVanished,
    ResctrlWriteError,
)
from resctrl_pipeline.resctrl.groups import ResctrlGroups

__all__ = ["CounterAssigner", "CounterPolicy"]

log = logging.getLogger(__name__)

_EVENTS = ("mbm_total_bytes", "mbm_local_bytes")


@dataclass(frozen=True, slots=True)
class CounterPolicy:
    """``resctrl.mbm_assign`` parsed: ``auto``, ``none`` or selectors.

    A selector is a namespace, or ``key=value`` matching a pod label.
    """

    words: tuple[str, ...] = ("auto",)

    @property
    def none(self) -> bool:
        """No pod group gets a counter."""
        return self.words == ("none",)

    def rank(self, pod: Pod) -> int:
        """The index of the first selector the pod matches; after all of them if none."""
        if self.words in (("auto",), ("none",)):
            return 0
        for i, word in enumerate(self.words):
            key, eq, value = word.partition("=")
            if (eq and pod.labels.get(key) == value) or (not eq and pod.namespace == word):
                return i
        return len(self.words)


class CounterAssigner:
    """Applies a :class:`CounterPolicy` to our pods' groups on every pass.

    Args:
        groups: classified resctrl operations. policy: who gets counters.
        counters: shared counters (``mbm_assigned``, ``mbm_freed``, …).
    """

    def __init__(self, groups: ResctrlGroups, policy: CounterPolicy, counters: Counter[str]):
        self._groups = groups
        self._policy = policy
        self._counters = counters
        self.budget = CounterBudget(None, {}, {})
        self._events: list[str] | None = None

    @property
    def active(self) -> bool:
        """True on an ``mbm_event`` node (counters must be assigned)."""
        return self.budget.assignable

    def _enabled_events(self) -> list[str]:
        if self._events is None:
            try:
                features = self._groups.ops.read_info("L3_MON/mon_features").split()
            except OSError:
                features = list(_EVENTS)
            self._events = [e for e in _EVENTS if e in features]
        return self._events

    def run(self, pods: Iterable[Pod]) -> set[str]:
        """One pass: read the budget and our groups' counters, free and assign.

        Returns:
            The uids of pods whose counter state changed (to be reported).
        """
        self.budget = self._groups.counter_budget()
        if not self.budget.assignable:
            return set()
        events = self._enabled_events()
        if not events:
            return set()
        mine = [p for p in pods if p.has_group]
        changed: set[str] = set()
        for pod in mine:
            self._refresh(pod, events, changed)
        wanted = self._wanted(mine)
        freed = False
        for pod in mine:  # free first: that is where counters for the wanted come from
            if pod.mbm in ("assigned", "partial") and pod.uid not in wanted:
                self._set(pod, events, False, changed)
                freed = True
        if freed:  # what partial holders gave back counts now (one pass converges)
            self.budget = self._groups.counter_budget()
            wanted = self._wanted(mine)
        exhausted = False
        for pod in sorted((p for p in mine if p.uid in wanted), key=self._order):
            if pod.mbm != "assigned" and not exhausted:
                exhausted = not self._set(pod, events, True, changed)
        self.budget = self._groups.counter_budget()
        return changed

    def _order(self, pod: Pod) -> tuple[int, int, int]:
        """Selector rank, then holders (no churn), then age."""
        return (self._policy.rank(pod), 0 if pod.mbm == "assigned" else 1, pod.seq)

    def _wanted(self, mine: list[Pod]) -> set[str]:
        """Uids of the pods that should hold counters after this pass."""
        if self._policy.none:
            return set()
        # Counters held partly come back when freed; count only what is surely ours.
        room = self.budget.free // len(self._enabled_events())
        room += sum(len(p.group_names()) for p in mine if p.mbm == "assigned")
        wanted: set[str] = set()
        for pod in sorted(mine, key=self._order):
            need = len(pod.group_names())  # one set of counters per class it spans
            if need > room:
                break
            room -= need
            wanted.add(pod.uid)
        return wanted

    def _refresh(self, pod: Pod, events: list[str], changed: set[str]) -> None:
        """Read what the pod's groups (one per class it spans) hold."""
        full, some = True, False
        for name in pod.group_names():
            try:
                held = self._groups.assignments(name)
            except GroupVanished:
                return  # the next pass recreates it
            except ResctrlWriteError as err:
                self._counters["mbm_read_errors"] += 1
                pod.warn(log, "mbm_read", "cannot read counters of %s: %s", name, err)
                return
            full = full and fully_assigned(held, events)
            some = some or any(any(d.values()) for e, d in held.items() if e in events)
        state = "assigned" if full else "partial" if some else "none"
        if state != pod.mbm:
            pod.mbm = state
            changed.add(pod.uid)

    def _set(self, pod: Pod, events: list[str], assign: bool, changed: set[str]) -> bool:
        """Assign or free the counters of every group of the pod. Returns False when
        counters ran out."""
        try:
            for name in pod.group_names():
                self._groups.set_counters(name, events, assign)
        except CountersExhausted as err:
            self._counters["mbm_assign_enospc"] += 1
            log.debug("no MBM counter for %s: %s", pod.name, err.status)
            self._free_partial(pod, events)
            changed.add(pod.uid)
            return False
        except GroupVanished:
            return True
        except ResctrlWriteError as err:
            self._counters["mbm_assign_errors"] += 1
            pod.warn(log, "mbm_assign", "cannot %s counters of %s: %s",
                     "assign" if assign else "free", pod.name, err)  # fmt: skip
            return True
        self._counters["mbm_assigned" if assign else "mbm_freed"] += 1
        if assign:
            pod.mbm_epoch += 1
        pod.mbm = "assigned" if assign else "none"
        changed.add(pod.uid)
        return True

    def _free_partial(self, pod: Pod, events: list[str]) -> None:
        """Counters ran out midway: give back what this group got (never a partial sum)."""
        try:
            for name in pod.group_names():
                self._groups.set_counters(name, events, False)
            pod.mbm = "none"
        except ResctrlWriteError as err:
            pod.mbm = "partial"
            pod.warn(log, "mbm_free", "cannot free counters of %s: %s", pod.name, err)

    def gauges(self, pods: Iterable[Pod]) -> dict[str, float]:
        """Assigned/available counters and pods with and without them (active only)."""
        if not self.active:
            return {}
        mine = [p for p in pods if p.has_group]
        return {
            "mbm_counters_per_domain": self.budget.total,
            "mbm_counters_available": self.budget.free,
            "mbm_counters_assigned": len(self._enabled_events())
            * sum(len(p.group_names()) for p in mine if p.mbm == "assigned"),
            "pods_mbm_assigned": sum(p.mbm == "assigned" for p in mine),
            "pods_mbm_unassigned": sum(p.mbm != "assigned" for p in mine),
        }
