"""MBM counter assignment (AMD ABMC, ``mbm_event`` mode): the file formats.

Reference ``resctrl-modern.md`` §1. Per group, ``mbm_L3_assignments`` reads one line
per enabled MBM event, ``<event>:<domain>=<e|_>[;…]`` (``e``: a counter is assigned
in that domain); a write takes the same form, domain ``*`` meaning every domain, and
must end in a newline. ``info/L3_MON/num_mbm_cntrs`` and ``available_mbm_cntrs`` read
``<domain>=<n>;…``. Pure functions: the I/O is in
:class:`~resctrl_pipeline.resctrl.groups.ResctrlGroups`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CounterBudget", "assignment_request", "fully_assigned", "parse_assignments"]

Assignments = dict[str, dict[int, bool]]


@dataclass(frozen=True, slots=True)
class CounterBudget:
    """The node's MBM counters: mode, counters per domain, free ones per domain.

    ``mode`` is the bracketed ``mbm_assign_mode`` (None when the file is absent:
    kernel before 6.18 or no MBM). The dicts are empty outside ``mbm_event`` mode.
    """

    mode: str | None
    per_domain: dict[int, int]
    available: dict[int, int]

    @property
    def assignable(self) -> bool:
        """True in ``mbm_event`` mode: counters must be assigned to groups."""
        return self.mode == "mbm_event"

    @property
    def free(self) -> int:
        """Counters free in every domain (the smallest domain's count)."""
        return min(self.available.values(), default=0)

    @property
    def total(self) -> int:
        """Counters per domain (the smallest domain's count)."""
        return min(self.per_domain.values(), default=0)


def parse_assignments(text: str) -> Assignments:
    """``mbm_total_bytes:0=e;1=_`` lines → {event: {domain: assigned}}.

    Malformed items are skipped (they cannot name a counter).
    """
    out: Assignments = {}
    for line in text.splitlines():
        event, colon, rest = line.strip().partition(":")
        if not colon or not event:
            continue
        doms = out.setdefault(event, {})
        for item in rest.split(";"):
            dom, eq, state = item.partition("=")
            if eq and dom.isdigit() and state in ("e", "_"):
                doms[int(dom)] = state == "e"
    return out


def fully_assigned(assignments: Assignments, events: Iterable[str]) -> bool:
    """Every event has a counter in every domain."""
    return all(
        (doms := assignments.get(event)) and all(doms.values()) for event in events
    )


def assignment_request(events: Iterable[str], assign: bool) -> str:
    """The text that assigns (or frees) ``events`` in every domain, one line each."""
    state = "e" if assign else "_"
    return "".join(f"{event}:*={state}\n" for event in events)
