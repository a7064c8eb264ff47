"""Hardware profiles of an emulated node: which resctrl features the emulated kernel has.

A profile is chosen per mount by a spec of names joined by ``+``, each with an
optional ``:argument`` (facts: ``shared/reference/resctrl-modern.md``)::

    classic                   L3 monitoring only, every thread in the root (default)
    snc[:N]                   Intel sub-NUMA clustering, N = 2, 3, 4 or 6 nodes per L3 (2)
    abmc[:COUNTERS]           AMD counter assignment (mbm_event mode), counters per
                              L3 domain (32)
    aet[:RMIDS]               Intel telemetry: mon_PERF_PKG_XX domains, PERF_PKG_MON
                              num_rmids (48)
    classes[:NAME,NAME...]    CTRL_MON groups (RDT classes) at mount (gold,silver)
    runtime-groups            the emulated runtime creates <CLOS>/mon_groups/<container-id>
                              and prunes empty MON groups when it restarts

``classic`` combined with anything is that thing; ``snc`` does not combine with
``abmc`` (SNC is Intel, ABMC AMD) nor ``aet`` with ``abmc``. :func:`parse_hardware`
turns a spec into a :class:`Hardware`; ``str(hardware)`` gives the spec back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["PROFILES", "Hardware", "parse_hardware"]

PROFILES = ("classic", "snc", "abmc", "aet", "classes", "runtime-groups")
"""Profile names a spec may join with ``+``."""

SNC_NODES = (2, 3, 4, 6)
"""SNC node counts per L3 the kernel accepts (SNC-6 since v6.13)."""

_CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_RESERVED = frozenset(
    {"info", "mon_groups", "mon_data", "tasks", "cpus", "cpus_list", "mbm_L3_assignments"}
)


@dataclass(frozen=True, slots=True)
class Hardware:
    """What the emulated resctrl offers beyond classic L3 monitoring.

    Attributes:
        snc: SNC nodes per L3 domain (0: SNC off).
        abmc: counter assignment (``mbm_event`` mode, on at mount).
        mbm_counters: MBM counters per L3 domain (``num_mbm_cntrs``).
        counters_per_group: counters ``mbm_assign_on_mkdir`` gives a new group per
            domain: 2 (total and local, the kernel's) or 1 (total only).
        aet: ``mon_PERF_PKG_XX`` telemetry domains.
        packages: package ids of the ``mon_PERF_PKG_XX`` directories.
        perf_pkg_rmids: ``info/PERF_PKG_MON/num_rmids``; the group limit becomes the
            smaller of it and ``info/L3_MON/num_rmids``.
        ctrl_mon: CTRL_MON groups exist (the ``classes`` profile): top-level mkdir
            creates one, and MON groups can be made under ``<class>/mon_groups/``.
        classes: CTRL_MON groups present at mount (``ctrl_mon`` only).
        num_closids: CLOSIDs including the root's (the limit on CTRL_MON groups).
        runtime_groups: containers started by the emulated runtime get a MON group
            ``<CLOS>/mon_groups/<container-id>`` holding their init process.

    Raises:
        ValueError: an impossible combination or value.
    """

    snc: int = 0
    abmc: bool = False
    mbm_counters: int = 32
    counters_per_group: int = 2
    aet: bool = False
    packages: tuple[int, ...] = (0,)
    perf_pkg_rmids: int = 48
    classes: tuple[str, ...] = ()
    ctrl_mon: bool = False
    num_closids: int = 16
    runtime_groups: bool = False

    def __post_init__(self) -> None:
        if self.snc and self.snc not in SNC_NODES:
            raise ValueError(f"snc must be one of {SNC_NODES}, not {self.snc}")
        if self.abmc and (self.snc or self.aet):
            raise ValueError("abmc (AMD) does not combine with snc or aet (Intel)")
        if self.mbm_counters < 1 or self.counters_per_group not in (1, 2):
            raise ValueError("mbm_counters >= 1 and counters_per_group 1 or 2")
        if self.perf_pkg_rmids < 1 or not self.packages:
            raise ValueError("aet needs packages and perf_pkg_rmids >= 1")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must be unique: {self.classes}")
        for name in self.classes:
            if not _CLASS_NAME.fullmatch(name) or name in _RESERVED:
                raise ValueError(f"not a usable class name: {name!r}")
        if self.classes and not self.ctrl_mon:
            raise ValueError("classes need ctrl_mon (the classes profile)")
        if self.num_closids < len(self.classes) + 1:
            raise ValueError("num_closids must leave one CLOSID per class besides the root's")

    def __str__(self) -> str:
        parts = []
        if self.snc:
            parts.append("snc" if self.snc == 2 else f"snc:{self.snc}")
        if self.abmc:
            parts.append("abmc" if self.mbm_counters == 32 else f"abmc:{self.mbm_counters}")
        if self.aet:
            parts.append("aet" if self.perf_pkg_rmids == 48 else f"aet:{self.perf_pkg_rmids}")
        if self.ctrl_mon:
            named = ",".join(self.classes)
            parts.append("classes" if self.classes == ("gold", "silver") else f"classes:{named}")
        if self.runtime_groups:
            parts.append("runtime-groups")
        return "+".join(parts) or "classic"


def parse_hardware(spec: str) -> Hardware:
    """The :class:`Hardware` of a profile spec such as ``abmc+classes`` or ``snc:3``.

    Raises:
        ValueError: unknown name, bad argument, a name given twice, or an impossible
            combination (the message names the valid choices).
    """
    hw = Hardware()
    seen: set[str] = set()
    for part in spec.strip().split("+"):
        name, _, arg = part.strip().partition(":")
        if name not in PROFILES:
            choices = ", ".join(PROFILES)
            raise ValueError(f"unknown hardware profile {name!r}; choose from {choices}")
        if name in seen:
            raise ValueError(f"hardware profile {name!r} given twice in {spec!r}")
        seen.add(name)
        if arg and name in ("classic", "runtime-groups"):
            raise ValueError(f"{name} takes no argument")
        if name == "snc":
            hw = replace(hw, snc=_number(name, arg, 2))
        elif name == "abmc":
            hw = replace(hw, abmc=True, mbm_counters=_number(name, arg, 32))
        elif name == "aet":
            hw = replace(hw, aet=True, perf_pkg_rmids=_number(name, arg, 48))
        elif name == "classes":
            names = tuple(n for n in arg.split(",") if n) if arg else ("gold", "silver")
            hw = replace(hw, classes=names, ctrl_mon=True)
        elif name == "runtime-groups":
            hw = replace(hw, runtime_groups=True)
    return hw


def _number(name: str, arg: str, default: int) -> int:
    if not arg:
        return default
    if not arg.isdigit():
        raise ValueError(f"{name}:{arg}: the argument must be a number")
    return int(arg)
