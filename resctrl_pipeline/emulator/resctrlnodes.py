"""The names in an emulated resctrl tree: what each path is, and what a directory holds.

Pure functions over the tree's groups and :class:`~.topology.Topology`; the owner
(:class:`~.resctrltree.ResctrlTree`) calls them under its lock. Layout::

    tasks  cpus  cpus_list  mon_data/...  info/...  mon_groups/<name>/...
    info/last_cmd_status   info/L3_MON/{num_rmids,mon_features,max_threshold_occupancy}
    mon_data/mon_L3_XX/<event>   mon_data/mon_L3_XX/mon_sub_L3_YY/<event>  (SNC only)

Monitoring groups (``mon_groups/<name>``) have ``tasks``, ``cpus``, ``cpus_list`` and
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

from resctrl_pipeline.emulator.topology import Topology

__all__ = [
    "INFO_FILES",
    "CounterValue",
    "Group",
    "Node",
    "NodeKind",
    "cpu_files",
    "entries",
    "resolve",
]

CounterValue = int | Literal["Unavailable", "Error"]
"""What a counter file can show: bytes, or one of the kernel's two failure words."""

INFO_FILES = ("max_threshold_occupancy", "mon_features", "num_rmids")
"""Files in ``info/L3_MON``."""

_GROUP_FILES = ("tasks", "cpus", "cpus_list")


class NodeKind(Enum):
    """Kinds of entries in the tree."""

    GROUP_DIR = "group"
    MON_GROUPS_DIR = "mon_groups"
    MON_DATA_DIR = "mon_data"
    DOMAIN_DIR = "mon_L3"
    SUB_DIR = "mon_sub_L3"
    INFO_DIR = "info"
    L3_MON_DIR = "L3_MON"
    TASKS = "tasks"
    CPUS = "cpus"
    CPUS_LIST = "cpus_list"
    COUNTER = "counter"
    INFO_FILE = "info_file"


_DIRS = {
    NodeKind.GROUP_DIR,
    NodeKind.MON_GROUPS_DIR,
    NodeKind.MON_DATA_DIR,
    NodeKind.DOMAIN_DIR,
    NodeKind.SUB_DIR,
    NodeKind.INFO_DIR,
    NodeKind.L3_MON_DIR,
}
_WRITABLE = {NodeKind.TASKS, NodeKind.CPUS, NodeKind.CPUS_LIST}


class Group:
    """A resctrl group. Identity matters: a re-created name is a different group.

    ``overrides`` pins counter files: (event, domain, SNC node or None) → value.
    """

    __slots__ = ("created_ns", "name", "overrides", "removed", "rmid")

    def __init__(self, name: str, rmid: int) -> None:
        self.name = name
        self.rmid = rmid
        self.removed = False
        self.created_ns = time.time_ns()
        self.overrides: dict[tuple[str, int, int | None], CounterValue] = {}


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
        return self.kind in _WRITABLE

    @property
    def created_ns(self) -> int:
        """Creation time of the owning group (ns since the epoch), for ``stat``."""
        return self.group.created_ns if self.group is not None else 0


def _enoent() -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT))


def resolve(parts: list[str], root: Group, groups: Mapping[str, Group], topo: Topology) -> Node:
    """The node at a path given as its components (``[]`` is the mount root).

    Raises:
        OSError: ``ENOENT`` when nothing is there.
    """
    if parts[:1] == ["info"]:
        return _resolve_info(parts[1:])
    group, rest = root, parts
    if parts[:1] == ["mon_groups"]:
        if len(parts) == 1:
            return Node(NodeKind.MON_GROUPS_DIR, root)
        if parts[1] not in groups:
            raise _enoent()
        group, rest = groups[parts[1]], parts[2:]
    if not rest:
        return Node(NodeKind.GROUP_DIR, group)
    if len(rest) == 1 and rest[0] in _GROUP_FILES:
        return Node(NodeKind(rest[0]), group)
    if rest[0] == "mon_data":
        return _resolve_mon_data(group, rest[1:], topo)
    raise _enoent()


def _resolve_info(rest: list[str]) -> Node:
    if not rest:
        return Node(NodeKind.INFO_DIR)
    if rest == ["last_cmd_status"]:
        return Node(NodeKind.INFO_FILE, name="last_cmd_status")
    if rest == ["L3_MON"]:
        return Node(NodeKind.L3_MON_DIR)
    if len(rest) == 2 and rest[0] == "L3_MON" and rest[1] in INFO_FILES:
        return Node(NodeKind.INFO_FILE, name=rest[1])
    raise _enoent()


def _resolve_mon_data(group: Group, rest: list[str], topo: Topology) -> Node:
    if not rest:
        return Node(NodeKind.MON_DATA_DIR, group)
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


def entries(node: Node, root: Group, groups: Mapping[str, Group], topo: Topology) -> list[str]:
    """Names in the directory at ``node`` (without ``.`` and ``..``).

    Raises:
        OSError: ``ENOTDIR`` when ``node`` is a file.
    """
    kind = node.kind
    if kind is NodeKind.GROUP_DIR:
        extra = ["info", "mon_groups"] if node.group is root else []
        return [*extra, "mon_data", *_GROUP_FILES]
    if kind is NodeKind.MON_GROUPS_DIR:
        return sorted(groups)
    if kind is NodeKind.MON_DATA_DIR:
        return [topo.domain_dir(d) for d in topo.domains]
    if kind is NodeKind.DOMAIN_DIR:
        assert node.domain is not None
        return [*topo.events, *(topo.sub_dir(s) for s in topo.sub_nodes(node.domain))]
    if kind is NodeKind.SUB_DIR:
        return list(topo.events)
    if kind is NodeKind.INFO_DIR:
        return ["L3_MON", "last_cmd_status"]
    if kind is NodeKind.L3_MON_DIR:
        return list(INFO_FILES)
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
