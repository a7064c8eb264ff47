"""The names in an emulated resctrl tree: what each path is, and what a directory holds.

Pure functions over the tree's groups and :class:`~.topology.Topology`; the owner
(:class:`~.resctrltree.ResctrlTree`) calls them under its lock. Layout::

    tasks  cpus  cpus_list  mon_data/...  info/...  mon_groups/<name>/...
    <class>/{tasks,cpus,cpus_list,mon_data/...,mon_groups/<name>/...}   (classes only)
    info/last_cmd_status   info/L3_MON/{num_rmids,mon_features,max_threshold_occupancy}
    info/L3_MON/{mbm_assign_mode,num_mbm_cntrs,available_mbm_cntrs,mbm_assign_on_mkdir}
    <group>/mbm_L3_assignments                                          (ABMC only)
    mon_data/mon_L3_XX/<event>   mon_data/mon_L3_XX/mon_sub_L3_YY/<event>  (SNC only)
    mon_data/mon_PERF_PKG_XX/<aet event>   info/PERF_PKG_MON/{num_rmids,mon_features}  (AET)

CTRL_MON groups (the root, and ``<class>`` directories) have ``mon_groups``; MON
groups (``[<class>/]mon_groups/<name>``) have ``tasks``, ``cpus``, ``cpus_list`` and
``mon_data`` but no ``mon_groups`` or ``info``.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from resctrl_pipeline.emulator.topology import AET_EVENTS, Topology

__all__ = [
    "ABMC_INFO_FILES",
    "INFO_FILES",
    "CounterValue",
    "Group",
    "Node",
    "NodeKind",
    "cpu_files",
    "entries",
    "resolve",
]

CounterValue = int | Literal["Unavailable", "Error", "Unassigned"]
"""What a counter file can show: bytes, or one of the kernel's words."""

INFO_FILES = ("max_threshold_occupancy", "mon_features", "num_rmids")
"""Files in ``info/L3_MON``."""

ABMC_INFO_FILES = (
    "available_mbm_cntrs",
    "mbm_assign_mode",
    "mbm_assign_on_mkdir",
    "num_mbm_cntrs",
)
"""Further files in ``info/L3_MON`` with ABMC."""

WRITABLE_INFO_FILES = frozenset({"mbm_assign_mode", "mbm_assign_on_mkdir"})
"""``info`` files root may open for writing."""

PKG_INFO_FILES = ("mon_features", "num_rmids")
"""Files in ``info/PERF_PKG_MON`` (AET only)."""

_GROUP_FILES = ("tasks", "cpus", "cpus_list")


class NodeKind(Enum):
    """Kinds of entries in the tree."""

    GROUP_DIR = "group"
    MON_GROUPS_DIR = "mon_groups"
    MON_DATA_DIR = "mon_data"
    DOMAIN_DIR = "mon_L3"
    SUB_DIR = "mon_sub_L3"
    PKG_DIR = "mon_PERF_PKG"
    INFO_DIR = "info"
    L3_MON_DIR = "L3_MON"
    PKG_MON_DIR = "PERF_PKG_MON"
    TASKS = "tasks"
    CPUS = "cpus"
    CPUS_LIST = "cpus_list"
    ASSIGNMENTS = "mbm_L3_assignments"
    COUNTER = "counter"
    PKG_COUNTER = "pkg_counter"
    INFO_FILE = "info_file"
    PKG_INFO_FILE = "pkg_info_file"


_DIRS = {
    NodeKind.GROUP_DIR,
    NodeKind.MON_GROUPS_DIR,
    NodeKind.MON_DATA_DIR,
    NodeKind.DOMAIN_DIR,
    NodeKind.SUB_DIR,
    NodeKind.PKG_DIR,
    NodeKind.INFO_DIR,
    NodeKind.L3_MON_DIR,
    NodeKind.PKG_MON_DIR,
}
_WRITABLE = {NodeKind.TASKS, NodeKind.CPUS, NodeKind.CPUS_LIST, NodeKind.ASSIGNMENTS}


