"""Which monitoring group each host thread belongs to, as the emulated kernel sees it.

A thread is in the default group unless a write to some group's ``tasks`` put it
elsewhere. Placements are checked against ``/proc`` in two phases so that the
filesystem's lock is never held during I/O:

1. :meth:`TaskPlacement.snapshot` (under the owner's lock) copies the placements;
2. :func:`survey` (no lock) reads ``/proc``: which placed threads still exist as the
   same thread (a TID can be reused; the start time tells them apart), and which
   threads were created by placed threads after those joined their group;
3. :meth:`TaskPlacement.apply` (under the lock) drops the vanished threads and places
   the created ones, unless a write changed them in between.

:func:`parse_task_write` reads the id out of one ``write()`` to a ``tasks`` file.

Inheritance is approximated, not exact: on the kernel every new thread or child joins
its creator's group. Here a thread joins group G when it started (to the clock tick)
strictly after a thread of G joined G and it is either a child process of that thread
or a new thread of a process whose *leader* is in G. Threads that existed before
their process was assigned are never adopted, so a caller that writes only the
leader's TID still misses them, as on the kernel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from resctrl_pipeline.emulator.threads import (
    ThreadStat,
    child_pids,
    read_thread_stat,
    thread_ids,
)

__all__ = ["Placement", "Survey", "TaskPlacement", "parse_task_write", "survey"]

G = TypeVar("G")


# kstrtoint(s, 0, …) syntax: optional sign, then hex (0x…), octal (0…) or decimal.
_KSTRTOINT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_INT_MAX = 2**31 - 1


def parse_task_write(data: bytes) -> int | None:
    """The one id in a ``write()`` to ``tasks``; None for an empty write (a no-op).

    Syntax of the kernel's ``kstrtoint(s, 0)`` after stripping white space. One id
    per write, as older kernels take it (newer ones also take comma lists).

    Raises:
        ValueError: with the kernel's ``last_cmd_status`` text, for anything but one
            integer in range (several ids, separated by newlines or commas, included).
    """
    token = data.decode("ascii", errors="replace").strip()
    if not token:
        return None
    if not _KSTRTOINT.fullmatch(token):
        raise ValueError(f"Task list parsing error pid {token}\n")
    body = token.lstrip("+-")
    base = 16 if body[:2].lower() == "0x" else 8 if body.startswith("0") else 10
    value = int(body, base) * (-1 if token.startswith("-") else 1)
    if value > _INT_MAX or value < -_INT_MAX - 1:
        raise ValueError(f"Task list parsing error pid {token}\n")
    if value < 0:
        raise ValueError(f"Invalid pid {value}\n")
    return value


@dataclass(frozen=True, slots=True)
class Placement(Generic[G]):
    """Thread ``tid`` (started at ``start_ticks``, in process ``tgid``) is in ``group``
    since ``joined_ticks`` (clock ticks since boot)."""

    group: G
    start_ticks: int
    joined_ticks: int
    tgid: int


@dataclass(slots=True)
class Survey(Generic[G]):
    """What ``/proc`` said about a snapshot of placements.

    Attributes:
        alive: placed threads that still exist as the same thread → their stat.
        gone: placements whose thread exited or whose TID now names another thread.
        adopted: threads created by placed threads → (their new placement, stat).
    """

    alive: dict[int, ThreadStat] = field(default_factory=dict)
    gone: dict[int, Placement[G]] = field(default_factory=dict)
    adopted: dict[int, tuple[Placement[G], ThreadStat]] = field(default_factory=dict)


def survey(
    snapshot: Mapping[int, Placement[G]],
    default: G,
    proc: str = "/proc",
    placed: Container[int] | None = None,
) -> Survey[G]:
    """Check a snapshot of placements against ``/proc``; call without holding locks.

    Args:
        snapshot: TID → placement, from :meth:`TaskPlacement.snapshot` (possibly
            only some of them, e.g. one group's).
        default: the default group; nothing is adopted into it (it is where
            unplaced threads already are).
        proc: the proc filesystem to read.
        placed: every placed TID, when ``snapshot`` holds only some: placed threads
            are never adopted. Default: the TIDs of ``snapshot``.
    """
    known = snapshot if placed is None else placed
    result: Survey[G] = Survey()
    work: list[tuple[int, Placement[G]]] = []
    for tid, entry in snapshot.items():
        st = read_thread_stat(tid, proc)
        if st is None or st.start_ticks != entry.start_ticks:
            result.gone[tid] = entry
            continue
        result.alive[tid] = st
        if entry.group is not default:
            work.append((tid, entry))
    while work:
        tid, entry = work.pop()
        candidates = [(child, child) for child in child_pids(tid, proc)]
        if entry.tgid == tid:
            candidates.extend((t, tid) for t in thread_ids(tid, proc) if t != tid)
        for cand, tgid in candidates:
            if cand in known or cand in result.adopted:
                continue
            st = read_thread_stat(cand, proc)
            if st is None or st.start_ticks <= entry.joined_ticks:
                continue
            adopted = Placement(entry.group, st.start_ticks, st.start_ticks, tgid)
            result.adopted[cand] = (adopted, st)
            work.append((cand, adopted))
    return result


class TaskPlacement(Generic[G]):
    """TID → group for threads outside the default group (and those put back in it).

    Not thread-safe: the owner serialises calls and runs :func:`survey` between
    :meth:`snapshot` and :meth:`apply` without its lock.

    Args:
        default: the default group, where every unplaced thread is.
    """

    def __init__(self, default: G) -> None:
        self._default = default
        self._placed: dict[int, Placement[G]] = {}

    def snapshot(self) -> dict[int, Placement[G]]:
        """A copy of the current placements, to hand to :func:`survey`."""
        return dict(self._placed)

    def apply(self, found: Survey[G], is_live: Callable[[G], bool]) -> None:
        """Forget vanished threads and place adopted ones, unless changed meanwhile.

        Args:
            found: the survey of an earlier snapshot.
            is_live: whether a group still exists (adoption into a removed group is
                dropped).
        """
        for tid, placed in found.gone.items():
            if self._placed.get(tid) == placed:
                del self._placed[tid]
        for tid, (placed, _st) in found.adopted.items():
            if tid not in self._placed and is_live(placed.group):
                self._placed[tid] = placed

    def move(self, tid: int, group: G, start_ticks: int, tgid: int, now_ticks: int) -> bool:
        """Put a thread into ``group`` (a write to that group's ``tasks``).

        Returns:
            False when the thread was already there (nothing changed).
        """
        current = self._placed.get(tid)
        if current is not None and current.start_ticks == start_ticks:
            if current.group is group:
                return False
            was = current.group
        else:
            was = self._default
        # Recorded even when ``group`` is the default group, so that no inheritance
        # rule moves an explicitly placed thread later.
        self._placed[tid] = Placement(group, start_ticks, now_ticks, tgid)
        return was is not group

    def evacuate(self, group: G, now_ticks: int, to: G | None = None) -> None:
        """Move every thread of ``group`` to ``to`` (default: the default group), as
        ``rmdir`` does."""
        target = self._default if to is None else to
        for tid, placed in list(self._placed.items()):
            if placed.group is group:
                self._placed[tid] = Placement(target, placed.start_ticks, now_ticks, placed.tgid)

    def current(self, tid: int, start_ticks: int) -> G:
        """The group of the thread ``tid`` that started at ``start_ticks``: a placement
        recorded for an earlier thread with the same TID does not count."""
        placed = self._placed.get(tid)
        if placed is None or placed.start_ticks != start_ticks:
            return self._default
        return placed.group

    def group_of(self, tid: int) -> G:
        """The group of ``tid`` as last recorded (the default group when unplaced)."""
        placed = self._placed.get(tid)
        return self._default if placed is None else placed.group

    def members(self, group: G) -> list[int]:
        """TIDs placed in ``group``, sorted (current as of the last :meth:`apply`)."""
        return sorted(tid for tid, placed in self._placed.items() if placed.group is group)
