"""The resctrl write side: monitoring groups under ``<root>/mon_groups`` and their tasks.

Two layers:

* :class:`ResctrlOps` is the seam: the handful of raw kernel operations the
  reconciler needs (mkdir, rmdir, list ``mon_groups``, read ``tasks``, write one TID,
  read an ``info/`` file). They raise plain :class:`OSError`. Implementations:
  :class:`OsResctrlOps` (os calls on a root path: the kernel or a FUSE emulation),
  :class:`PlainDirResctrlOps` (the same on an ordinary directory, emulating the two
  things a plain directory cannot do, for benchmarks) and :class:`MemoryResctrlOps`
  (in memory, with kernel semantics and fault injection, for fast property tests).
* :class:`ResctrlGroups` turns errnos into outcomes and state-named exceptions, in one
  place for every implementation. See ``docs/reconciler.md`` for the errno table.

The seam takes group *names*, never paths: nothing built on it can reach outside
``mon_groups/``, and root-level control groups are out of its reach.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import NoReturn, Protocol

from resctrl_pipeline.errors import PipelineError, ResctrlUnavailable
from resctrl_pipeline.podid import group_name

__all__ = [
    "GroupVanished",
    "MemoryResctrlOps",
    "NoFreeRmid",
    "OsResctrlOps",
    "PermissionProblem",
    "PlainDirResctrlOps",
    "ResctrlGroups",
    "ResctrlOps",
    "ResctrlWriteError",
    "RmidUnavailable",
    "RmidsInLimbo",
    "TaskRefused",
    "place_init_pid",
]


class ResctrlWriteError(PipelineError):
    """A resctrl operation failed; ``errno`` and ``path`` say how and where."""

    def __init__(self, message: str, path: str, err: int | None) -> None:
        self.path = path
        self.errno = err
        super().__init__(f"{message}: {path}")


class PermissionProblem(ResctrlWriteError):
    """EACCES/EPERM: the agent lacks a privilege (a node-level problem, not a race)."""


class RmidUnavailable(ResctrlWriteError):
    """The kernel has no RMID to give to a new monitoring group right now."""


class NoFreeRmid(RmidUnavailable):
    """mkdir ENOSPC: every RMID is in use (capacity is ``info/L3_MON/num_rmids``)."""


class RmidsInLimbo(RmidUnavailable):
    """mkdir EBUSY: the only free RMIDs still hold cache lines of deleted groups.

    The kernel frees them once their occupancy decays (re-checked every second).
    """


class GroupVanished(ResctrlWriteError):
    """ENOENT on a group's ``tasks``: the group was removed behind our back."""


class TaskRefused(ResctrlWriteError):
    """EINVAL on a ``tasks`` write; ``status`` is the kernel's reason.

    Typically the thread sits in another control group (a MON group only accepts
    threads of its parent CTRL_MON group).
    """

    def __init__(self, path: str, tid: int, status: str) -> None:
        self.tid = tid
        self.status = status
        super().__init__(f"kernel refused tid {tid} ({status or 'no status'})", path, errno.EINVAL)