class Group:
    """A resctrl group. Identity matters: a re-created name is a different group.

    A CTRL_MON group (the root, or a class) has ``ctrl`` None, a CLOSID and its MON
    groups in ``children``; a MON group has its CTRL_MON group as ``ctrl`` and shares
    its CLOSID. ``overrides`` pins counter files: (event, domain, SNC node or None) →
    value. ``assigned`` holds the (event, domain) pairs with an MBM counter (ABMC).
    """

    __slots__ = (
        "assigned",
        "children",
        "closid",
        "created_ns",
        "ctrl",
        "name",
        "overrides",
        "removed",
        "rmid",
    )

    def __init__(self, name: str, rmid: int, ctrl: Group | None = None, closid: int = 0) -> None:
        self.name = name
        self.rmid = rmid
        self.ctrl = ctrl
        self.closid: int = closid if ctrl is None else ctrl.closid
        self.children: dict[str, Group] = {}
        self.removed = False
        self.created_ns = time.time_ns()
        self.overrides: dict[tuple[str, int, int | None], CounterValue] = {}
        self.assigned: set[tuple[str, int]] = set()

    @property
    def control(self) -> Group:
        """The CTRL_MON group whose CLOSID this group's threads have."""
        return self if self.ctrl is None else self.ctrl

    @property
    def key(self) -> str:
        """Name in the test-side API: ``""`` root, ``"x"`` the root's MON group x,
        ``"c/"`` class c, ``"c/x"`` class c's MON group x."""
        if self.ctrl is None:
            return f"{self.name}/" if self.name else ""
        return self.ctrl.key + self.name


@dataclass(frozen=True, slots=True)
class Node:
    """A resolved path: what it is, which group it belongs to, which domain/event.

    Open file handles keep their ``Node``; once its group is removed, reads and writes
    through it fail with ``ENODEV``, as on kernfs.
    """

    kind: NodeKind
    group: Group | None = None
    domain: int | None = None
    sub: int | None = None
    name: str = ""

    @property
    def is_dir(self) -> bool:
        """True for directories."""
        return self.kind in _DIRS

    @property
    def writable(self) -> bool:
        """True for files the kernel lets root open for writing."""
        if self.kind is NodeKind.INFO_FILE:
            return self.name in WRITABLE_INFO_FILES
        return self.kind in _WRITABLE

    @property
    def created_ns(self) -> int:
        """Creation time of the owning group (ns since the epoch), for ``stat``."""
        return self.group.created_ns if self.group is not None else 0


def _enoent() -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT))


def resolve(
    parts: list[str], root: Group, classes: Mapping[str, Group], topo: Topology, abmc: bool
) -> Node:
    """The node at a path given as its components (``[]`` is the mount root).

    Args:
        classes: the CTRL_MON groups besides the root, by name.
        abmc: whether the ABMC files exist.

    Raises:
        OSError: ``ENOENT`` when nothing is there.
    """
    if parts[:1] == ["info"]:
        return _resolve_info(parts[1:], topo, abmc)
    group, rest = root, parts
    if parts[:1] and parts[0] in classes:
        group, rest = classes[parts[0]], parts[1:]
    if rest[:1] == ["mon_groups"]:
        if len(rest) == 1:
            return Node(NodeKind.MON_GROUPS_DIR, group)
        if rest[1] not in group.children:
            raise _enoent()
        group, rest = group.children[rest[1]], rest[2:]
    if not rest:
        return Node(NodeKind.GROUP_DIR, group)
    if len(rest) == 1 and rest[0] in _GROUP_FILES:
        return Node(NodeKind(rest[0]), group)
    if abmc and rest == ["mbm_L3_assignments"]:
        return Node(NodeKind.ASSIGNMENTS, group)
    if rest[0] == "mon_data":
        return _resolve_mon_data(group, rest[1:], topo)
    raise _enoent()


def _resolve_info(rest: list[str], topo: Topology, abmc: bool) -> Node:
    if not rest:
        return Node(NodeKind.INFO_DIR)
    if topo.packages and rest[:1] == ["PERF_PKG_MON"]:
        if len(rest) == 1:
            return Node(NodeKind.PKG_MON_DIR)
        if len(rest) == 2 and rest[1] in PKG_INFO_FILES:
            return Node(NodeKind.PKG_INFO_FILE, name=rest[1])
        raise _enoent()
    if rest == ["last_cmd_status"]:
        return Node(NodeKind.INFO_FILE, name="last_cmd_status")
    if rest == ["L3_MON"]:
        return Node(NodeKind.L3_MON_DIR)
    if len(rest) == 2 and rest[0] == "L3_MON" and rest[1] in INFO_FILES:
        return Node(NodeKind.INFO_FILE, name=rest[1])
    if abmc and len(rest) == 2 and rest[0] == "L3_MON" and rest[1] in ABMC_INFO_FILES:
        return Node(NodeKind.INFO_FILE, name=rest[1])
    raise _enoent()


