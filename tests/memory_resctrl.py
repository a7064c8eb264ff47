"""In-memory resctrl with kernel semantics and fault injection, for fast property tests."""

from __future__ import annotations

import errno
import os

__all__ = ["MemoryResctrlOps"]


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