class ResctrlOps(Protocol):
    """Raw resctrl operations on monitoring groups; errors are plain :class:`OSError`.

    ``name`` is always a single path component below ``mon_groups/``.
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

    def list_groups(self) -> list[str]:
        """Names of the entries of ``mon_groups/``."""
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

    def mkdir(self, name: str) -> None:
        self._forget_tasks_fd(name)
        os.mkdir(os.path.join(self._mon, name))

    def rmdir(self, name: str) -> None:
        self._forget_tasks_fd(name)
        os.rmdir(os.path.join(self._mon, name))

    def list_groups(self) -> list[str]:
        return os.listdir(self._mon)

    def read_tasks(self, name: str) -> str:
        # Decoding never fails: junk lines are skipped by the parser, not fatal.
        with open(os.path.join(self._mon, name, "tasks"), encoding="utf-8", errors="replace") as f:
            return f.read()

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
        fd = os.open(os.path.join(self._mon, name, "tasks"), self._TASKS_FLAGS)
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


class PlainDirResctrlOps(OsResctrlOps):
    """:class:`OsResctrlOps` on an ordinary directory (benchmarks, fixture trees).

    Emulates what a plain directory cannot: mkdir creates ``tasks``, rmdir works on a
    populated group, a written id is appended as a line instead of overwriting, and a
    write through the descriptor of a removed group fails with ENODEV as on kernfs.
    """

    _TASKS_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_APPEND

    def mkdir(self, name: str) -> None:
        super().mkdir(name)
        with open(os.path.join(self._mon, name, "tasks"), "x", encoding="ascii"):
            pass

    def rmdir(self, name: str) -> None:
        self._forget_tasks_fd(name)
        shutil.rmtree(os.path.join(self._mon, name))

    @staticmethod
    def _tid_bytes(tid: int) -> bytes:
        return f"{tid}\n".encode()

    def _open_tasks(self, name: str) -> int:
        fd = super()._open_tasks(name)
        if os.fstat(fd).st_nlink == 0:  # removed behind our back: what kernfs says
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), name)
        return fd


_PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM)


class ResctrlGroups:
    """Monitoring groups below ``<root>/mon_groups`` with every errno classified.

    Args:
        ops: the raw operations (see :class:`ResctrlOps`).
    """

    def __init__(self, ops: ResctrlOps) -> None:
        self.ops = ops

    @property
    def root(self) -> str:
        """Absolute path of the resctrl root."""
        return self.ops.root

    def path(self, name: str) -> str:
        """Absolute path of group ``name`` (what GroupState and Parquet carry)."""
        return f"{self.ops.root.rstrip('/')}/mon_groups/{name}"

    def create(self, name: str) -> bool:
        """Create group ``name`` unless it exists.

        Returns:
            True if this call created it, False if it already existed (EEXIST).

        Raises:
            NoFreeRmid: ENOSPC. RmidsInLimbo: EBUSY. PermissionProblem: EACCES/EPERM.
            ResctrlUnavailable: ENOENT (no ``mon_groups``: monitoring not usable).
            ResctrlWriteError: any other errno.
        """
        try:
            self.ops.mkdir(name)
        except FileExistsError:
            return False
        except OSError as err:
            # Only mkdir allocates an RMID, so only here do these two errnos mean that.
            if err.errno == errno.ENOSPC:
                raise NoFreeRmid("no free RMID", self.path(name), err.errno) from err
            if err.errno == errno.EBUSY:
                raise RmidsInLimbo("free RMIDs still in limbo", self.path(name), err.errno) from err
            self._raise_for(err, "cannot create monitoring group", name, root_missing=True)
        return True

    def remove(self, name: str) -> bool:
        """Remove group ``name``; its threads fall back to the root group.

        Returns:
            True if removed, False if it was already gone (ENOENT).

        Raises:
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        try:
            self.ops.rmdir(name)
        except FileNotFoundError:
            return False
        except OSError as err:
            self._raise_for(err, "cannot remove monitoring group", name)
        return True

    def list_groups(self) -> list[str]:
        """Names of every monitoring group below ``mon_groups/`` (any prefix).

        Raises:
            ResctrlUnavailable: ``mon_groups`` does not exist.
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        try:
            return self.ops.list_groups()
        except OSError as err:
            self._raise_for(err, "cannot list monitoring groups", "", root_missing=True)

    def tasks(self, name: str) -> set[int]:
        """Thread ids currently in group ``name``.

        Lines that are not positive integers are skipped: they cannot name a thread.

        Raises:
            GroupVanished: ENOENT. PermissionProblem: EACCES/EPERM.
            ResctrlWriteError: any other errno.
        """
        try:
            text = self.ops.read_tasks(name)
        except FileNotFoundError as err:
            raise GroupVanished("monitoring group vanished", self.path(name), err.errno) from err
        except OSError as err:
            self._raise_for(err, "cannot read tasks", name)
        words = text.split()
        # On ASCII text str.isdigit means 0-9 only; the per-word check guards the rest.
        digits = filter(str.isdigit, words) if text.isascii() else _ascii_digits(words)
        tids = set(map(int, digits))
        tids.discard(0)
        return tids

    def add_task(self, name: str, tid: int) -> bool:
        """Move thread ``tid`` into group ``name`` with one write.

        Returns:
            True if moved, False if the thread no longer exists (ESRCH, an expected race).

        Raises:
            ValueError: ``tid`` < 1 (the kernel reads 0 as "the writing thread itself").
            GroupVanished: ENOENT; the caller recreates the group.
            TaskRefused: EINVAL, with ``info/last_cmd_status`` attached.
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        if tid < 1:
            raise ValueError(f"not a thread id: {tid}")
        try:
            self.ops.write_tid(name, tid)
        except ProcessLookupError:
            return False
        except FileNotFoundError as err:
            raise GroupVanished("monitoring group vanished", self.path(name), err.errno) from err
        except OSError as err:
            if err.errno == errno.EINVAL:
                raise TaskRefused(self.path(name), tid, self.last_cmd_status()) from err
            self._raise_for(err, f"cannot move tid {tid}", name)
        return True

    def last_cmd_status(self) -> str:
        """The kernel's reason for the last failed command, or "" if unreadable."""
        try:
            return self.ops.read_info("last_cmd_status").strip()
        except OSError:
            # Best effort: it only decorates an error that is being reported anyway.
            return ""

    def num_rmids(self) -> int | None:
        """RMID capacity from ``info/L3_MON/num_rmids`` (root group included).

        Returns:
            The number, or None when the file is missing or unreadable.
        """
        try:
            return int(self.ops.read_info("L3_MON/num_rmids").strip())
        except (OSError, ValueError):
            return None

    def _raise_for(
        self, err: OSError, what: str, name: str, *, root_missing: bool = False
    ) -> NoReturn:
        """Raise the exception for ``err``; ``root_missing``: ENOENT means no mon_groups."""
        path = self.path(name) if name else f"{self.ops.root.rstrip('/')}/mon_groups"
        code = err.errno
        if root_missing and code == errno.ENOENT:
            raise ResctrlUnavailable(f"{path}: mon_groups missing ({err.strerror})") from err
        cls = PermissionProblem if code in _PERMISSION_ERRNOS else ResctrlWriteError
        raise cls(f"{what} ({err.strerror})", path, code) from err


