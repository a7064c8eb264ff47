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

    With ``mbm_counters`` (per domain), MBM counter assignment as on AMD ABMC in
    ``mbm_event`` mode (``resctrl-modern.md`` §1): ``assigned`` maps every group (the
    root is ``""``) to its counters per event; mkdir assigns total then local domain
    by domain while counters last when ``assign_on_mkdir``; rmdir frees at once; writes
    to ``mbm_L3_assignments`` follow the reference's formats, errnos and
    ``last_cmd_status`` lines.

    Classes (CTRL_MON groups, §4): ``classes`` holds their names; a MON group below one
    is named ``<class>/<name>``; ``closid`` maps a thread to its class (``""`` = the
    root). Writing a thread into a MON group of another class fails with EINVAL and
    ``Can't move task to different control group``; :meth:`move_to_class` is what an
    RDT-enabled runtime does (write to ``<class>/tasks``).
    """

    EVENTS = ("mbm_total_bytes", "mbm_local_bytes")

    def __init__(
        self,
        root: str = "/sys/fs/resctrl",
        num_rmids: int = 64,
        reserved: int = 0,
        *,
        mbm_counters: int | None = None,
        domains: tuple[int, ...] = (0, 1),
        assign_on_mkdir: bool = True,
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
        self.fault_status = ""
        self.mbm_counters = mbm_counters
        self.domains = domains
        self.assign_on_mkdir = assign_on_mkdir
        self.assigned: dict[str, dict[str, set[int]]] = {}
        self.assignments_written = 0
        self.classes: set[str] = set()
        self.closid: dict[int, str] = {}
        if mbm_counters is not None:
            self._assign_all("")  # the root gets counters at mount

    # -- counters ----------------------------------------------------------------------

    def free_counters(self, domain: int) -> int:
        """Counters not assigned to any group in ``domain``."""
        assert self.mbm_counters is not None
        used = sum(domain in doms for g in self.assigned.values() for doms in g.values())
        return self.mbm_counters - used

    def _assign(self, group: str, event: str, domain: int) -> bool:
        doms = self.assigned.setdefault(group, {}).setdefault(event, set())
        if domain in doms:
            return True
        if self.free_counters(domain) <= 0:
            self.status = f"Failed to allocate counter for {event} in domain {domain}"
            return False
        doms.add(domain)
        return True

    def _assign_all(self, group: str) -> None:
        """What mkdir does with ``mbm_assign_on_mkdir``: total, then local, by domain."""
        self.assigned.setdefault(group, {})
        for event in self.EVENTS:
            for domain in self.domains:
                if not self._assign(group, event, domain):
                    return

    # -- test controls ---------------------------------------------------------------

    def spawn(self, tid: int, group: str | None = None) -> None:
        """A thread starts in ``group`` (a fork inherits its creator's group and class)."""
        self.threads[tid] = group
        if group is not None:
            self.groups[group].add(tid)
            self.closid[tid] = group.rpartition("/")[0]

    def exit(self, tid: int) -> None:
        """A thread exits and leaves its group (it keeps its class if it is re-spawned
        by :meth:`move_to_class`)."""
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
        used = len(self.groups) + len(self.classes)
        return self.num_rmids - 1 - self.reserved - used - self.limbo

    def add_class(self, ctrl: str) -> None:
        """Another component makes CTRL_MON group ``ctrl`` (an RMID and a CLOSID)."""
        self.classes.add(ctrl)

    def remove_class(self, ctrl: str) -> None:
        """``rmdir <ctrl>``: its MON groups go too, every thread of it to the root."""
        self.classes.discard(ctrl)
        for name in [g for g in self.groups if g.startswith(ctrl + "/")]:
            self.groups.pop(name)
            self.assigned.pop(name, None)
            self.limbo += 1
        for tid, c in list(self.closid.items()):
            if c == ctrl:
                self.closid[tid] = ""
                self.threads[tid] = None
        self.limbo += 1

    def move_to_class(self, tid: int, ctrl: str) -> None:
        """A write of ``tid`` to ``<ctrl>/tasks`` (``""``: the root's): new CLOSID, out
        of any MON group."""
        self.exit(tid)
        self.spawn(tid)
        self.closid[tid] = ctrl

    def class_of(self, tid: int) -> str:
        """The class of a live thread (``""`` = the root)."""
        return self.closid.get(tid, "")

    def fail(self, op: str, code: int, times: int = 1, status: str = "") -> None:
        """Make the next ``times`` calls of ``op`` (a method name) raise ``code``,
        leaving ``status`` in ``last_cmd_status`` (EINVAL: "injected failure")."""
        self.faults.setdefault(op, []).extend([code] * times)
        self.fault_status = status

    # -- ResctrlOps ------------------------------------------------------------------

    @property
    def root(self) -> str:
        return self._root

    def _check(self, op: str, name: str = "") -> None:
        faults = self.faults.get(op)
        if faults:
            code = faults.pop(0)
            if self.fault_status:
                self.status = self.fault_status
            elif code == errno.EINVAL:
                self.status = "injected failure"
            raise OSError(code, os.strerror(code), name)

    def _error(self, code: int, name: str, status: str = "") -> OSError:
        self.status = status or os.strerror(code)
        return OSError(code, os.strerror(code), name)

    def mkdir(self, name: str) -> None:
        self._check("mkdir", name)
        ctrl = name.rpartition("/")[0]
        if ctrl and ctrl not in self.classes:
            raise self._error(errno.ENOENT, name)
        if name in self.groups:
            raise self._error(errno.EEXIST, name)
        if self.free_rmids() <= 0:
            code = errno.EBUSY if self.limbo else errno.ENOSPC
            raise self._error(code, name, "Out of RMIDs")
        self.groups[name] = set()
        self.mutations += 1
        if self.mbm_counters is not None and self.assign_on_mkdir:
            self._assign_all(name)

    def rmdir(self, name: str) -> None:
        self._check("rmdir", name)
        if name not in self.groups:
            raise self._error(errno.ENOENT, name)
        for tid in self.groups.pop(name):
            self.threads[tid] = None
        self.assigned.pop(name, None)
        self.limbo += 1
        self.mutations += 1

    def list_groups(self, ctrl: str = "") -> list[str]:
        self._check("list_groups")
        if ctrl and ctrl not in self.classes:
            raise self._error(errno.ENOENT, ctrl)
        return sorted(
            g.rpartition("/")[2] for g in self.groups if g.rpartition("/")[0] == ctrl
        )

    def list_classes(self) -> list[str]:
        self._check("list_classes")
        return sorted(self.classes)

    def read_class_tasks(self, ctrl: str) -> str:
        self._check("read_class_tasks", ctrl)
        if ctrl not in self.classes:
            raise self._error(errno.ENOENT, ctrl)
        tids = sorted(t for t in self.threads if self.closid.get(t, "") == ctrl)
        return "".join(f"{tid}\n" for tid in tids)

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
            raise self._error(errno.ESRCH, name, f"No task {tid}")
        if self.closid.get(tid, "") != name.rpartition("/")[0]:
            raise self._error(
                errno.EINVAL,
                name,
                f"Can't move task to different control group\nError while processing task {tid}",
            )
        self.exit(tid)
        self.spawn(tid, name)
        self.mutations += 1

    def read_info(self, relpath: str) -> str:
        self._check("read_info", relpath)
        if relpath == "last_cmd_status":
            return self.status + "\n"
        if relpath == "L3_MON/num_rmids":
            return f"{self.num_rmids}\n"
        if self.mbm_counters is not None:
            if relpath == "L3_MON/mbm_assign_mode":
                return "[mbm_event]\ndefault\n"
            if relpath == "L3_MON/num_mbm_cntrs":
                return ";".join(f"{d}={self.mbm_counters}" for d in self.domains) + "\n"
            if relpath == "L3_MON/available_mbm_cntrs":
                return ";".join(f"{d}={self.free_counters(d)}" for d in self.domains) + "\n"
        elif relpath == "L3_MON/mbm_assign_mode":
            return "[default]\n"
        raise self._error(errno.ENOENT, relpath)

    def read_assignments(self, name: str) -> str:
        self._check("read_assignments", name)
        if name not in self.groups:
            raise self._error(errno.ENOENT, name)
        if self.mbm_counters is None:
            raise self._error(
                errno.EINVAL, name, "mbm_event counter assignment mode is not enabled"
            )
        mine = self.assigned.get(name, {})
        return "".join(
            f"{event}:"
            + ";".join(f"{d}={'e' if d in mine.get(event, set()) else '_'}" for d in self.domains)
            + "\n"
            for event in self.EVENTS
        )

    def write_assignments(self, name: str, text: str) -> None:
        self._check("write_assignments", name)
        if name not in self.groups:
            raise self._error(errno.ENOENT, name)
        if not text.endswith("\n"):
            raise self._error(errno.EINVAL, name, "")
        if self.mbm_counters is None:
            raise self._error(errno.EINVAL, name, "mbm_event mode is not enabled")
        self.assignments_written += 1
        for line in text.splitlines():
            event, _, rest = line.partition(":")
            if event not in self.EVENTS:
                raise self._error(errno.ENOENT, name, f"Invalid event {event}")
            for item in rest.split(";"):
                dom, _, state = item.partition("=")
                self._apply(name, event, dom, state)

    def _apply(self, name: str, event: str, dom: str, state: str) -> None:
        if dom == "*":
            targets = list(self.domains)
        elif not dom.isdigit():
            raise self._error(errno.EINVAL, name, "Missing domain id")
        elif int(dom) not in self.domains:
            raise self._error(errno.EINVAL, name, f"Invalid domain id {dom}")
        else:
            targets = [int(dom)]
        if state not in ("e", "_"):
            status = f"Assign operation '{event}:{dom}={state}' failed"
            raise self._error(errno.EINVAL, name, status)
        for domain in targets:  # in list order; the first failure stops the walk
            if state == "_":
                self.assigned.get(name, {}).get(event, set()).discard(domain)
            elif not self._assign(name, event, domain):
                failed = self.status
                raise self._error(
                    errno.ENOSPC, name, f"{failed}\nAssign operation '{event}:{dom}=e' failed"
                )
