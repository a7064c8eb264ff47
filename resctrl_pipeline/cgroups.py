"""Container cgroups: where a container's threads are, and which they are.

The reconciler needs, per container, the set of thread ids (TIDs) in its cgroup, and,
per pod, whether the pod's cgroup still exists. This module finds those directories
from what NRI reports and reads them:

* layout: cgroup v2 (``<root>/cgroup.controllers`` exists; threads in
  ``cgroup.threads``) or v1/hybrid (a controller hierarchy such as ``<root>/pids``;
  threads in ``tasks``), detected under the configured cgroup root;
* container path: NRI's ``linux.cgroups_path`` in systemd form
  (``slice:runtime:id`` → ``<expanded slice>/<runtime>-<id>.scope``) or cgroupfs form
  (``/kubepods/besteffort/pod<uid>/<id>``), with a search for the container id below the
  pod's cgroup when the derived directory does not exist;
* systemd slice nesting: ``kubepods-besteffort-pod<uid>.slice`` lives at
  ``kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice``.

Paths from the runtime are untrusted: a path with ``..`` or NUL resolves to nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from resctrl_pipeline.errors import GONE_ERRNOS, PipelineError
from resctrl_pipeline.pseudofile import read_all

__all__ = [
    "V1_HIERARCHIES",
    "CgroupGone",
    "CgroupLayout",
    "CgroupReader",
    "CgroupUnreadable",
    "CgroupView",
    "CgroupsUnavailable",
    "container_relpath",
    "detect_layout",
    "expand_slice",
    "pod_relpaths",
]

V1_HIERARCHIES = ("pids", "cpu", "cpu,cpuacct", "cpuacct", "memory", "systemd")
"""v1 hierarchies searched in this order; runc puts every container in each of them."""

# Where runtimes mount cgroups; stripped from absolute paths they report.
_RUNTIME_MOUNT = "/sys/fs/cgroup"
# Shortest container id the fallback search matches on, so that an id like "1" cannot
# pick a random directory.
_MIN_SEARCH_ID = 12
_SEARCH_DEPTH = 3


class CgroupsUnavailable(PipelineError):
    """No cgroup v2 mount nor v1 hierarchy below the configured cgroup root."""


class CgroupGone(PipelineError):
    """A cgroup directory no longer exists (its container or pod ended)."""


class CgroupUnreadable(PipelineError):
    """A cgroup's thread list could not be read for another reason (EACCES, EIO…)."""


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """How cgroups are laid out below the root.

    ``base`` is the directory the runtime's cgroup paths are relative to (the root on
    v2, a controller hierarchy on v1); ``threads_file`` lists a cgroup's TIDs.
    """

    version: int
    base: str
    threads_file: str


def detect_layout(root: str, hierarchy: str | None = None) -> CgroupLayout:
    """Detect the cgroup layout below ``root``.

    Args:
        root: the cgroup mount root (``cgroup.root``).
        hierarchy: force a v1 hierarchy name; default: the first of
            :data:`V1_HIERARCHIES` that exists.

    Raises:
        CgroupsUnavailable: neither v2 nor a v1 hierarchy was found.
    """
    if hierarchy is None and os.path.exists(os.path.join(root, "cgroup.controllers")):
        return CgroupLayout(2, root, "cgroup.threads")
    for name in (hierarchy,) if hierarchy else V1_HIERARCHIES:
        base = os.path.join(root, name)
        if os.path.exists(os.path.join(base, "tasks")):
            return CgroupLayout(1, base, "tasks")
    raise CgroupsUnavailable(f"no cgroup v2 root nor v1 hierarchy below {root}")


def expand_slice(name: str) -> str:
    """Path of a systemd slice relative to the cgroup root.

    ``a-b-c.slice`` → ``a.slice/a-b.slice/a-b-c.slice``; ``-.slice`` (the root slice)
    → ``""``; anything that is not a bare slice name comes back unchanged.
    """
    if "/" in name or not name.endswith(".slice"):
        return name
    stem = name[: -len(".slice")]
    if stem in ("", "-"):
        return ""
    parts = stem.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def _clean(path: str) -> str | None:
    """Relative form of a runtime cgroup path, or None if it is unsafe."""
    if "\0" in path:
        return None
    if path == _RUNTIME_MOUNT or path.startswith(_RUNTIME_MOUNT + "/"):
        path = path[len(_RUNTIME_MOUNT) :]
    parts = [p for p in path.split("/") if p]
    if ".." in parts or "." in parts:
        return None
    # A v1 path may carry its hierarchy (``/sys/fs/cgroup/pids/kubepods/...``).
    if parts and (parts[0] in V1_HIERARCHIES or parts[0] == "unified"):
        parts = parts[1:]
    return "/".join(parts)


def _parent_relpath(cgroup_parent: str) -> str | None:
    """Relative path of a pod's cgroup parent (slice name or cgroupfs path)."""
    return _clean(expand_slice(cgroup_parent))


def container_relpath(cgroup_path: str, cgroup_parent: str = "") -> str | None:
    """Relative path of a container's cgroup, derived from NRI's data.

    Args:
        cgroup_path: the container's ``linux.cgroups_path``, systemd form
            ``slice:runtime:id`` or a cgroupfs path.
        cgroup_parent: the pod's ``linux.cgroup_parent``; used when the systemd form
            has an empty slice, or for the colon form under a cgroupfs parent.

    Returns:
        The path relative to the layout's base, or None when nothing usable (empty or
        unsafe input).
    """
    parts = cgroup_path.split(":")
    if len(parts) == 3 and "/" not in parts[0]:
        slice_name, runtime, cid = parts
        if not cid or "/" in runtime + cid:
            return None
        parent = slice_name or cgroup_parent
        leaf = f"{runtime}-{cid}.scope" if runtime and parent.endswith(".slice") else cid
        base = _parent_relpath(parent)
        if base is None:
            return None
        return f"{base}/{leaf}" if base else leaf
    rel = _clean(cgroup_path)
    return rel or None


