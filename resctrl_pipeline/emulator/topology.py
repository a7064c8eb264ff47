"""Shape of an emulated node's L3 monitoring: domains, sub-NUMA nodes, events, CPUs.

The kernel names one ``mon_data/mon_L3_XX`` directory per L3 cache id; ids are
unique but not necessarily contiguous (e.g. 0 and 3). With sub-NUMA clustering (SNC)
each of them also holds ``mon_sub_L3_YY`` directories, YY being NUMA node ids, and
the ``mon_L3_XX`` files report the sum over them.

A *leaf* is the finest monitoring domain: an SNC node when SNC is on, otherwise an
L3 domain. Leaves are numbered 0..leaves-1 in domain order; CPUs are spread over
them in contiguous blocks.

Intel telemetry (AET, ``hardware.aet``) adds one ``mon_PERF_PKG_XX`` directory per
package beside the ``mon_L3_XX`` ones; packages take the leaves in contiguous blocks
too (package k of P holds leaves ``k*L//P`` up to ``(k+1)*L//P``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["AET_EVENTS", "EVENTS", "Topology"]

EVENTS = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes")
"""The L3 monitoring events, in the order ``info/L3_MON/mon_features`` lists them."""

AET_EVENTS = (
    "core_energy",
    "activity",
    "stalls_llc_hit",
    "c1_res",
    "unhalted_core_cycles",
    "stalls_llc_miss",
    "c6_res",
    "unhalted_ref_cycles",
    "uops_retired",
)
"""The PERF_PKG events, as ``info/PERF_PKG_MON/mon_features`` lists them."""


@dataclass(frozen=True, slots=True)
class Topology:
    """L3 monitoring layout of an emulated node.

    Attributes:
        domains: L3 cache ids, in order (unique, not necessarily contiguous).
        snc: SNC nodes per L3 domain; 0 means SNC is off. Node ids are numbered
            consecutively across domains (domain index * snc + k).
        mbm: whether the memory-bandwidth events exist besides ``llc_occupancy``.
        cpus: CPUs to spread over the leaves (default: this machine's count).
        packages: package ids with ``mon_PERF_PKG_XX`` telemetry (empty: no AET).

    Raises:
        ValueError: no domains, duplicate or negative ids, ``snc`` of 1 or below 0,
            fewer than one CPU, or more packages than leaves.
    """

    domains: tuple[int, ...] = (0, 1)
    snc: int = 0
    mbm: bool = True
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    packages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.domains or len(set(self.domains)) != len(self.domains):
            raise ValueError(f"domains must be unique and non-empty: {self.domains}")
        if min(self.domains) < 0:
            raise ValueError(f"domain ids must not be negative: {self.domains}")
        if self.snc < 0 or self.snc == 1:
            raise ValueError("snc is 0 (off) or the number of SNC nodes per L3 domain (>= 2)")
        if self.cpus < 1:
            raise ValueError("at least one CPU")
        if len(set(self.packages)) != len(self.packages) or min(self.packages, default=0) < 0:
            raise ValueError(f"package ids must be unique and not negative: {self.packages}")
        if len(self.packages) > self.leaves:
            raise ValueError("no more packages than leaves")

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

    def package_dir(self, package: int) -> str:
        """``mon_PERF_PKG_XX`` directory name of a package."""
        return f"mon_PERF_PKG_{package:02d}"

    def package_leaves(self, package: int) -> range:
        """Leaf indexes whose CPUs belong to ``package``.

        Raises:
            ValueError: ``package`` is not part of this topology.
        """
        index, count = self.packages.index(package), len(self.packages)
        return range(index * self.leaves // count, (index + 1) * self.leaves // count)
