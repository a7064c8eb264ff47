"""The resctrl seam: the raw kernel operations the reconciler needs, and the os one.

:class:`ResctrlOps` is the handful of operations on monitoring groups (mkdir, rmdir,
list ``mon_groups``, read ``tasks``, write one TID, read an ``info/`` file, counter
assignments, and the CTRL_MON groups ("classes") and their threads); they raise plain
:class:`OSError`, classified by :mod:`resctrl_pipeline.resctrl.errnos`.
:class:`OsResctrlOps` implements them with os calls on a root path (the kernel or a
FUSE emulation). The seam takes group *names*, never paths: ``<name>`` is
``mon_groups/<name>`` of the root, ``<ctrl>/<name>`` is ``<ctrl>/mon_groups/<name>`` of
CTRL_MON group ``<ctrl>`` (the emulator's test-side naming too). Nothing built on it
can create, change or remove a CTRL_MON group: their ``tasks`` are only read.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

from resctrl_pipeline.pseudofile import read_all

__all__ = ["OsResctrlOps", "ResctrlOps", "split_name"]

_NOT_CLASSES = frozenset({"info", "mon_groups", "mon_data"})


def split_name(name: str) -> tuple[str, str]:
    """``"gold/pod_x"`` → ``("gold", "pod_x")``; ``"pod_x"`` → ``("", "pod_x")``.

    Raises:
        ValueError: not one or two plain path components.
    """
    ctrl, slash, leaf = name.rpartition("/")
    for part in (leaf, ctrl) if slash else (leaf,):
        if not part or part in (".", "..") or "/" in part or "\x00" in part or "\n" in part:
            raise ValueError(f"not a monitoring group name: {name[:80]!r}")
    return ctrl, leaf


class ResctrlOps(Protocol):
    """Raw resctrl operations on monitoring groups; errors are plain :class:`OSError`.

    ``name`` is ``<name>`` (below the root's ``mon_groups/``) or ``<ctrl>/<name>``
    (below CTRL_MON group ``<ctrl>``'s); see :func:`split_name`.
    """

    @property
    def root(self) -> str:
        """Absolute path of the resctrl mount (or its stand-in)."""
        ...

    def mkdir(self, name: str) -> None:
        """Create ``mon_groups/<name>`` (the kernel allocates an RMID)."""
        ...

    def rmdir(self, name: str) -> None:
        """Remove ``mon_groups/<name>`` (its tasks return to the parent group)."""
        ...

    def list_groups(self, ctrl: str = "") -> list[str]:
        """Names of the entries of ``mon_groups/`` (of CTRL_MON group ``ctrl``)."""
        ...

    def list_classes(self) -> list[str]:
        """Names of the CTRL_MON groups besides the root (directories with ``mon_groups``)."""
        ...

    def read_class_tasks(self, ctrl: str) -> str:
        """Contents of ``<ctrl>/tasks``: every thread with that CTRL_MON group's CLOSID."""
        ...

    def read_tasks(self, name: str) -> str:
        """Contents of ``mon_groups/<name>/tasks``."""
        ...

    def write_tid(self, name: str, tid: int) -> None:
        """Move one thread into the group: a single write() to its ``tasks``."""
        ...

    def read_info(self, relpath: str) -> str:
        """Contents of ``info/<relpath>``."""
        ...

    def read_assignments(self, name: str) -> str:
        """Contents of ``mon_groups/<name>/mbm_L3_assignments`` (ABMC)."""
        ...

    def write_assignments(self, name: str, text: str) -> None:
        """One write() of ``text`` to ``mon_groups/<name>/mbm_L3_assignments``."""
        ...


class OsResctrlOps:
    """:class:`ResctrlOps` with os calls below ``root`` (kernel or FUSE mount).

    The ``tasks`` file written last stays open: the reconciler writes a pod's threads
    in a row, and opening and closing the file around every id cost twice the write
    itself (on a FUSE mount several round trips more). The descriptor is closed when
    its group is removed or created through this object, or another group is written;
    one whose group vanished behind our back (ENODEV, as kernfs answers) is reopened
    once, so a vanished group still surfaces as ENOENT.
    """

    _TASKS_FLAGS = os.O_WRONLY | os.O_CLOEXEC

    def __init__(self, root: str) -> None:
        self._root = os.path.abspath(root)
        self._mon = os.path.join(self._root, "mon_groups")
        self._tasks_fd: tuple[str, int] | None = None

    @property
    def root(self) -> str:
        return self._root

    def _dir(self, name: str) -> str:
        """The directory of group ``name`` (see :func:`split_name`)."""
        ctrl, leaf = split_name(name)
        if not ctrl:
            return os.path.join(self._mon, leaf)
        return os.path.join(self._root, ctrl, "mon_groups", leaf)

    def mkdir(self, name: str) -> None:
        self._forget_tasks_fd(name)
        os.mkdir(self._dir(name))

    def rmdir(self, name: str) -> None:
        self._forget_tasks_fd(name)
        os.rmdir(self._dir(name))

    def list_groups(self, ctrl: str = "") -> list[str]:
        if not ctrl:
            return os.listdir(self._mon)
        split_name(ctrl)
        return os.listdir(os.path.join(self._root, ctrl, "mon_groups"))

    def list_classes(self) -> list[str]:
        return sorted(
            entry.name
            for entry in os.scandir(self._root)
            if entry.name not in _NOT_CLASSES
            and not entry.name.startswith(".")
            and entry.is_dir(follow_symlinks=False)
            and os.path.isdir(os.path.join(entry.path, "mon_groups"))
        )

    def read_class_tasks(self, ctrl: str) -> str:
        split_name(ctrl)
        path = os.path.join(self._root, ctrl, "tasks")
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def read_tasks(self, name: str) -> str:
        # Decoding never fails: junk lines are skipped by the parser, not fatal.
        return read_all(f"{self._dir(name)}/tasks").decode("utf-8", "replace")

    def write_tid(self, name: str, tid: int) -> None:
        # One os.write per id: a buffered writer could merge ids into one write(),
        # which older kernels and the emulator reject as a whole.
        data = self._tid_bytes(tid)
        try:
            os.write(self._open_tasks(name), data)
        except OSError as err:
            if err.errno not in (errno.ENODEV, errno.EBADF):
                raise
            self._forget_tasks_fd(name)  # a stale descriptor: the group was replaced
            os.write(self._open_tasks(name), data)

    def read_info(self, relpath: str) -> str:
        with open(os.path.join(self._root, "info", relpath), encoding="utf-8") as f:
            return f.read()

    def read_assignments(self, name: str) -> str:
        path = os.path.join(self._dir(name), "mbm_L3_assignments")
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096)

    def write_assignments(self, name: str, text: str) -> None:
        # No O_CREAT: a group without the file (no ABMC, or vanished) fails with ENOENT.
        path = os.path.join(self._dir(name), "mbm_L3_assignments")
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)

    @staticmethod
    def _tid_bytes(tid: int) -> bytes:
        return str(tid).encode()

    def _open_tasks(self, name: str) -> int:
        """The open ``tasks`` descriptor of group ``name`` (opened when needed)."""
        cached = self._tasks_fd
        if cached is not None and cached[0] == name:
            return cached[1]
        self._forget_tasks_fd()
        # No O_CREAT: a missing tasks file must fail with ENOENT like a vanished group.
        fd = os.open(os.path.join(self._dir(name), "tasks"), self._TASKS_FLAGS)
        self._tasks_fd = (name, fd)
        return fd

    def close(self) -> None:
        """Close the cached ``tasks`` descriptor (the object stays usable)."""
        self._forget_tasks_fd()

    def _forget_tasks_fd(self, name: str | None = None) -> None:
        """Close the cached descriptor (only if it is group ``name``'s, when given)."""
        cached = self._tasks_fd
        if cached is not None and (name is None or cached[0] == name):
            self._tasks_fd = None
            os.close(cached[1])
