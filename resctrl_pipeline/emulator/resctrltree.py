"""The emulated resctrl tree: groups, files and their kernel semantics, without FUSE.

:class:`ResctrlTree` answers path-level operations (resolve, list, read, write, mkdir,
rmdir) the way the kernel's resctrl filesystem does, raising :class:`OSError` with
the kernel's errno; :mod:`.resctrlfs` only adapts it to FUSE. Layout served::

    tasks  cpus  cpus_list                  (root = the default CTRL_MON group)
    info/last_cmd_status
    info/L3_MON/{num_rmids,mon_features,max_threshold_occupancy}
    mon_data/mon_L3_XX/{llc_occupancy,mbm_total_bytes,mbm_local_bytes}
    mon_data/mon_L3_XX/mon_sub_L3_YY/{...}  (sub-NUMA clustering only)
    mon_groups/<name>/{tasks,cpus,cpus_list,mon_data/...}

Semantics (kernel ``fs/resctrl/rdtgroup.c``): mkdir only in ``mon_groups/``
(elsewhere ``EPERM``: control groups, which need cache allocation, are not
emulated); an RMID per group (``ENOSPC`` when none is left, ``EBUSY`` while released
ones are in limbo); rmdir moves the group's threads back to the default group; one
TID per write to ``tasks`` (``EINVAL`` for anything else, ``ESRCH`` when
``/proc/<tid>`` is absent, with the reason in ``info/last_cmd_status``); the root's
counters are its own plus its monitoring groups'; SNC ``mon_L3_XX`` files are the
sum of their sub files. The root ``tasks`` lists every thread of the host, as the
default CTRL_MON group of a kernel with allocation support does.

Thread safety: one lock guards all state; ``/proc`` is read outside it (see
:mod:`.placement`), and nothing here touches the mount itself.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from resctrl_pipeline.emulator.counters import GroupCounters
from resctrl_pipeline.emulator.occupancy import CacheParams
from resctrl_pipeline.emulator.placement import TaskPlacement, parse_task_write, survey
from resctrl_pipeline.emulator.resctrlnodes import (
    CounterValue,
    Group,
    Node,
    NodeKind,
    cpu_files,
    entries,
    resolve,
)
from resctrl_pipeline.emulator.rmids import RmidPool
from resctrl_pipeline.emulator.threads import (
    ThreadStat,
    all_thread_ids,
    boot_ticks,
    cpu_busy_ticks,
    read_tgid,
    read_thread_stat,
)
from resctrl_pipeline.emulator.topology import Topology

__all__ = ["ROOT", "FaultPoint", "GroupInfo", "ResctrlTree"]

ROOT = ""
"""Name of the default group in the test-side API."""

FaultPoint = Literal["mkdir", "rmdir", "readdir", "read_tasks", "write_tasks", "read_counter"]
"""FUSE requests a test can make fail (:meth:`ResctrlTree.fail_next`) or hold
(:meth:`ResctrlTree.stall`): ``mkdir`` and ``rmdir`` of any directory, ``readdir`` of
any directory, ``read_tasks`` (the read at offset 0 of any ``tasks`` file),
``write_tasks`` (any write to a ``tasks`` file) and ``read_counter`` (the read at offset
0 of any ``mon_data`` counter file)."""


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """Test-side view of one group: its RMID and its threads (checked against /proc)."""

    name: str
    rmid: int
    tids: frozenset[int]


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class ResctrlTree:
    """An emulated resctrl filesystem, as a lock-protected in-process model.

    Args:
        topology: L3 domains, SNC, events, CPUs (default: domains 0 and 1, MBM on).
        num_rmids: RMIDs including the default group's RMID 0.
        limbo_seconds: how long a released RMID stays unusable.
        cache: cache model parameters; ``leaf_bytes`` is per leaf (an L3 domain, or
            one SNC node of it).
        refresh_interval: counters are recomputed from ``/proc`` on a read at most
            this often (seconds); reads in between return the previous values.
        clock: monotonic seconds, for limbo expiry and the occupancy model.
        proc: the proc filesystem that threads are validated against.
    """

    def __init__(
        self,
        topology: Topology | None = None,
        *,
        num_rmids: int = 64,
        limbo_seconds: float = 1.0,
        cache: CacheParams | None = None,
        refresh_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        proc: str = "/proc",
    ) -> None:
        self.topology = topology or Topology()
        self.cache = cache or CacheParams()
        self._clock = clock
        self._proc = proc
        self._mutex = threading.Lock()
        self._rmids = RmidPool(num_rmids, limbo_seconds, clock)
        self._root = Group(ROOT, 0)
        self._groups: dict[str, Group] = {}
        self._tasks: TaskPlacement[Group] = TaskPlacement(self._root)
        self._counters = GroupCounters(self.topology, self.cache, refresh_interval, clock())
        self._counters.track(self._root)
        self._status = ""
        self._ops: Counter[str] = Counter()
        self._faults: dict[FaultPoint, list[int]] = {}  # injected errnos still to raise
        self._stalls: dict[FaultPoint, float] = {}  # point -> monotonic end of its stall
        # Resolved paths, kept until the next mkdir/rmdir: resolving costs more than a read.
        self._nodes: dict[str, Node] = {}

    # --- filesystem side ---------------------------------------------------------------

    def resolve(self, path: str) -> Node:
        """Resolve an absolute path inside the mount.

        Raises:
            OSError: ``ENOENT`` when nothing is there.
        """
        with self._mutex:
            node = self._nodes.get(path)
            if node is None:
                node = self._nodes[path] = self._resolve([p for p in path.split("/") if p])
            return node

    def entries(self, node: Node) -> list[str]:
        """Names in a directory (without ``.`` and ``..``).

        Raises:
            OSError: ``ENOTDIR`` for a file; ``ENODEV`` when its group was removed.
        """
        with self._mutex:
            self._check_live(node)
            return entries(node, self._root, self._groups, self.topology)

    def content(self, node: Node) -> bytes:
        """The bytes a read of the file at ``node`` returns now.

        Raises:
            OSError: ``EISDIR`` for a directory; ``ENODEV`` when its group was removed.
        """
        if node.kind is NodeKind.TASKS and node.group is not self._root:
            self._sync_tasks(node.group)
        elif node.kind is NodeKind.TASKS:
            with self._mutex:
                self._check_live(node)
            return "".join(f"{tid}\n" for tid in all_thread_ids(self._proc)).encode()
        elif node.kind is NodeKind.COUNTER:
            self._refresh_counters()
        with self._mutex:
            self._check_live(node)
            return self._render(node).encode()

    def write(self, node: Node, data: bytes, writer_tid: int) -> None:
        """Apply one ``write()`` to the file at ``node``.

        Args:
            writer_tid: the writing thread (the kernel reads id 0 as "myself").

        Raises:
            OSError: ``EINVAL`` for anything but one id (``tasks``) or for CPU masks
                (not emulated); ``ESRCH`` for an id without ``/proc/<id>``; ``ENODEV``
                when the group was removed; ``EACCES`` for read-only files.
        """
        with self._mutex:
            self._check_live(node)
            if node.kind in (NodeKind.CPUS, NodeKind.CPUS_LIST):
                self._status = "emulator: assigning CPUs to groups is not emulated\n"
                raise _error(errno.EINVAL)
            if node.kind is not NodeKind.TASKS:
                raise _error(errno.EACCES)
            self._status = ""
        try:
            tid = parse_task_write(data)
        except ValueError as err:
            with self._mutex:
                self._status = str(err)
            raise _error(errno.EINVAL) from err
        if tid is None:
            return
        tid = tid or writer_tid
        stat, tgid = read_thread_stat(tid, self._proc), read_tgid(tid, self._proc)
        with self._mutex:
            if stat is None or tgid is None:
                self._status = f"No task {tid}\nError while processing task {tid}\n"
                raise _error(errno.ESRCH)
            self._check_live(node)
            assert node.group is not None
            if self._tasks.move(tid, node.group, stat.start_ticks, tgid, boot_ticks()):
                self._ops["task_moves"] += 1

    def mkdir(self, path: str) -> None:
        """Create a monitoring group at ``mon_groups/<name>``.

        Raises:
            OSError: ``EEXIST`` when the path exists; ``ENOENT`` when its parent does
                not; ``EPERM`` anywhere but directly in the root's ``mon_groups``;
                ``EINVAL`` for a name with a newline; ``ENOSPC``/``EBUSY`` when no
                RMID is free / only RMIDs in limbo are.
        """
        parts = [p for p in path.split("/") if p]
        with self._mutex:
            try:
                self._resolve(parts)
            except FileNotFoundError:
                pass
            else:
                raise _error(errno.EEXIST)
            parent = self._resolve(parts[:-1])
            if "\n" in parts[-1]:
                raise _error(errno.EINVAL)
            if parent.kind is not NodeKind.MON_GROUPS_DIR:
                raise _error(errno.EPERM)
            self._status = ""
            try:
                rmid = self._rmids.allocate()
            except OSError:
                self._status = "Out of RMIDs\n"
                raise
            group = Group(parts[-1], rmid)
            self._groups[group.name] = group
            self._counters.track(group)
            self._nodes.clear()
            self._ops["mkdir"] += 1

    def rmdir(self, path: str) -> None:
        """Remove a monitoring group; its threads return to the default group and
        its RMID goes to limbo.

        Raises:
            OSError: ``ENOENT``; ``ENOTDIR`` for a file; ``EPERM`` for any directory
                that is not a monitoring group; ``EBUSY`` for the root.
        """
        with self._mutex:
            node = self._resolve([p for p in path.split("/") if p])
            if not node.is_dir:
                raise _error(errno.ENOTDIR)
            if node.group is self._root and node.kind is NodeKind.GROUP_DIR:
                raise _error(errno.EBUSY)
            if node.kind is not NodeKind.GROUP_DIR or node.group is None:
                raise _error(errno.EPERM)
            group = node.group
            group.removed = True
            del self._groups[group.name]
            self._tasks.evacuate(group, boot_ticks())
            self._rmids.release(group.rmid)
            self._counters.forget(group)
            self._nodes.clear()
            self._ops["rmdir"] += 1

    def take_fault(self, point: FaultPoint) -> None:
        """Raise the next errno injected at ``point`` (see :meth:`fail_next`), if any.

        Called by the FUSE layer only, before it serves the request; the methods of
        this class never consume injected faults.

        A request at a stalled point (:meth:`stall`) first waits for the stall to end.

        Raises:
            OSError: the injected errno (``info/last_cmd_status`` then names it).
        """
        if not self._faults and not self._stalls:
            return  # the common case, without the lock: nothing injected anywhere
        until = self._stalls.get(point)
        if until is not None:
            delay = until - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # this FUSE request only; the server has other threads
        with self._mutex:
            pending = self._faults.get(point)
            if not pending:
                return
            code = pending.pop(0)
            if not pending:
                del self._faults[point]
            self._status = f"emulator: injected {errno.errorcode[code]}\n"
        raise _error(code)

    # --- test side ---------------------------------------------------------------------

    def fail_next(self, point: FaultPoint, code: int, times: int = 1) -> None:
        """Make the next ``times`` requests at ``point`` that reach the FUSE server
        fail with ``code`` (a test hook, for errnos the emulation never produces).

        Only requests through the mount consume them: the VFS answers some requests
        itself (``mkdir`` of an existing name, ``rmdir`` or ``open`` of a missing one),
        and then a pending fault waits for the next request that gets through.

        Raises:
            ValueError: unknown ``point``, ``code`` not a positive errno, ``times`` < 1.
        """
        if point not in get_args(FaultPoint):
            raise ValueError(f"no fault point {point!r}")
        if code not in errno.errorcode or times < 1:
            raise ValueError(f"cannot inject errno {code} {times} times")
        with self._mutex:
            self._faults.setdefault(point, []).extend([code] * times)

    def stall(self, points: tuple[FaultPoint, ...], seconds: float) -> None:
        """Hold every request at ``points`` that arrives within the next ``seconds``
        until those seconds have passed (a kernel that is busy: a held
        ``rdtgroup_mutex``, RMIDs being freed). Other requests are served meanwhile.

        Raises:
            ValueError: unknown point, or ``seconds`` not positive.
        """
        if any(p not in get_args(FaultPoint) for p in points) or seconds <= 0:
            raise ValueError(f"cannot stall {points!r} for {seconds} s")
        until = time.monotonic() + seconds
        with self._mutex:
            for point in points:
                self._stalls[point] = until

    def pending_faults(self) -> dict[FaultPoint, list[int]]:
        """Injected errnos not raised yet, per point (points without any are left out)."""
        with self._mutex:
            return {point: list(codes) for point, codes in self._faults.items()}

    def set_counter(
        self,
        group: str,
        event: str,
        domain: int,
        value: CounterValue | None,
        sub: int | None = None,
    ) -> None:
        """Pin what one counter file shows, overriding the model (None: unpin).

        Pins apply to exactly that file: a pinned SNC sub file changes its L3 sum, a
        pinned monitoring group's file does not change the root's sum.

        Raises:
            KeyError: no such group.
            ValueError: no such event, domain or SNC node.
        """
        with self._mutex:
            target = self._root if group == ROOT else self._groups[group]
            if event not in self.topology.events or domain not in self.topology.domains:
                raise ValueError(f"no {event} file in domain {domain}")
            if sub is not None and sub not in self.topology.sub_nodes(domain):
                raise ValueError(f"no SNC node {sub} in domain {domain}")
            if value is None:
                target.overrides.pop((event, domain, sub), None)
            else:
                target.overrides[(event, domain, sub)] = value
            self._counters.invalidate()

    def set_num_rmids(self, num_rmids: int) -> None:
        """Change the RMID limit; groups holding RMIDs above it keep them."""
        with self._mutex:
            self._rmids.set_limit(num_rmids)

    def release_limbo(self) -> None:
        """Make every RMID in limbo reusable now."""
        with self._mutex:
            self._rmids.release_limbo()

    def limbo_rmids(self) -> tuple[int, ...]:
        """RMIDs waiting in limbo, oldest first."""
        with self._mutex:
            return self._rmids.in_limbo()

    def groups(self) -> dict[str, GroupInfo]:
        """Every monitoring group (not the root) with its live threads."""
        self._sync_tasks()
        with self._mutex:
            return {
                name: GroupInfo(name, g.rmid, frozenset(self._tasks.members(g)))
                for name, g in self._groups.items()
            }

    def group_of(self, tid: int) -> str:
        """Name of the group ``tid`` is in (:data:`ROOT` for the default group)."""
        self._sync_tasks()
        with self._mutex:
            return self._tasks.group_of(tid).name

    @property
    def last_cmd_status(self) -> str:
        """What ``info/last_cmd_status`` shows now."""
        with self._mutex:
            return self._status or "ok\n"

    def operations(self) -> dict[str, int]:
        """Successful changes so far: ``mkdir``, ``rmdir``, ``task_moves``."""
        with self._mutex:
            return dict(self._ops)

    def refresh_counters(self) -> None:
        """Recompute the counters from ``/proc`` now, whatever ``refresh_interval`` says."""
        self._refresh_counters(force=True)

    # --- internals (callers hold the lock unless stated) -------------------------------

    def _resolve(self, parts: list[str]) -> Node:
        return resolve(parts, self._root, self._groups, self.topology)

    def _check_live(self, node: Node) -> None:
        if node.group is not None and node.group.removed:
            raise _error(errno.ENODEV)

    def _render(self, node: Node) -> str:
        if node.kind is NodeKind.COUNTER:
            assert node.group is not None
            root = node.group is self._root
            members = [self._root, *self._groups.values()] if root else [node.group]
            return self._counters.render(node, members)
        if node.kind is NodeKind.TASKS:
            assert node.group is not None
            return "".join(f"{tid}\n" for tid in self._tasks.members(node.group))
        if node.kind in (NodeKind.CPUS, NodeKind.CPUS_LIST):
            return cpu_files(node.kind, self.topology.cpus, every=node.group is self._root)
        if node.name == "last_cmd_status":
            return self._status or "ok\n"
        if node.name == "num_rmids":
            return f"{self._rmids.num_rmids}\n"
        if node.name == "mon_features":
            return "".join(f"{event}\n" for event in self.topology.events)
        if node.name == "max_threshold_occupancy":
            llc = self.cache.leaf_bytes * max(self.topology.snc, 1)
            res = self.cache.resolution
            return f"{llc // self._rmids.num_rmids // res * res}\n"
        raise _error(errno.EISDIR)

    def _sync_tasks(self, group: Group | None = None) -> None:
        """Check placements (of ``group``, or all) against /proc; takes the lock itself
        and reads /proc outside it."""
        with self._mutex:
            placed = self._tasks.snapshot()
        subset = (
            placed if group is None else {tid: p for tid, p in placed.items() if p.group is group}
        )
        found = survey(subset, self._root, self._proc, placed=placed)
        with self._mutex:
            self._tasks.apply(found, lambda g: not g.removed)

    def _refresh_counters(self, force: bool = False) -> None:
        """Advance the counters from /proc (takes the lock itself, reads outside it).

        Only one caller refreshes at a time; the others return at once and read the
        previous values, so a burst of reads costs one refresh.
        """
        with self._mutex:
            if not self._counters.begin_refresh(self._clock(), force):
                return
            snapshot = self._tasks.snapshot()
        try:
            found = survey(snapshot, self._root, self._proc)
            host = cpu_busy_ticks(self._proc)
        except BaseException:
            with self._mutex:
                self._counters.abort_refresh()
            raise
        with self._mutex:
            self._tasks.apply(found, lambda g: not g.removed)
            threads: dict[Group, list[ThreadStat]] = {g: [] for g in self._groups.values()}
            stats = {**found.alive, **{tid: st for tid, (_p, st) in found.adopted.items()}}
            for tid, st in stats.items():
                members = threads.get(self._tasks.group_of(tid))
                if members is not None:
                    members.append(st)
            self._counters.finish_refresh(self._clock(), threads, host, self._root)