def _resolve_mon_data(group: Group, rest: list[str], topo: Topology) -> Node:
    if not rest:
        return Node(NodeKind.MON_DATA_DIR, group)
    packages = {topo.package_dir(p): p for p in topo.packages}
    if rest[0] in packages:
        if len(rest) == 1:
            return Node(NodeKind.PKG_DIR, group, packages[rest[0]])
        if len(rest) == 2 and rest[1] in AET_EVENTS:
            return Node(NodeKind.PKG_COUNTER, group, packages[rest[0]], name=rest[1])
        raise _enoent()
    domains = {topo.domain_dir(d): d for d in topo.domains}
    if rest[0] not in domains:
        raise _enoent()
    domain, sub = domains[rest[0]], None
    if len(rest) >= 2 and rest[1] not in topo.events:
        subs = {topo.sub_dir(s): s for s in topo.sub_nodes(domain)}
        if rest[1] not in subs:
            raise _enoent()
        sub, rest = subs[rest[1]], rest[1:]
    if len(rest) == 1:
        kind = NodeKind.DOMAIN_DIR if sub is None else NodeKind.SUB_DIR
        return Node(kind, group, domain, sub)
    if len(rest) == 2 and rest[1] in topo.events:
        return Node(NodeKind.COUNTER, group, domain, sub, rest[1])
    raise _enoent()


def entries(
    node: Node, root: Group, classes: Mapping[str, Group], topo: Topology, abmc: bool
) -> list[str]:
    """Names in the directory at ``node`` (without ``.`` and ``..``).

    Raises:
        OSError: ``ENOTDIR`` when ``node`` is a file.
    """
    kind = node.kind
    if kind is NodeKind.GROUP_DIR:
        assert node.group is not None
        files = [*_GROUP_FILES, *(["mbm_L3_assignments"] if abmc else [])]
        if node.group is root:
            return ["info", "mon_groups", *sorted(classes), "mon_data", *files]
        extra = ["mon_groups"] if node.group.ctrl is None else []
        return [*extra, "mon_data", *files]
    if kind is NodeKind.MON_GROUPS_DIR:
        assert node.group is not None
        return sorted(node.group.children)
    if kind is NodeKind.MON_DATA_DIR:
        return [
            *(topo.domain_dir(d) for d in topo.domains),
            *(topo.package_dir(p) for p in topo.packages),
        ]
    if kind is NodeKind.DOMAIN_DIR:
        assert node.domain is not None
        return [*topo.events, *(topo.sub_dir(s) for s in topo.sub_nodes(node.domain))]
    if kind is NodeKind.SUB_DIR:
        return list(topo.events)
    if kind is NodeKind.PKG_DIR:
        return list(AET_EVENTS)
    if kind is NodeKind.INFO_DIR:
        return ["L3_MON", *(["PERF_PKG_MON"] if topo.packages else []), "last_cmd_status"]
    if kind is NodeKind.L3_MON_DIR:
        return [*INFO_FILES, *(ABMC_INFO_FILES if abmc else ())]
    if kind is NodeKind.PKG_MON_DIR:
        return list(PKG_INFO_FILES)
    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))


def cpu_files(kind: NodeKind, cpus: int, every: bool) -> str:
    """Content of ``cpus`` (kernel ``%*pb``: hex, 32-bit words joined by commas, as wide
    as ``cpus`` needs) or ``cpus_list`` (``%*pbl``: ranges) for all CPUs or none."""
    if kind is NodeKind.CPUS_LIST:
        return ("0" if cpus == 1 else f"0-{cpus - 1}") + "\n" if every else "\n"
    digits = f"{(1 << cpus) - 1 if every else 0:0{(cpus + 3) // 4}x}"
    words = []
    while digits:
        words.append(digits[-8:])
        digits = digits[:-8]
    return ",".join(reversed(words)) + "\n"
