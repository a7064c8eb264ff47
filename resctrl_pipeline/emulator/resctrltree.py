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
    <class>/{tasks,cpus,cpus_list,mon_data/...,mon_groups/<name>/...}   (classes profile)
    ABMC, AET files: see :mod:`.resctrlnodes`

Semantics (kernel ``fs/resctrl/rdtgroup.c``): mkdir in any CTRL_MON group's
``mon_groups/`` makes a MON group, and (``classes`` profile only) at the top a
CTRL_MON group with a CLOSID (elsewhere ``EPERM``); an RMID per group (``ENOSPC`` when
none is left, ``EBUSY`` while released ones are in limbo); rmdir moves a MON group's
threads to its CTRL_MON group, and a CTRL_MON group's (its MON groups go with it) to
the root; one TID per write to ``tasks`` (``EINVAL`` for anything else, and for a
thread of another CTRL_MON group written into a MON group; ``ESRCH`` when
``/proc/<tid>`` is absent; the reason in ``info/last_cmd_status``); a CTRL_MON
group's counters are its own plus its MON groups'; SNC ``mon_L3_XX`` files are the
sum of their sub files. The root ``tasks`` lists every thread of the host outside
other CTRL_MON groups, as the default CTRL_MON group of a kernel with allocation
support does. Counter assignment (ABMC) is in :mod:`.assignment`.

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

