"""Monitoring groups under ``<root>/mon_groups``: operations with every errno classified.

:class:`ResctrlGroups` runs the operations of a
:class:`~resctrl_pipeline.resctrl.ops.ResctrlOps` seam and turns their errnos into
outcomes and the state-named exceptions of :mod:`resctrl_pipeline.resctrl.errnos`,
in one place for every implementation. :func:`place_init_pid` is the NRI fast path.
"""

from __future__ import annotations

import errno
from typing import NoReturn

from resctrl_pipeline.errors import GONE_ERRNOS
from resctrl_pipeline.podid import group_name
from resctrl_pipeline.resctrl.counters import (
    Assignments,
    CounterBudget,
    assignment_request,
    parse_assignments,
)
from resctrl_pipeline.resctrl.errnos import (
    AssignmentRefused,
    CountersExhausted,
    GroupVanished,
    NoFreeRmid,
    RmidsInLimbo,
    TaskRefused,
    raise_classified,
)
from resctrl_pipeline.resctrl.info import parse_assign_mode, parse_domain_counts
from resctrl_pipeline.resctrl.ops import OsResctrlOps, ResctrlOps, split_name

__all__ = ["ResctrlGroups", "place_init_pid"]


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
        """Absolute path of group ``name`` (what GroupState and Parquet carry).

        ``name`` is ``<name>`` or ``<ctrl>/<name>`` (see :func:`split_name`).
        """
        ctrl, leaf = split_name(name)
        base = self.ops.root.rstrip("/")
        return f"{base}/{ctrl}/mon_groups/{leaf}" if ctrl else f"{base}/mon_groups/{leaf}"

    def classes(self) -> list[str]:
        """CTRL_MON groups besides the root ("classes"); [] when unreadable."""
        try:
            return [c for c in self.ops.list_classes() if _plain_name(c)]
        except OSError:
            return []

    def class_threads(self, ctrl: str) -> set[int]:
        """Thread ids with CTRL_MON group ``ctrl``'s CLOSID (its ``tasks``).

        Raises:
            GroupVanished: ENOENT (the class was removed). ResctrlWriteError: otherwise.
        """
        try:
            return _tids(self.ops.read_class_tasks(ctrl))
        except FileNotFoundError as err:
            raise GroupVanished("control group vanished", f"{self.root}/{ctrl}", err.errno) from err
        except OSError as err:
            raise_classified(err, "cannot read tasks", f"{self.root}/{ctrl}")

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
            if "/" in name and err.errno == errno.ENOENT:  # the class went away
                raise GroupVanished("control group vanished", self.path(name), err.errno) from err
            self._raise_for(err, "cannot create monitoring group", name, root_missing=True)
        return True

    def remove(self, name: str) -> bool:
        """Remove group ``name``; its threads fall back to the root group.

        Returns:
            True if removed, False if it was already gone (ENOENT, or ENODEV: kernfs
            for a group being torn down).

        Raises:
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        try:
            self.ops.rmdir(name)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENODEV):
                return False
            self._raise_for(err, "cannot remove monitoring group", name)
        return True

    def list_groups(self, ctrl: str = "") -> list[str]:
        """Names of every monitoring group below ``mon_groups/`` (any prefix), of the
        root or of CTRL_MON group ``ctrl`` (bare names, without ``<ctrl>/``).

        Raises:
            ResctrlUnavailable: the root's ``mon_groups`` does not exist.
            GroupVanished: the class's does not (the class was removed).
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        try:
            return self.ops.list_groups(ctrl)
        except FileNotFoundError as err:
            if ctrl:
                raise GroupVanished(
                    "control group vanished", f"{self.root}/{ctrl}", errno.ENOENT
                ) from err
            self._raise_for(err, "cannot list monitoring groups", "", root_missing=True)
        except OSError as err:
            self._raise_for(err, "cannot list monitoring groups", "", root_missing=True)

    def tasks(self, name: str) -> set[int]:
        """Thread ids currently in group ``name``.

        Lines that are not positive integers are skipped: they cannot name a thread.

        Raises:
            GroupVanished: any errno of a read that means "gone" (ENOENT, ENODEV, ESRCH,
                EINVAL; see :data:`~resctrl_pipeline.errors.GONE_ERRNOS`).
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        try:
            text = self.ops.read_tasks(name)
        except OSError as err:
            if err.errno in GONE_ERRNOS:
                raise self._vanished(name, err) from err
            self._raise_for(err, "cannot read tasks", name)
        return _tids(text)

    def add_task(self, name: str, tid: int) -> bool:
        """Move thread ``tid`` into group ``name`` with one write.

        Returns:
            True if moved, False if the thread no longer exists (ESRCH, an expected race).

        Raises:
            ValueError: ``tid`` < 1 (the kernel reads 0 as "the writing thread itself").
            GroupVanished: ENOENT, or ENODEV that outlived a fresh descriptor; the
                caller recreates the group.
            TaskRefused: EINVAL, with ``info/last_cmd_status`` attached.
            PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
        """
        if tid < 1:
            raise ValueError(f"not a thread id: {tid}")
        try:
            self.ops.write_tid(name, tid)
        except ProcessLookupError:
            return False
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENODEV):
                raise self._vanished(name, err) from err
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
        """RMID capacity (root group included): ``info/L3_MON/num_rmids``, or the
        smaller of that and ``info/PERF_PKG_MON/num_rmids`` where telemetry (AET) has
        its own pool (every group takes one of each).

        Returns:
            The number, or None when the file is missing or unreadable.
        """
        pools = []
        for relpath in ("L3_MON/num_rmids", "PERF_PKG_MON/num_rmids"):
            try:
                pools.append(int(self.ops.read_info(relpath).strip()))
            except (OSError, ValueError):
                continue
        return min(pools) if pools else None

    def counter_budget(self) -> CounterBudget:
        """The node's MBM counter mode and budget (never raises: unreadable = absent)."""
        try:
            mode = parse_assign_mode(self.ops.read_info("L3_MON/mbm_assign_mode"))
        except OSError:
            return CounterBudget(None, {}, {})
        if mode != "mbm_event":
            return CounterBudget(mode, {}, {})
        counts: list[dict[int, int]] = []
        for relpath in ("L3_MON/num_mbm_cntrs", "L3_MON/available_mbm_cntrs"):
            try:
                counts.append(parse_domain_counts(self.ops.read_info(relpath)) or {})
            except OSError:
                counts.append({})
        return CounterBudget(mode, counts[0], counts[1])

    def assignments(self, name: str) -> Assignments:
        """Group ``name``'s counters per event and domain (``mbm_L3_assignments``).

        Raises:
            GroupVanished: ENOENT. PermissionProblem: EACCES/EPERM.
            ResctrlWriteError: any other errno (EINVAL: not in ``mbm_event`` mode).
        """
        try:
            return parse_assignments(self.ops.read_assignments(name))
        except FileNotFoundError as err:
            raise GroupVanished("monitoring group vanished", self.path(name), err.errno) from err
        except OSError as err:
            self._raise_for(err, "cannot read counter assignments", name)

    def set_counters(self, name: str, events: list[str], assign: bool) -> None:
        """Assign (or free) a counter for each of ``events`` in every domain of ``name``.

        One write; the kernel walks the lines and domains in order and stops at the
        first failure, leaving earlier ones assigned. Freeing a free counter is a no-op.

        Raises:
            See :meth:`write_assignments`.
        """
        self.write_assignments(name, assignment_request(events, assign))

    def write_assignments(self, name: str, text: str) -> None:
        """Write ``text`` to group ``name``'s ``mbm_L3_assignments`` in one write().

        Raises:
            CountersExhausted: ENOSPC (no free counter in some domain).
            AssignmentRefused: EINVAL, or ENOENT naming an event (``Invalid event``).
            GroupVanished: ENOENT otherwise. PermissionProblem: EACCES/EPERM.
            ResctrlWriteError: any other errno.
        """
        try:
            self.ops.write_assignments(name, text)
        except OSError as err:
            code = err.errno
            if code == errno.ENOSPC:
                raise CountersExhausted(self.path(name), self.last_cmd_status()) from err
            if code in (errno.EINVAL, errno.ENOENT):
                status = self.last_cmd_status()
                if code == errno.EINVAL or status.startswith("Invalid event"):
                    raise AssignmentRefused(self.path(name), code, status) from err
                raise GroupVanished("monitoring group vanished", self.path(name), code) from err
            self._raise_for(err, "cannot assign counters", name)

    def _vanished(self, name: str, err: OSError) -> GroupVanished:
        return GroupVanished("monitoring group vanished", self.path(name), err.errno)

    def _raise_for(
        self, err: OSError, what: str, name: str, *, root_missing: bool = False
    ) -> NoReturn:
        """Raise the exception for ``err``; ``root_missing``: ENOENT means no mon_groups."""
        path = self.path(name) if name else f"{self.ops.root.rstrip('/')}/mon_groups"
        raise_classified(err, what, path, root_missing=root_missing)


