"""Test cgroups: finding a container's directory and removing what pods left behind.

Only relative paths made by :func:`~.cri.pod_cgroup_parent` (``/kubepods/<qos>/pod<uid>``)
are ever removed, and only with ``rmdir`` (a cgroup with processes cannot be removed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

__all__ = ["cgroup_mounts", "container_cgroup_dirs", "remove_cgroup_tree"]

# At most two components below /kubepods; none starts with a dot (so never "..").
_SAFE_REL: Final = re.compile(r"/kubepods(/[A-Za-z0-9_-][A-Za-z0-9_.-]*){0,2}")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    mounts = []
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(_unescape(left.split(" ")[4])))
    return mounts


def container_cgroup_dirs(cgroups_path: str) -> list[Path]:
    """Existing directories of a cgroupfs-driver ``cgroups_path`` in every hierarchy."""
    rel = cgroups_path.lstrip("/")
    return [m / rel for m in cgroup_mounts() if (m / rel).is_dir()]


def remove_cgroup_tree(rel: str, *, keep_top: bool = False) -> list[Path]:
    """``rmdir`` ``rel`` and everything below it in every hierarchy, deepest first.

    Args:
        rel: a path such as ``/kubepods/besteffort/pod<uid>`` or ``/kubepods``.
        keep_top: remove only what is below ``rel``.

    Returns the directories that could not be removed (busy or not empty).

    Raises:
        ValueError: ``rel`` is not a harness cgroup path.
    """
    if not _SAFE_REL.fullmatch(rel):
        raise ValueError(f"refusing to remove cgroup {rel!r}")
    left: list[Path] = []
    for mount in cgroup_mounts():
        top = mount / rel.lstrip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            path = Path(dirpath)
            if keep_top and path == top:
                continue
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left.append(path)
    return left