from resctrl_pipeline.emulator.assignment import AssignError, CounterAssignment
from resctrl_pipeline.emulator.counters import GroupCounters
from resctrl_pipeline.emulator.hardware import Hardware
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
from resctrl_pipeline.emulator.topology import AET_EVENTS, Topology

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
    """Test-side view of one group: its name in the test-side API (see
    :meth:`ResctrlTree.groups`), its RMID and the threads placed in it (checked
    against /proc; a CTRL_MON group's own, not its MON groups')."""

    name: str
    rmid: int
    tids: frozenset[int]


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class ResctrlTree:
    """An emulated resctrl filesystem, as a lock-protected in-process model.

    Args:
        topology: L3 domains, SNC, events, CPUs, AET packages (default: domains 0
            and 1, MBM on).
        hardware: the profile's features beyond the topology (:mod:`.hardware`).
            SNC and AET are the topology's (``snc``, ``packages``); builders such
            as :class:`~.resctrlfs.EmulatedResctrl` derive both from the profile.
        num_rmids: RMIDs including the default group's RMID 0, as
            ``info/L3_MON/num_rmids`` shows them (with AET the group limit is the
            smaller of this and ``hardware.perf_pkg_rmids``).
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
        hardware: Hardware | None = None,
        num_rmids: int = 64,
        limbo_seconds: float = 1.0,
        cache: CacheParams | None = None,
        refresh_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        proc: str = "/proc",
    ) -> None:
        self.topology = topology or Topology()
        self.hardware = hardware or Hardware()
        self.cache = cache or CacheParams()
        self._clock = clock
        self._proc = proc
        self._mutex = threading.Lock()
        self._l3_rmids = num_rmids
        self._rmids = RmidPool(self._group_limit(num_rmids), limbo_seconds, clock)
        self._root = Group(ROOT, 0)
        self._classes: dict[str, Group] = {}
        self._closids = list(range(1, self.hardware.num_closids))  # free, lowest first
        self._tasks: TaskPlacement[Group] = TaskPlacement(self._root)
        self._assignment = (
            CounterAssignment(
                self.topology.domains,
                self.hardware.mbm_counters,
                self.hardware.counters_per_group,
                self.topology.events,
            )
            if self.hardware.abmc and self.topology.mbm
            else None
        )
        self._counters = GroupCounters(
            self.topology, self.cache, refresh_interval, clock(), self._assignment
        )
        self._counters.track(self._root)
        self._status = ""
        self._assign_on_create(self._root)  # the root gets counters at mount
        self._ops: Counter[str] = Counter()
        self._faults: dict[FaultPoint, list[int]] = {}  # injected errnos still to raise
        self._stalls: dict[FaultPoint, float] = {}  # point -> monotonic end of its stall
        # Resolved paths, kept until the next mkdir/rmdir: resolving costs more than a read.
        self._nodes: dict[str, Node] = {}
        for name in self.hardware.classes:
            self.mkdir(f"/{name}")
        self._status = ""
        self._ops.clear()

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
            return entries(node, self._root, self._classes, self.topology, self._abmc)

    def content(self, node: Node) -> bytes:
        """The bytes a read of the file at ``node`` returns now.

        Raises:
            OSError: ``EISDIR`` for a directory; ``ENODEV`` when its group was removed.
        """
        if node.kind is NodeKind.TASKS and node.group is not self._root:
            assert node.group is not None
            self._sync_tasks({node.group, *node.group.children.values()})
        elif node.kind is NodeKind.TASKS:
            return self._root_tasks().encode()
        elif node.kind in (NodeKind.COUNTER, NodeKind.PKG_COUNTER):
            self._refresh_counters()
        with self._mutex:
            self._check_live(node)
            return self._render(node).encode()

    def write(self, node: Node, data: bytes, writer_tid: int) -> None:
        """Apply one ``write()`` to the file at ``node``.

        Args:
            writer_tid: the writing thread (the kernel reads id 0 as "myself").

        Raises:
            OSError: ``EINVAL`` for anything but one id (``tasks``), for a thread of
                another CTRL_MON group written into a MON group, or for CPU masks (not
                emulated); ``ESRCH`` for an id without ``/proc/<id>``; ``ENODEV`` when
                the group was removed; ``EACCES`` for read-only files; the errnos of
                :mod:`.assignment` for the ABMC files.
        """
        with self._mutex:
            self._check_live(node)
            if node.kind in (NodeKind.CPUS, NodeKind.CPUS_LIST):
                self._status = "emulator: assigning CPUs to groups is not emulated\n"
                raise _error(errno.EINVAL)
            if node.kind is NodeKind.ASSIGNMENTS or node.kind is NodeKind.INFO_FILE:
                if not node.writable:
                    raise _error(errno.EACCES)
                self._write_abmc(node, data)
                return
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
            target = node.group
            current = self._tasks.current(tid, stat.start_ticks)
            if target.ctrl is not None and current.control is not target.ctrl:
                self._status = (
                    "Can't move task to different control group\n"
                    f"Error while processing task {tid}\n"
                )
                raise _error(errno.EINVAL)
            if self._tasks.move(tid, target, stat.start_ticks, tgid, boot_ticks()):
                self._ops["task_moves"] += 1

    def mkdir(self, path: str) -> None:
        """Create a MON group at ``[<class>/]mon_groups/<name>``, or (``classes``
        profile) a CTRL_MON group at ``/<name>``.

        With ABMC in ``mbm_event`` mode and ``mbm_assign_on_mkdir`` on, the group gets
        counters while they last; running out still creates it, and
        ``info/last_cmd_status`` then says which allocation failed.

        Raises:
            OSError: ``EEXIST`` when the path exists; ``ENOENT`` when its parent does
                not; ``EPERM`` anywhere else; ``EINVAL`` for a name with a newline;
                ``ENOSPC``/``EBUSY`` when no RMID is free / only RMIDs in limbo are
                (``Out of RMIDs``); ``ENOSPC`` when no CLOSID is (``Out of CLOSIDs``).
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
            top = parent.kind is NodeKind.GROUP_DIR and parent.group is self._root
            if parent.kind is not NodeKind.MON_GROUPS_DIR and not (top and self.hardware.ctrl_mon):
                raise _error(errno.EPERM)
            assert parent.group is not None
            self._status = ""
            if top and not self._closids:
                self._status = "Out of CLOSIDs\n"
                raise _error(errno.ENOSPC)
            try:
                rmid = self._rmids.allocate()
            except OSError:
                self._status = "Out of RMIDs\n"
                raise
            if top:
                group = Group(parts[-1], rmid, closid=self._closids.pop(0))
                self._classes[group.name] = group
            else:
                group = Group(parts[-1], rmid, ctrl=parent.group)
                parent.group.children[group.name] = group
            self._counters.track(group)
            self._assign_on_create(group)
            self._nodes.clear()
            self._ops["mkdir"] += 1

    def rmdir(self, path: str) -> None:
        """Remove a group: a MON group's threads go to its CTRL_MON group; a CTRL_MON
        group's threads, its MON groups' included, go to the root and its MON groups
        go too. RMIDs go to limbo, counters and CLOSIDs are free at once.

        Raises:
            OSError: ``ENOENT``; ``ENOTDIR`` for a file; ``EPERM`` for any directory
                that is not a group; ``EBUSY`` for the root.
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
            if group.ctrl is None:
                for child in list(group.children.values()):
                    self._remove(child, self._root)
                group.children.clear()
                self._remove(group, self._root)
                self._closids.append(group.closid)
                self._closids.sort()
                del self._classes[group.name]
            else:
                self._remove(group, group.ctrl)
                del group.ctrl.children[group.name]
            self._nodes.clear()
            self._ops["rmdir"] += 1

    def rename(self, old: str, new: str) -> None:
        """Move a MON group into a CTRL_MON group's ``mon_groups/`` (kernel ≥ 6.5),
        possibly under a new name: it keeps its RMID, counters and counter
        assignments, and its threads take the new parent's CLOSID.

        Raises:
            OSError: ``ENOENT``; ``EPERM`` when the source is not a MON group or the
                destination not in a ``mon_groups`` directory (reason in
                ``last_cmd_status``); ``EEXIST`` when the name is taken.
        """
        new_parts = [p for p in new.split("/") if p]
        with self._mutex:
            src = self._resolve([p for p in old.split("/") if p])
            dst = self._resolve(new_parts[:-1])
            self._status = ""
            group = src.group
            if not (src.is_dir and dst.is_dir):
                self._status = "Source and destination must be directories\n"
                raise _error(errno.EPERM)
            if src.kind is not NodeKind.GROUP_DIR or group is None or group.ctrl is None:
                self._status = "Source must be a MON group\n"
                raise _error(errno.EPERM)
            if dst.kind is not NodeKind.MON_GROUPS_DIR or dst.group is None:
                self._status = "Destination must be a mon_groups subdirectory\n"
                raise _error(errno.EPERM)
            name, target = new_parts[-1], dst.group
            if target.children.get(name, group) is not group:
                raise _error(errno.EEXIST)
            del group.ctrl.children[group.name]
            group.name, group.ctrl, group.closid = name, target, target.closid
            target.children[name] = group
            self._counters.invalidate()
            self._nodes.clear()
            self._ops["rename"] += 1

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
            with self._mutex:  # over: back to the lock-free common case
                if self._stalls.get(point) == until:
                    del self._stalls[point]
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

        ``domain`` is the package id for an AET event; an int pinned on a fixed-point
        AET event shows as that many whole units (``N.000000``).

        Pins apply to exactly that file: a pinned SNC sub file changes its L3 sum, a
        pinned monitoring group's file does not change the root's sum.

        Args:
            group: the group's name in the test-side API (see :meth:`groups`).

        Raises:
            KeyError: no such group.
            ValueError: no such event, domain or SNC node.
        """
        with self._mutex:
            target = self._lookup(group)
            if self.topology.packages and event in AET_EVENTS:
                if domain not in self.topology.packages or sub is not None:
                    raise ValueError(f"no {event} file in package {domain}")
            elif event not in self.topology.events or domain not in self.topology.domains:
                raise ValueError(f"no {event} file in domain {domain}")
            if sub is not None and sub not in self.topology.sub_nodes(domain):
                raise ValueError(f"no SNC node {sub} in domain {domain}")
            if value is None:
                target.overrides.pop((event, domain, sub), None)
            else:
                target.overrides[(event, domain, sub)] = value
            self._counters.invalidate()

    def set_num_rmids(self, num_rmids: int) -> None:
        """Change ``info/L3_MON/num_rmids`` (and with it the group limit); groups
        holding RMIDs above it keep them."""
        with self._mutex:
            self._l3_rmids = num_rmids
            self._rmids.set_limit(self._group_limit(num_rmids))

    def release_limbo(self) -> None:
        """Make every RMID in limbo reusable now."""
        with self._mutex:
            self._rmids.release_limbo()

    def limbo_rmids(self) -> tuple[int, ...]:
        """RMIDs waiting in limbo, oldest first."""
        with self._mutex:
            return self._rmids.in_limbo()

    def groups(self) -> dict[str, GroupInfo]:
        """Every group but the root, with the live threads placed in it.

        Names: ``"x"`` for the root's MON group ``mon_groups/x``, ``"c/"`` for the
        CTRL_MON group (class) ``c``, ``"c/x"`` for its MON group
        ``c/mon_groups/x``; the root itself is :data:`ROOT` (``""``).
        """
        self._sync_tasks()
        with self._mutex:
            return {
                g.key: GroupInfo(g.key, g.rmid, frozenset(self._tasks.members(g)))
                for g in self._all_groups()
            }

    def group_of(self, tid: int) -> str:
        """Name (as in :meth:`groups`) of the group ``tid`` is in (:data:`ROOT` for
        the default group)."""
        self._sync_tasks()
        with self._mutex:
            return self._tasks.group_of(tid).key

    def assigned(self, group: str) -> frozenset[tuple[str, int]]:
        """The ``(event, domain)`` pairs holding an MBM counter (ABMC).

        Raises:
            KeyError: no such group.
        """
        with self._mutex:
            return frozenset(self._lookup(group).assigned)

    @property
    def last_cmd_status(self) -> str:
        """What ``info/last_cmd_status`` shows now."""
        with self._mutex:
            return self._status or "ok\n"

    def operations(self) -> dict[str, int]:
        """Successful changes so far: ``mkdir``, ``rmdir``, ``rename``, ``task_moves``."""
        with self._mutex:
            return dict(self._ops)

    def refresh_counters(self) -> None:
        """Recompute the counters from ``/proc`` now, whatever ``refresh_interval`` says."""
        self._refresh_counters(force=True)

    # --- internals (callers hold the lock unless stated) -------------------------------

    @property
    def _abmc(self) -> bool:
        return self._assignment is not None

    def _all_groups(self) -> list[Group]:
        """Every group but the root: the root's MON groups, then each class and its."""
        found = list(self._root.children.values())
        for ctrl in self._classes.values():
            found.append(ctrl)
            found.extend(ctrl.children.values())
        return found

    def _lookup(self, key: str) -> Group:
        if key == ROOT:
            return self._root
        ctrl_name, slash, name = key.rpartition("/")
        if not slash:
            return self._root.children[name]
        ctrl = self._classes[ctrl_name]
        return ctrl.children[name] if name else ctrl

    def _remove(self, group: Group, to: Group) -> None:
        group.removed = True
        self._tasks.evacuate(group, boot_ticks(), to)
        self._rmids.release(group.rmid)
        self._counters.forget(group)
        if self._assignment is not None:
            self._assignment.release(group)

    def _assign_on_create(self, group: Group) -> None:
        if self._assignment is None:
            return
        assigned, failures = self._assignment.on_create(group)
        self._counters.restart(group, assigned)
        self._status = failures

    def _write_abmc(self, node: Node, data: bytes) -> None:
        """A write to ``mbm_L3_assignments``, ``mbm_assign_mode`` or
        ``mbm_assign_on_mkdir`` (lock held)."""
        assignment = self._assignment
        assert assignment is not None
        done: list[tuple[str, int]] = []
        try:
            if node.kind is NodeKind.ASSIGNMENTS:
                assert node.group is not None
                try:
                    assignment.write_assignments(node.group, data, done)
                finally:
                    self._counters.restart(node.group, done)
            elif node.name == "mbm_assign_mode":
                everyone = [self._root, *self._all_groups()]
                if assignment.write_mode(data, everyone):
                    self._counters.restart_all(everyone)
            else:
                assignment.write_on_mkdir(data)
        except AssignError as err:
            if err.status:
                self._status = err.status
            raise _error(err.errno) from None
        self._status = ""

    def _root_tasks(self) -> str:
        """The root's ``tasks``: every host thread not in another CTRL_MON group
        (takes the lock itself, reads /proc outside it)."""
        if self._classes:
            self._sync_tasks()
        tids = all_thread_ids(self._proc)
        with self._mutex:
            if not self._classes:
                return "".join(f"{tid}\n" for tid in tids)
            snapshot = self._tasks.snapshot()
            elsewhere = {t for t, p in snapshot.items() if p.group.control is not self._root}
        return "".join(f"{tid}\n" for tid in tids if tid not in elsewhere)

    def _group_limit(self, l3_rmids: int) -> int:
        if self.topology.packages:
            return min(l3_rmids, self.hardware.perf_pkg_rmids)
        return l3_rmids

    def _resolve(self, parts: list[str]) -> Node:
        return resolve(parts, self._root, self._classes, self.topology, self._abmc)

    def _check_live(self, node: Node) -> None:
        if node.group is not None and node.group.removed:
            raise _error(errno.ENODEV)

    def _render(self, node: Node) -> str:
        if node.kind in (NodeKind.COUNTER, NodeKind.PKG_COUNTER):
            assert node.group is not None
            members = [node.group, *node.group.children.values()]
            return self._counters.render(node, members)
        if node.kind is NodeKind.TASKS:
            assert node.group is not None
            tids = self._tasks.members(node.group)
            for child in node.group.children.values():
                tids.extend(self._tasks.members(child))
            return "".join(f"{tid}\n" for tid in sorted(tids))
        if node.kind is NodeKind.ASSIGNMENTS:
            group = node.group
            assert group is not None
            return self._abmc_read(lambda a: a.assignments_text(group))
        if node.kind in (NodeKind.CPUS, NodeKind.CPUS_LIST):
            return cpu_files(node.kind, self.topology.cpus, every=node.group is self._root)
        if node.name == "last_cmd_status":
            return self._status or "ok\n"
        if node.kind is NodeKind.PKG_INFO_FILE:
            if node.name == "num_rmids":
                return f"{self.hardware.perf_pkg_rmids}\n"
            return "".join(f"{event}\n" for event in AET_EVENTS)
        if node.name == "num_rmids":
            return f"{self._l3_rmids}\n"
        if node.name == "mon_features":
            return "".join(f"{event}\n" for event in self.topology.events)
        if node.name == "max_threshold_occupancy":
            llc = self.cache.leaf_bytes * max(self.topology.snc, 1)
            res = self.cache.resolution
            return f"{llc // self._l3_rmids // res * res}\n"
        if node.name == "mbm_assign_mode":
            return self._abmc_read(lambda a: a.mode_text())
        if node.name == "num_mbm_cntrs":
            return self._abmc_read(lambda a: a.num_text())
        if node.name == "available_mbm_cntrs":
            return self._abmc_read(lambda a: a.available_text())
        if node.name == "mbm_assign_on_mkdir":
            return self._abmc_read(lambda a: a.on_mkdir_text())
        raise _error(errno.EISDIR)

    def _abmc_read(self, show: Callable[[CounterAssignment], str]) -> str:
        assert self._assignment is not None
        try:
            return show(self._assignment)
        except AssignError as err:
            self._status = err.status
            raise _error(err.errno) from None

    def _sync_tasks(self, groups: set[Group] | None = None) -> None:
        """Check placements (of ``groups``, or all) against /proc; takes the lock
        itself and reads /proc outside it."""
        with self._mutex:
            placed = self._tasks.snapshot()
        subset = (
            placed
            if groups is None
            else {tid: p for tid, p in placed.items() if p.group in groups}
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
            threads: dict[Group, list[ThreadStat]] = {g: [] for g in self._all_groups()}
            stats = {**found.alive, **{tid: st for tid, (_p, st) in found.adopted.items()}}
            for tid, st in stats.items():
                members = threads.get(self._tasks.group_of(tid))
                if members is not None:
                    members.append(st)
            self._counters.finish_refresh(self._clock(), threads, host, self._root)