def _ascii_digits(words: list[str]) -> list[str]:
    return [w for w in words if w.isascii() and w.isdigit()]


def _tids(text: str) -> set[int]:
    """Thread ids in a ``tasks`` text; lines that are not positive integers skipped."""
    words = text.split()
    # On ASCII text str.isdigit means 0-9 only; the per-word check guards the rest.
    digits = filter(str.isdigit, words) if text.isascii() else _ascii_digits(words)
    tids = set(map(int, digits))
    tids.discard(0)
    return tids


def _plain_name(name: str) -> bool:
    """A class name we can address (see :func:`split_name`): one plain component."""
    try:
        return split_name(name)[0] == ""
    except ValueError:
        return False


def place_init_pid(
    root: str,
    prefix: str,
    pod_uid: str,
    pid: int,
    ops: ResctrlOps | None = None,
    *,
    proc: str | None = None,
    leave_runtime_groups: bool = False,
) -> bool | None:
    """Put a container's init process into its pod's group (StartContainer fast path).

    Creates the group if missing (idempotent) and writes ``pid`` once. At
    StartContainer the init process has one thread and has not run yet, so every thread
    and child it creates later inherits the group.

    Args:
        root: the resctrl root. prefix: the group prefix (already validated).
        pod_uid: untrusted pod uid. pid: the init process in the host PID namespace.
        ops: raw operations; default :class:`OsResctrlOps` on ``root``.
        proc: where ``/proc`` is; when given, ``<proc>/<pid>/cpu_resctrl_groups``
            (CONFIG_PROC_CPU_RESCTRL) is read first, and a process in a class (another
            CTRL_MON group: the write could only fail) is left alone, and so is one in
            a MON group that is not ours when ``leave_runtime_groups`` (a runtime made
            it, ``resctrl.runtime_groups`` attributes it). Without the file: placed.

    Returns:
        True if placed, False if the process already exited (ESRCH), None if left
        where it is (the reconciler decides).

    Raises:
        InvalidPodUid: the uid is not a plain Kubernetes uid (nothing was touched).
        ValueError: ``pid`` < 1.
        Any error of :meth:`ResctrlGroups.create` and :meth:`ResctrlGroups.add_task`.
    """
    name = group_name(prefix, pod_uid)
    if pid < 1:
        raise ValueError(f"not a process id: {pid}")
    if proc is not None and _elsewhere(proc, pid, prefix, leave_runtime_groups):
        return None
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


def _elsewhere(proc: str, pid: int, prefix: str, leave_runtime_groups: bool) -> bool:
    """Whether ``/proc/<pid>/cpu_resctrl_groups`` puts the process where the fast
    path must leave it: ``res:<ctrl>`` other than ``/``, or (``leave_runtime_groups``)
    ``mon:<group>`` of a group without our prefix. Unreadable: False."""
    try:
        with open(f"{proc}/{pid}/cpu_resctrl_groups", encoding="ascii", errors="replace") as f:
            text = f.read(4096)
    except OSError:
        return False
    fields = dict(line.partition(":")[::2] for line in text.splitlines())
    res, mon = fields.get("res", "/").strip(), fields.get("mon", "").strip().strip("/")
    if res not in ("", "/"):
        return True
    leaf = mon.rpartition("/")[2]
    return leave_runtime_groups and bool(leaf) and not leaf.startswith(prefix)