def pod_relpaths(cgroup_parent: str, pod_uid: str) -> list[str]:
    """Candidate relative paths of a pod's cgroup.

    With a ``cgroup_parent`` that is the one path; without, the places kubelet uses for
    each QoS class under both drivers (systemd writes the uid with ``_`` for ``-``).
    ``pod_uid`` must already be validated.
    """
    if cgroup_parent:
        rel = _parent_relpath(cgroup_parent)
        return [rel] if rel else []
    unit = pod_uid.replace("-", "_")
    out = [f"kubepods/pod{pod_uid}", f"kubepods.slice/kubepods-pod{unit}.slice"]
    for qos in ("besteffort", "burstable"):
        out.append(f"kubepods/{qos}/pod{pod_uid}")
        out.append(f"kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{unit}.slice")
    return out


class CgroupView(Protocol):
    """What the reconciler needs from cgroups; directories are opaque strings."""

    def find_pod(self, cgroup_parent: str, pod_uid: str) -> str | None:
        """The pod's existing cgroup directory, or None."""
        ...

    def find_container(
        self, cgroup_path: str, container_id: str, cgroup_parent: str, pod_dir: str | None
    ) -> str | None:
        """The container's existing cgroup directory, or None."""
        ...

    def exists(self, directory: str) -> bool:
        """Whether a directory returned by a ``find_*`` method still exists."""
        ...

    def threads(self, directory: str) -> set[int]:
        """TIDs in the cgroup and its descendants. Raises CgroupGone, CgroupUnreadable."""
        ...


class CgroupReader:
    """:class:`CgroupView` on a real (or fixture) cgroup tree.

    Args:
        root: the cgroup mount root (``cgroup.root``, default ``/sys/fs/cgroup``).
        hierarchy: force a v1 hierarchy; see :func:`detect_layout`.

    Raises:
        CgroupsUnavailable: from :func:`detect_layout`.
    """

    def __init__(self, root: str = _RUNTIME_MOUNT, hierarchy: str | None = None) -> None:
        self.layout = detect_layout(root, hierarchy)

    def _existing(self, rel: str | None) -> str | None:
        if not rel:
            return None
        path = os.path.join(self.layout.base, rel)
        return path if os.path.isdir(path) else None

    def find_pod(self, cgroup_parent: str, pod_uid: str) -> str | None:
        """The pod's cgroup directory, if it exists (see :func:`pod_relpaths`)."""
        for rel in pod_relpaths(cgroup_parent, pod_uid):
            path = self._existing(rel)
            if path:
                return path
        return None

    def find_container(
        self, cgroup_path: str, container_id: str, cgroup_parent: str, pod_dir: str | None
    ) -> str | None:
        """The container's cgroup directory, if it exists.

        Tries the path derived by :func:`container_relpath`; if that does not exist,
        searches ``pod_dir`` (a few levels deep) for a directory whose name holds
        ``container_id`` (ids shorter than 12 characters are not searched for).
        """
        found = self._existing(container_relpath(cgroup_path, cgroup_parent))
        if found or pod_dir is None or len(container_id) < _MIN_SEARCH_ID:
            return found
        level = [pod_dir]
        for _ in range(_SEARCH_DEPTH):
            below: list[str] = []
            for directory in level:
                try:
                    with os.scandir(directory) as entries:
                        subdirs = [e for e in entries if e.is_dir(follow_symlinks=False)]
                except OSError:
                    continue  # vanished while searching: the next pass tries again
                for entry in subdirs:
                    if container_id in entry.name:
                        return entry.path
                    below.append(entry.path)
            level = below
        return None

    def exists(self, directory: str) -> bool:
        """Whether ``directory`` is still there."""
        return os.path.isdir(directory)

    def threads(self, directory: str) -> set[int]:
        """TIDs listed in ``directory`` and every cgroup below it.

        Descendants count because a container may create cgroups of its own (systemd
        or a runtime inside it); on v2 its threads then live only there.

        Raises:
            CgroupGone: ``directory`` went away (any of :data:`GONE_ERRNOS`: on kernfs a
                cgroup removed between ``open`` and ``read`` answers ENODEV).
            CgroupUnreadable: any other OSError.
        """
        tids: set[int] = set()
        pending = [directory]
        while pending:
            current = pending.pop()
            try:
                # A directory's link count is 2 + its subdirectories on cgroupfs (kernfs)
                # and tmpfs: skip listing the usual leaf. Other values (1 on filesystems
                # that do not count) mean "maybe": list it.
                links = os.stat(current).st_nlink
                data = read_all(f"{current}/{self.layout.threads_file}")
                if links != 2:
                    with os.scandir(current) as entries:
                        pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
            except OSError as err:
                if err.errno not in GONE_ERRNOS:
                    raise CgroupUnreadable(f"{current}: {err.strerror}") from err
                if current == directory:
                    raise CgroupGone(directory) from err
                continue  # a child cgroup went away mid-walk: its threads are gone too
            tids.update(map(int, filter(bytes.isdigit, data.split())))
        tids.discard(0)
        return tids
