"""MBM counter assignment (AMD ABMC, ``mbm_event`` mode) of an emulated node.

Kernel behaviour reproduced (v6.18, ``fs/resctrl/monitor.c``; facts and texts:
``shared/reference/resctrl-modern.md`` §1):

* each L3 domain has ``counters`` hardware counters; a group's MBM event counts in a
  domain only while it holds one there (``(event, domain)`` in :attr:`Group.assigned`);
* with ``mbm_assign_on_mkdir`` = 1 a new group (and the root at mount) gets
  ``mbm_total_bytes`` then ``mbm_local_bytes``, domain by domain; an event whose
  allocation fails in a domain stops there, the group is still created and
  ``last_cmd_status`` keeps ``Failed to allocate counter for <event> in domain <id>``;
* ``mbm_L3_assignments`` writes (``<event>:<dom>=<e|_>[;…]`` lines, ``*`` = every
  domain) with the kernel's errnos and ``last_cmd_status`` lines (:class:`AssignError`);
* a mode switch frees every counter; switching to ``mbm_event`` sets
  ``mbm_assign_on_mkdir`` to 1 and assigns nothing.

Which counts restart (every assignment, every mode switch) is the caller's business:
the methods return what changed. Not thread-safe: the tree calls it under its lock.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from resctrl_pipeline.emulator.resctrlnodes import Group

__all__ = ["MBM_EVENTS", "AssignError", "CounterAssignment", "parse_bool"]

MBM_EVENTS = ("mbm_total_bytes", "mbm_local_bytes")
"""The assignable events, in the order the kernel assigns them on mkdir."""

NOT_ENABLED = "mbm_event counter assignment mode is not enabled\n"
"""``last_cmd_status`` of reads of the mbm_event-only files in default mode."""


class AssignError(Exception):
    """A refused command: the errno for ``write()`` and the ``last_cmd_status`` text
    (empty when the kernel leaves the status alone)."""

    def __init__(self, code: int, status: str = "") -> None:
        super().__init__(status or errno.errorcode[code])
        self.errno = code
        self.status = status


def parse_bool(data: bytes) -> bool:
    """The kernel's ``kstrtobool``: ``1``/``y``/``Y``/``on`` true, ``0``/``n``/``N``/
    ``off`` false (only the first characters matter).

    Raises:
        AssignError: ``EINVAL`` (status untouched) for anything else.
    """
    text = data.decode("ascii", errors="replace")
    if text[:1] in ("1", "y", "Y"):
        return True
    if text[:1] in ("0", "n", "N"):
        return False
    if text[:1] in ("o", "O") and text[1:2] in ("n", "N"):
        return True
    if text[:1] in ("o", "O") and text[1:2] in ("f", "F"):
        return False
    raise AssignError(errno.EINVAL)


class CounterAssignment:
    """The counters of every L3 domain and the mode, for one emulated node.

    Args:
        domains: L3 domain ids, in the order the kernel walks them.
        counters: counters per domain (``num_mbm_cntrs``).
        per_group: events ``mbm_assign_on_mkdir`` gives a new group: 2 (total and
            local) or 1 (total only).
        events: the enabled MBM events (those of ``mon_features``).
    """

    def __init__(
        self, domains: Iterable[int], counters: int, per_group: int, events: Iterable[str]
    ) -> None:
        self.domains = tuple(domains)
        self.counters = counters
        self.events = tuple(e for e in MBM_EVENTS if e in set(events))
        self._auto = self.events[:per_group]
        self.mbm_event = True
        self.on_mkdir = True
        self._free = dict.fromkeys(self.domains, counters)

    # --- files of info/L3_MON --------------------------------------------------------

    def mode_text(self) -> str:
        """``mbm_assign_mode``: the active mode in brackets."""
        return "[mbm_event]\ndefault\n" if self.mbm_event else "[default]\nmbm_event\n"

    def num_text(self) -> str:
        """``num_mbm_cntrs``: ``<domain>=<n>`` joined by ``;``."""
        return ";".join(f"{d}={self.counters}" for d in self.domains) + "\n"

    def available_text(self) -> str:
        """``available_mbm_cntrs``: free counters per domain.

        Raises:
            AssignError: ``EINVAL`` in default mode.
        """
        self._require_mbm_event(NOT_ENABLED)
        return ";".join(f"{d}={self._free[d]}" for d in self.domains) + "\n"

    def on_mkdir_text(self) -> str:
        """``mbm_assign_on_mkdir``: ``1`` or ``0``.

        Raises:
            AssignError: ``EINVAL`` in default mode.
        """
        self._require_mbm_event(NOT_ENABLED)
        return "1\n" if self.on_mkdir else "0\n"

    def write_on_mkdir(self, data: bytes) -> None:
        """A write to ``mbm_assign_on_mkdir`` (kstrtobool).

        Raises:
            AssignError: ``EINVAL`` for a bad value or in default mode.
        """
        value = parse_bool(data)
        self._require_mbm_event(NOT_ENABLED)
        self.on_mkdir = value

    def write_mode(self, data: bytes, groups: Iterable[Group]) -> bool:
        """A write to ``mbm_assign_mode``; True when the mode changed (then every
        counter of ``groups`` was freed and all MBM counts must restart).

        Raises:
            AssignError: ``EINVAL`` without the trailing newline (status untouched),
                ``Unsupported assign mode`` for another word.
        """
        if not data.endswith(b"\n"):
            raise AssignError(errno.EINVAL)
        word = data[:-1]
        if word not in (b"default", b"mbm_event"):
            raise AssignError(errno.EINVAL, "Unsupported assign mode\n")
        wanted = word == b"mbm_event"
        if wanted == self.mbm_event:
            return False
        for group in groups:
            group.assigned.clear()
        self._free = dict.fromkeys(self.domains, self.counters)
        self.mbm_event = wanted
        if wanted:
            self.on_mkdir = True
        return True

    # --- groups ------------------------------------------------------------------------

    def on_create(self, group: Group) -> tuple[list[tuple[str, int]], str]:
        """Counters for a new group when ``mbm_assign_on_mkdir`` says so.

        Returns:
            The ``(event, domain)`` pairs assigned, and the ``last_cmd_status`` lines
            of the allocations that failed ("" when none did).
        """
        if not (self.mbm_event and self.on_mkdir):
            return [], ""
        done: list[tuple[str, int]] = []
        status = ""
        for event in self._auto:
            for domain in self.domains:
                try:
                    if self._assign(group, event, domain):
                        done.append((event, domain))
                except AssignError as err:
                    status += err.status
                    break
        return done, status

    def release(self, group: Group) -> None:
        """Free every counter of a removed group (no limbo for counters)."""
        for _event, domain in group.assigned:
            self._free[domain] += 1
        group.assigned.clear()

    def assignments_text(self, group: Group) -> str:
        """``mbm_L3_assignments`` of ``group``: one line per enabled MBM event.

        Raises:
            AssignError: ``EINVAL`` in default mode.
        """
        self._require_mbm_event(NOT_ENABLED)
        return "".join(
            f"{event}:"
            + ";".join(
                f"{d}={'e' if (event, d) in group.assigned else '_'}" for d in self.domains
            )
            + "\n"
            for event in self.events
        )

    def write_assignments(self, group: Group, data: bytes, done: list[tuple[str, int]]) -> None:
        """One ``write()`` to ``mbm_L3_assignments``. Lines are applied in order and
        stop at the first failure; what came before stays applied.

        Args:
            done: receives the ``(event, domain)`` pairs newly assigned (their counts
                restart), also when a later line fails.

        Raises:
            AssignError: the kernel's errno and ``last_cmd_status`` text.
        """
        if not data.endswith(b"\n"):
            raise AssignError(errno.EINVAL)
        self._require_mbm_event("mbm_event mode is not enabled\n")
        for line in data[:-1].decode("ascii", errors="replace").split("\n"):
            self._apply_line(group, line, done)

    # --- internals ----------------------------------------------------------------------

    def _require_mbm_event(self, status: str) -> None:
        if not self.mbm_event:
            raise AssignError(errno.EINVAL, status)

    def _apply_line(self, group: Group, line: str, done: list[tuple[str, int]]) -> None:
        event, _, rest = line.partition(":")
        if event not in self.events:
            raise AssignError(errno.ENOENT, f"Invalid event {event}\n")
        for item in rest.split(";"):
            dom, _, state = item.strip().partition("=")
            if dom == "*":
                targets = list(self.domains)
            elif not dom.isdigit():
                raise AssignError(errno.EINVAL, "Missing domain id\n")
            elif int(dom) not in self.domains:
                raise AssignError(errno.EINVAL, f"Invalid domain id {int(dom)}\n")
            else:
                targets = [int(dom)]
            failed = f"Assign operation '{event}:{dom}={state}' failed\n"
            if state not in ("e", "_"):
                raise AssignError(errno.EINVAL, failed)
            for domain in targets:
                if state == "_":
                    self._unassign(group, event, domain)
                    continue
                try:
                    if self._assign(group, event, domain):
                        done.append((event, domain))
                except AssignError as err:
                    raise AssignError(err.errno, err.status + failed) from None

    def _assign(self, group: Group, event: str, domain: int) -> bool:
        if (event, domain) in group.assigned:
            return False
        if not self._free[domain]:
            raise AssignError(
                errno.ENOSPC, f"Failed to allocate counter for {event} in domain {domain}\n"
            )
        self._free[domain] -= 1
        group.assigned.add((event, domain))
        return True

    def _unassign(self, group: Group, event: str, domain: int) -> None:
        if (event, domain) in group.assigned:
            group.assigned.discard((event, domain))
            self._free[domain] += 1
