"""The reconciler machine's kernel over the FUSE resctrl emulation, with real threads.

:class:`FuseKernel` is a :class:`~tests.stateful.test_reconciler_machine.FakeKernel`
whose :class:`~resctrl_pipeline.resctrl.ops.ResctrlOps` methods *are*
:class:`~resctrl_pipeline.resctrl.ops.OsResctrlOps` (it only counts their
successes): the reconciler does the syscalls it does on a node, on a mounted
:class:`~resctrl_pipeline.emulator.resctrlfs.EmulatedResctrl`. The controls:

=====================  ==================================================================
machine                here
=====================  ==================================================================
``start_thread(g)``    a real idle thread of this process; its TID is what the machine's
                       cgroups list and the reconciler writes. With ``g`` it is placed
                       there through the tree's own API (no FUSE request, no fault)
``exit(tid)``          the thread really ends; returns once ``/proc/<tid>`` is gone, so
                       the emulator answers a later write of it with ``ESRCH``
``groups``,            ``tree.groups()`` / ``tree.group_of()`` (checked against
``group_of``           ``/proc``)
``num_rmids = n``      ``tree.set_num_rmids(n)``
``drain_limbo()``      ``tree.release_limbo()``; ``limbo_seconds`` is practically
                       infinite, so limbo ends only when the machine says so
``free_rmids()``       RMIDs below the limit held by no group and not in limbo (the
                       emulator's free list is exactly that set)
``fail(op, errno)``    ``tree.fail_next(point, errno)``: the FUSE server raises it, the
                       errno comes back through the syscall
``mutations``          successful mkdir, rmdir and TID writes through the ResctrlOps
                       methods (what the machine's replay check compares)
=====================  ==================================================================

Approximations (the rest is the emulator's, see ``docs/emulator.md``):

* **Inheritance.** On the kernel a thread starts in its creator's group. The machine
  decides a new thread's group (its parent's, or the root for an exec'd process) and
  the adapter places it; every thread belongs to the test process, whose leader is
  never placed, so the emulator's own inheritance rule never adopts one. The
  reconciler only ever sees TIDs, so one process standing in for all containers'
  processes changes nothing it reads.
* **Faults** fire only on requests that reach the FUSE server. The VFS answers
  ``mkdir`` of an existing name (``EEXIST``) and ``rmdir``/``open`` of a missing one
  (``ENOENT``) itself, so a pending fault waits for the next request that gets
  through, where the memory kernel spends it at once. The machine only compares
  pending faults before and after a step, so this is the same contract.
* **RMID exhaustion** follows the emulator: ``EBUSY`` while a limbo RMID below the
  limit exists, ``ENOSPC`` otherwise (the memory kernel: ``EBUSY`` while any is in
  limbo). The reconciler treats both alike.
* **TIDs** are never handed out twice by one kernel: a TID reused after a PID wrap
  is parked (kept alive, unused) and another thread started.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl
from resctrl_pipeline.emulator.resctrltree import ROOT, FaultPoint
from resctrl_pipeline.resctrl.ops import OsResctrlOps
from tests.support import poll_until

__all__ = ["FuseKernel", "RealThread"]

LIMBO_FOREVER = 1e9
"""``limbo_seconds``: a released RMID leaves limbo only through ``release_limbo``."""

TIMEOUT = 10.0
"""Seconds to wait for a thread to start or vanish from ``/proc``."""

POINTS: dict[str, FaultPoint] = {
    "mkdir": "mkdir",
    "rmdir": "rmdir",
    "list_groups": "readdir",
    "read_tasks": "read_tasks",
    "write_tid": "write_tasks",
}
"""ResctrlOps method -> the FUSE request its syscall becomes (where faults fire)."""


class RealThread:
    """A live, idle thread of this process, until :meth:`end`."""

    def __init__(self) -> None:
        self._end = threading.Event()
        started = threading.Event()
        box: list[int] = []

        def run() -> None:
            box.append(threading.get_native_id())
            started.set()
            self._end.wait()

        self._thread = threading.Thread(target=run, name="rp-machine-thread", daemon=True)
        self._thread.start()
        if not started.wait(TIMEOUT):
            raise RuntimeError("a thread did not start")
        self.tid = box[0]

    def signal_end(self) -> None:
        """Let the thread return (:meth:`wait_gone` waits for it)."""
        self._end.set()

    def wait_gone(self) -> None:
        """Wait until the thread has returned and ``/proc/<tid>`` is gone."""
        self._thread.join(TIMEOUT)
        # join() returns before the OS thread is released; poll /proc for that.
        poll_until(
            lambda: not os.path.exists(f"/proc/{self.tid}"), TIMEOUT, 0.001, f"TID {self.tid} gone"
        )

    def end(self) -> None:
        """End the thread; returns once ``/proc/<tid>`` no longer exists."""
        self.signal_end()
        self.wait_gone()


class FuseKernel(OsResctrlOps):
    """A mounted :class:`EmulatedResctrl` and a pool of real threads; see the module doc.

    Args:
        mountpoint: where to mount (created when missing).
        num_rmids: RMIDs including the root group's.

    Raises:
        RuntimeError, TimeoutError: the mount failed (see :meth:`EmulatedResctrl.start`).
    """

    def __init__(self, mountpoint: str, num_rmids: int = 8) -> None:
        self.fs = EmulatedResctrl(mountpoint, num_rmids=num_rmids, limbo_seconds=LIMBO_FOREVER)
        self.fs.start()
        super().__init__(self.fs.mountpoint)
        self.tree = self.fs.tree
        self._num_rmids = num_rmids
        self._mutations = 0
        self._threads: dict[int, RealThread] = {}
        self._parked: list[RealThread] = []
        self.issued: set[int] = set()  # every TID handed out, ended or not

    # -- ResctrlOps: OsResctrlOps, counting what changed --------------------------------

    def mkdir(self, name: str) -> None:
        super().mkdir(name)
        self._mutations += 1

    def rmdir(self, name: str) -> None:
        super().rmdir(name)
        self._mutations += 1

    def write_tid(self, name: str, tid: int) -> None:
        super().write_tid(name, tid)
        self._mutations += 1

    # -- FakeKernel controls -----------------------------------------------------------

    @property
    def num_rmids(self) -> int:
        return self._num_rmids

    @num_rmids.setter
    def num_rmids(self, value: int) -> None:
        self.tree.set_num_rmids(value)
        self._num_rmids = value

    @property
    def mutations(self) -> int:
        return self._mutations

    @property
    def faults(self) -> Mapping[str, list[int]]:
        pending = self.tree.pending_faults()
        return {op: pending[point] for op, point in POINTS.items() if point in pending}

    @property
    def groups(self) -> dict[str, set[int]]:
        return {name: set(info.tids) for name, info in self.tree.groups().items()}

    def start_thread(self, group: str | None = None) -> int:
        thread = RealThread()
        while thread.tid in self.issued:
            self._parked.append(thread)
            thread = RealThread()
        self.issued.add(thread.tid)
        self._threads[thread.tid] = thread
        if group is not None:
            tasks = self.tree.resolve(f"/mon_groups/{group}/tasks")
            self.tree.write(tasks, str(thread.tid).encode(), threading.get_native_id())
        return thread.tid

    def exit(self, tid: int) -> None:
        thread = self._threads.pop(tid, None)
        if thread is not None:  # exiting twice is a no-op, as in the memory kernel
            thread.end()

    def group_of(self, tid: int) -> str | None:
        name = self.tree.group_of(tid)
        return None if name == ROOT else name

    def drain_limbo(self) -> None:
        self.tree.release_limbo()

    def free_rmids(self) -> int:
        taken = {info.rmid for info in self.tree.groups().values()}
        taken.update(self.tree.limbo_rmids())
        return sum(rmid not in taken for rmid in range(1, self._num_rmids))

    def fail(self, op: str, code: int, times: int = 1) -> None:
        self.tree.fail_next(POINTS[op], code, times)

    def close(self) -> None:
        """Unmount and end every thread; idempotent.

        Descriptors this process still holds on the mount are closed first (the
        object is not used afterwards): a descriptor OsResctrlOps keeps open would
        make the unmount busy, and a lazy unmount's server thread would wait for it.
        """
        self._close_descriptors_on_mount()
        try:
            self.fs.stop()
        finally:
            threads = [*self._threads.values(), *self._parked]
            self._threads, self._parked = {}, []
            for thread in threads:
                thread.signal_end()
            for thread in threads:
                thread.wait_gone()

    def _close_descriptors_on_mount(self) -> None:
        inside = self.root + os.sep
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # closed meanwhile (e.g. the listing's own descriptor)
            if target.startswith(inside):
                os.close(int(fd))
