"""Shape of an emulated node's L3 monitoring: domains, sub-NUMA nodes, events, CPUs.

The kernel names one ``mon_data/mon_L3_XX`` directory per L3 cache id; ids are
unique but not necessarily contiguous (e.g. 0 and 3). With sub-NUMA clustering (SNC)
each of them also holds ``mon_sub_L3_YY`` directories, YY being NUMA node ids, and
the ``mon_L3_XX`` files report the sum over them.

A *leaf* is the finest monitoring domain: an SNC node when SNC is on, otherwise an
L3 domain. Leaves are numbered 0..leaves-1 in domain order; CPUs are spread over
them in contiguous blocks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["EVENTS", "Topology"]

EVENTS = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes")
"""The L3 monitoring events, in the order ``info/L3_MON/mon_features`` lists them."""


@dataclass(frozen=True, slots=True)
class Topology:
    """L3 monitoring layout of an emulated node.

    Attributes:
        domains: L3 cache ids, in order (unique, not necessarily contiguous).
        snc: SNC nodes per L3 domain; 0 means SNC is off. Node ids are numbered
            consecutively across domains (domain index * snc + k).
        mbm: whether the memory-bandwidth events exist besides ``llc_occupancy``.
        cpus: CPUs to spread over the leaves (default: this machine's count).

    Raises:
        ValueError: no domains, duplicate or negative ids, ``snc`` of 1 or below 0,
            or fewer than one CPU.
    """

    domains: tuple[int, ...] = (0, 1)
    snc: int = 0
    mbm: bool = True
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if not self.domains or len(set(self.domains)) != len(self.domains):
            raise ValueError(f"domains must be unique and non-empty: {self.domains}")
        if min(self.domains) < 0:
            raise ValueError(f"domain ids must not be negative: {self.domains}")
        if self.snc < 0 or self.snc == 1:
            raise ValueError("snc is 0 (off) or the number of SNC nodes per L3 domain (>= 2)")
        if self.cpus < 1:
            raise ValueError("at least one CPU")

    @property
    def events(self) -> tuple[str, ...]:
        """Event file names present in every monitoring directory."""
        return EVENTS if self.mbm else EVENTS[:1]

    @property
    def leaves(self) -> int:
        """Number of leaves (finest monitoring domains)."""
        return len(self.domains) * max(self.snc, 1)

    def sub_nodes(self, domain: int) -> tuple[int, ...]:
        """SNC node ids under L3 domain ``domain`` (empty when SNC is off)."""
        index = self.domains.index(domain)
        return tuple(range(index * self.snc, (index + 1) * self.snc))

    def leaf(self, domain: int, sub: int | None = None) -> int:
        """Leaf index of an L3 domain (SNC off) or of one of its SNC nodes.

        Raises:
            ValueError: ``domain`` or ``sub`` is not part of this topology, or ``sub``
                is missing while SNC is on.
        """
        index = self.domains.index(domain)
        if not self.snc:
            if sub is not None:
                raise ValueError("SNC is off: no sub node")
            return index
        if sub is None or sub not in self.sub_nodes(domain):
            raise ValueError(f"SNC node {sub} is not under L3 domain {domain}")
        return sub

    def leaf_of_cpu(self, cpu: int) -> int:
        """Leaf of the CPU numbered ``cpu`` (numbers beyond ``cpus`` wrap around)."""
        return (cpu % self.cpus) * self.leaves // self.cpus

    def domain_dir(self, domain: int) -> str:
        """``mon_L3_XX`` directory name of an L3 domain."""
        return f"mon_L3_{domain:02d}"

    def sub_dir(self, sub: int) -> str:
        """``mon_sub_L3_YY`` directory name of an SNC node."""
        return f"mon_sub_L3_{sub:02d}"
