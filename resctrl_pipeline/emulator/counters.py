"""The counter files of an emulated resctrl tree: what each one shows, and when it moves.

Rules (kernel ``fs/resctrl/monitor.c`` and ``ctrlmondata.c``):

* a group's own value per leaf comes from the :class:`~.occupancy.OccupancyModel`,
  advanced from the CPU time its threads used since the previous refresh;
* the default group's own CPU time is the host's (``/proc/stat``) minus the
  monitoring groups', so the root shows the rest of the machine;
* a root (CTRL_MON) file is its own value plus its monitoring groups' values;
* an SNC ``mon_L3_XX`` file is the sum of its ``mon_sub_L3_YY`` files, and fails
  only when every sub read fails;
* a pinned value (test API, :attr:`Group.overrides`) replaces exactly that file;
* with ABMC (:mod:`.assignment`), an MBM file counts only the (group, domain) pairs
  holding a counter: ``Unassigned`` when none of the groups it adds up holds one;
  every assignment and every mode switch restarts the count at 0, and the first read
  of a group's own file after its assignment shows ``Unavailable``;
* a ``mon_PERF_PKG_XX`` (AET) file grows with the CPU time the group used on the
  package's leaves (:mod:`.telemetry`); it reads ``Unavailable`` until the group's
  threads ran there (no aggregator holds data for the RMID yet), except for the
  default group, whose RMID is always in use.

Rendered values are cached until the next refresh or change, so a read between
refreshes costs a dictionary lookup. Not thread-safe: the tree calls every method
under its lock and does the ``/proc`` reading itself, outside the lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from resctrl_pipeline.emulator import telemetry
from resctrl_pipeline.emulator.assignment import MBM_EVENTS, CounterAssignment
from resctrl_pipeline.emulator.occupancy import CacheParams, CpuLedger, OccupancyModel
from resctrl_pipeline.emulator.resctrlnodes import CounterValue, Group, Node, NodeKind
from resctrl_pipeline.emulator.threads import ThreadStat
from resctrl_pipeline.emulator.topology import Topology

__all__ = ["GroupCounters"]


def _sum_parts(parts: list[CounterValue]) -> CounterValue:
    """An SNC ``mon_L3`` value: the sum of the numeric sub values."""
    numbers = [p for p in parts if isinstance(p, int)]
    if numbers:
        return sum(numbers)
    return "Error" if "Error" in parts else "Unavailable"


class GroupCounters:
    """Counter values of every group of one tree.

    Args:
        topology: leaves and events.
        cache: parameters of the occupancy model.
        refresh_interval: minimum seconds between two refreshes triggered by reads.
        now: the clock's current time (start of the model).
        assignment: the node's counter assignment (ABMC), or None.
    """

    def __init__(
        self,
        topology: Topology,
        cache: CacheParams,
        refresh_interval: float,
        now: float,
        assignment: CounterAssignment | None = None,
    ) -> None:
        self.topology = topology
        self._model: OccupancyModel[Group] = OccupancyModel(cache, topology.leaves, now)
        self._ledger: CpuLedger[Group] = CpuLedger(topology.leaf_of_cpu, topology.leaves)
        self._interval = refresh_interval
        self._last_refresh = float("-inf")
        self._refreshing = False
        self._values: dict[Node, str] = {}
        self._assignment = assignment
        # (group, event, domain) → the model's count when the counter last restarted.
        self._base: dict[tuple[Group, str, int], int] = {}
        self._fresh: set[tuple[Group, str, int]] = set()  # assigned, not read since

    def track(self, group: Group) -> None:
        """Count for a new group, from zero."""
        self._model.track(group)
        self.invalidate()

    def forget(self, group: Group) -> None:
        """Stop counting for a removed group."""
        self._model.forget(group)
        for key in [k for k in self._base if k[0] is group]:
            del self._base[key]
        self._fresh = {k for k in self._fresh if k[0] is not group}
        self.invalidate()

    def restart(self, group: Group, pairs: Sequence[tuple[str, int]]) -> None:
        """Counters were just assigned to ``group`` for these (event, domain) pairs:
        their counts restart at 0 and the next read of each shows ``Unavailable``."""
        for event, domain in pairs:
            self._base[(group, event, domain)] = self._raw(group, event, domain)
            self._fresh.add((group, event, domain))
        self.invalidate()

    def restart_all(self, groups: Sequence[Group]) -> None:
        """A mode switch: every MBM count of every group restarts at 0."""
        for group in groups:
            for event in MBM_EVENTS:
                for domain in self.topology.domains:
                    self._base[(group, event, domain)] = self._raw(group, event, domain)
        self._fresh.clear()
        self.invalidate()

    def invalidate(self) -> None:
        """Drop the rendered values (pins or groups changed)."""
        self._values.clear()

    def begin_refresh(self, now: float, force: bool) -> bool:
        """Whether the caller should refresh now; if so, others are told no until
        :meth:`finish_refresh` or :meth:`abort_refresh`."""
        if self._refreshing or not (force or now - self._last_refresh >= self._interval):
            return False
        self._refreshing = True
        return True

    def abort_refresh(self) -> None:
        """The refresh begun failed; the next read may try again."""
        self._refreshing = False

    def finish_refresh(
        self,
        now: float,
        threads: Mapping[Group, Sequence[ThreadStat]],
        host_busy: Sequence[int],
        root: Group,
    ) -> None:
        """Advance the model with fresh readings.

        Args:
            now: the clock's time of the readings.
            threads: per monitoring group, a stat of each of its live threads.
            host_busy: busy ticks per CPU (``/proc/stat``).
            root: the default group, which gets the host's remaining CPU time.
        """
        self._refreshing = False
        usage = self._ledger.account(threads)
        host = self._ledger.account_host(host_busy)
        usage[root] = [
            max(0.0, used - sum(u[leaf] for u in usage.values())) for leaf, used in enumerate(host)
        ]
        self._model.advance(now, usage)
        self._last_refresh = now
        self.invalidate()

    def render(self, node: Node, members: Sequence[Group]) -> str:
        """The content of the counter file at ``node``.

        Args:
            node: a counter node (group, event, domain and SNC node set).
            members: the groups whose own values the file adds up: the node's group,
                followed, for the root, by its monitoring groups.
        """
        value = self._values.get(node)
        if value is None:
            assert node.group is not None and node.domain is not None
            fresh = (node.group, node.name, node.domain)
            if fresh in self._fresh and node.sub is None:
                self._fresh.discard(fresh)  # not cached: the next read counts
                pinned = (node.name, node.domain, None) in node.group.overrides
                if (node.name, node.domain) in node.group.assigned and not pinned:
                    return "Unavailable\n"
            if node.kind is NodeKind.PKG_COUNTER:
                value = f"{self._package_value(node.group, node.name, node.domain, members)}\n"
            else:
                value = f"{self._value(node.group, node.name, node.domain, node.sub, members)}\n"
            self._values[node] = value
        return value

    def _package_value(
        self, group: Group, event: str, package: int, members: Sequence[Group]
    ) -> str:
        pinned = group.overrides.get((event, package, None))
        if isinstance(pinned, int) and event in telemetry.FIXED_POINT:
            return telemetry.format_fixed(pinned << telemetry.FRACTION_BITS)
        if pinned is not None:
            return str(pinned)
        seconds, ran = 0.0, group.rmid == 0
        for member in members:
            for leaf in self.topology.package_leaves(package):
                counters = self._model.counters(member, leaf)
                if counters is not None:
                    seconds += counters.cpu_seconds
                    ran = ran or counters.cpu_seconds > 0
        return telemetry.render(event, seconds) if ran else "Unavailable"

    def _value(
        self, group: Group, event: str, domain: int, sub: int | None, members: Sequence[Group]
    ) -> CounterValue:
        pinned = group.overrides.get((event, domain, sub))
        if pinned is not None:
            return pinned
        if sub is None and self.topology.snc:
            subs = self.topology.sub_nodes(domain)
            return _sum_parts([self._value(group, event, domain, s, members) for s in subs])
        if self._assignment is not None and event in MBM_EVENTS:
            return self._assigned_value(event, domain, members)
        leaf = self.topology.leaf(domain, sub)
        total = 0
        for member in members:
            counters = self._model.counters(member, leaf)
            if counters is not None:
                total += getattr(counters, event)
        return total

    def _assigned_value(self, event: str, domain: int, members: Sequence[Group]) -> CounterValue:
        """An MBM value with ABMC: the counted part of each member since its restart;
        in ``mbm_event`` mode only members holding a counter count."""
        assert self._assignment is not None
        counting = [
            m
            for m in members
            if not self._assignment.mbm_event or (event, domain) in m.assigned
        ]
        if not counting:
            return "Unassigned"
        return sum(
            self._raw(m, event, domain) - self._base.get((m, event, domain), 0) for m in counting
        )

    def _raw(self, group: Group, event: str, domain: int) -> int:
        """The model's count of ``group`` in L3 ``domain`` (no SNC with ABMC)."""
        counters = self._model.counters(group, self.topology.leaf(domain))
        return 0 if counters is None else int(getattr(counters, event))
