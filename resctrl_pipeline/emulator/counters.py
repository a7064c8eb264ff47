"""The counter files of an emulated resctrl tree: what each one shows, and when it moves.

Rules (kernel ``fs/resctrl/monitor.c`` and ``ctrlmondata.c``):

* a group's own value per leaf comes from the :class:`~.occupancy.OccupancyModel`,
  advanced from the CPU time its threads used since the previous refresh;
* the default group's own CPU time is the host's (``/proc/stat``) minus the
  monitoring groups', so the root shows the rest of the machine;
* a root (CTRL_MON) file is its own value plus its monitoring groups' values;
* an SNC ``mon_L3_XX`` file is the sum of its ``mon_sub_L3_YY`` files, and fails
  only when every sub read fails;
* a pinned value (test API, :attr:`Group.overrides`) replaces exactly that file.

Rendered values are cached until the next refresh or change, so a read between
refreshes costs a dictionary lookup. Not thread-safe: the tree calls every method
under its lock and does the ``/proc`` reading itself, outside the lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from resctrl_pipeline.emulator.occupancy import CacheParams, CpuLedger, OccupancyModel
from resctrl_pipeline.emulator.resctrlnodes import CounterValue, Group, Node
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
    """

    def __init__(
        self, topology: Topology, cache: CacheParams, refresh_interval: float, now: float
    ) -> None:
        self.topology = topology
        self._model: OccupancyModel[Group] = OccupancyModel(cache, topology.leaves, now)
        self._ledger: CpuLedger[Group] = CpuLedger(topology.leaf_of_cpu, topology.leaves)
        self._interval = refresh_interval
        self._last_refresh = float("-inf")
        self._refreshing = False
        self._values: dict[Node, str] = {}

    def track(self, group: Group) -> None:
        """Count for a new group, from zero."""
        self._model.track(group)
        self.invalidate()

    def forget(self, group: Group) -> None:
        """Stop counting for a removed group."""
        self._model.forget(group)
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
            value = f"{self._value(node.group, node.name, node.domain, node.sub, members)}\n"
            self._values[node] = value
        return value

    def _value(
        self, group: Group, event: str, domain: int, sub: int | None, members: Sequence[Group]
    ) -> CounterValue:
        pinned = group.overrides.get((event, domain, sub))
        if pinned is not None:
            return pinned
        if sub is None and self.topology.snc:
            subs = self.topology.sub_nodes(domain)
            return _sum_parts([self._value(group, event, domain, s, members) for s in subs])
        leaf = self.topology.leaf(domain, sub)
        total = 0
        for member in members:
            counters = self._model.counters(member, leaf)
            if counters is not None:
                total += getattr(counters, event)
        return total