def _ascii_digits(words: list[str]) -> list[str]:
    return [w for w in words if w.isascii() and w.isdigit()]


def place_init_pid(
    root: str, prefix: str, pod_uid: str, pid: int, ops: ResctrlOps | None = None
) -> bool:
    """Put a container's init process into its pod's group (StartContainer fast path).

    Creates the group if missing (idempotent) and writes ``pid`` once. At
    StartContainer the init process has one thread and has not run yet, so every thread
    and child it creates later inherits the group.

    Args:
        root: the resctrl root. prefix: the group prefix (already validated).
        pod_uid: untrusted pod uid. pid: the init process in the host PID namespace.
        ops: raw operations; default :class:`OsResctrlOps` on ``root``.

    Returns:
        True if placed, False if the process already exited (ESRCH).

    Raises:
        InvalidPodUid: the uid is not a plain Kubernetes uid (nothing was touched).
        ValueError: ``pid`` < 1.
        Any error of :meth:`ResctrlGroups.create` and :meth:`ResctrlGroups.add_task`.
    """
    name = group_name(prefix, pod_uid)
    if pid < 1:
        raise ValueError(f"not a process id: {pid}")
    if ops is None:
        # One call per container start: keep no descriptor behind.
        owned = OsResctrlOps(root)
        try:
            return place_init_pid(root, prefix, pod_uid, pid, owned)
        finally:
            owned.close()
    groups = ResctrlGroups(ops)
    groups.create(name)
    return groups.add_task(name, pid)


class MemoryResctrlOps:
    """In-memory :class:`ResctrlOps` with kernel semantics, for fast property tests.

    Models what the reconciler depends on: RMID capacity (``num_rmids`` including the
    root group's, minus ``reserved`` ones held by control groups), limbo after rmdir
    (mkdir gets EBUSY while only limbo RMIDs remain, ENOSPC when none), every live
    thread in exactly one group (None = the root group), ESRCH for dead threads, tasks
    returning to the root on rmdir, and injected errnos per operation.
    """

    def __init__(
        self, root: str = "/sys/fs/resctrl", num_rmids: int = 64, reserved: int = 0
    ) -> None:
        self._root = root
        self.num_rmids = num_rmids
        self.reserved = reserved
        self.limbo = 0
        self.groups: dict[str, set[int]] = {}
        self.threads: dict[int, str | None] = {}
        self.status = "ok"
        self.mutations = 0
        self.faults: dict[str, list[int]] = {}  # op -> errnos still to raise

    # -- test controls ---------------------------------------------------------------

    def spawn(self, tid: int, group: str | None = None) -> None:
        """A thread starts in ``group`` (a fork inherits its creator's group)."""
        self.threads[tid] = group
        if group is not None:
            self.groups[group].add(tid)

    def exit(self, tid: int) -> None:
        """A thread exits and leaves its group."""
        group = self.threads.pop(tid, None)
        if group is not None:
            self.groups[group].discard(tid)

    def group_of(self, tid: int) -> str | None:
        """The group holding a live thread (None: the root group)."""
        return self.threads[tid]

    def drain_limbo(self) -> None:
        """Every limbo RMID becomes free (their occupancy decayed)."""
        self.limbo = 0

    def free_rmids(self) -> int:
        """RMIDs a mkdir could take now."""
        return self.num_rmids - 1 - self.reserved - len(self.groups) - self.limbo

    def fail(self, op: str, code: int, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` (a method name) raise ``code``."""
        self.faults.setdefault(op, []).extend([code] * times)

    # -- ResctrlOps ------------------------------------------------------------------

    @property
    def root(self) -> str:
        return self._root

    def _check(self, op: str, name: str = "") -> None:
        faults = self.faults.get(op)
        if faults:
            code = faults.pop(0)
            if code == errno.EINVAL:
                self.status = "injected failure"
            raise OSError(code, os.strerror(code), name)

    def _error(self, code: int, name: str, status: str = "") -> OSError:
        self.status = status or os.strerror(code)
        return OSError(code, os.strerror(code), name)

    def mkdir(self, name: str) -> None:
        self._check("mkdir", name)
        if name in self.groups:
            raise self._error(errno.EEXIST, name)
        if self.free_rmids() <= 0:
            code = errno.EBUSY if self.limbo else errno.ENOSPC
            raise self._error(code, name, "Out of RMIDs")
        self.groups[name] = set()
        self.mutations += 1

    def rmdir(self, name: str) -> None:
        self._check("rmdir", name)
        if name not in self.groups:
            raise self._error(errno.ENOENT, name)
        for tid in self.groups.pop(name):
            self.threads[tid] = None
        self.limbo += 1
        self.mutations += 1

    def list_groups(self) -> list[str]:
        self._check("list_groups")
        return sorted(self.groups)

    def read_tasks(self, name: str) -> str:
        self._check("read_tasks", name)
        if name not in self.groups:
            raise self._error(errno.ENOENT, name)
        return "".join(f"{tid}\n" for tid in sorted(self.groups[name]))

    def write_tid(self, name: str, tid: int) -> None:
        self._check("write_tid", name)
        if name not in self.groups:
            raise self._error(errno.ENOENT, name)
        if tid not in self.threads:
            raise self._error(errno.ESRCH, name)
        self.exit(tid)
        self.spawn(tid, name)
        self.mutations += 1

    def read_info(self, relpath: str) -> str:
        self._check("read_info", relpath)
        if relpath == "last_cmd_status":
            return self.status + "\n"
        if relpath == "L3_MON/num_rmids":
            return f"{self.num_rmids}\n"
        raise self._error(errno.ENOENT, relpath)
