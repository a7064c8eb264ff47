"""Facts about the host's threads, read from ``/proc``.

The emulated resctrl filesystem needs to know whether a TID exists, whether it is
still the same thread it was (TIDs are reused), what a thread created, and how much
CPU it used where. Threads exit at any moment, so every function here answers
"vanished" with ``None`` or an empty list instead of raising.

``proc`` is a parameter everywhere so tests can point it at a fixture tree.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = [
    "CLOCK_TICKS",
    "ThreadStat",
    "all_thread_ids",
    "boot_ticks",
    "child_pids",
    "cpu_busy_ticks",
    "read_tgid",
    "read_thread_stat",
    "thread_ids",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Clock ticks per second, the unit of ``/proc/<tid>/stat`` times."""

# Field positions in /proc/<tid>/stat after the ")" that closes the command name
# (proc(5) numbers fields from 1; the state, field 3, is index 0 here).
_UTIME, _STIME, _STARTTIME, _PROCESSOR = 11, 12, 19, 36


@dataclass(frozen=True, slots=True)
class ThreadStat:
    """One reading of ``/proc/<tid>/stat``.

    ``start_ticks`` (clock ticks since boot) identifies the thread together with its
    TID; ``cpu_ticks`` is user + system time; ``cpu`` the CPU it last ran on.
    """

    tid: int
    start_ticks: int
    cpu_ticks: int
    cpu: int


def _read(path: str) -> bytes | None:
    """A small file's content, None when it cannot be read.

    Plain ``os`` calls: this runs for every thread on every refresh, and the ``io``
    layer of ``open()`` costs about half again as much.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_thread_stat(tid: int, proc: str = "/proc") -> ThreadStat | None:
    """Read ``/proc/<tid>/stat``; None when the thread does not exist (any more).

    ``/proc/<tid>`` resolves every thread id, not only thread-group leaders.
    """
    raw = _read(f"{proc}/{tid}/stat")
    if raw is None:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ThreadStat(
            tid=tid,
            start_ticks=int(fields[_STARTTIME]),
            cpu_ticks=int(fields[_UTIME]) + int(fields[_STIME]),
            cpu=int(fields[_PROCESSOR]),
        )
    except (IndexError, ValueError):
        return None


def read_tgid(tid: int, proc: str = "/proc") -> int | None:
    """Thread-group id (process id) of ``tid``; None when it does not exist."""
    raw = _read(f"{proc}/{tid}/status")
    for line in raw.splitlines() if raw else ():
        if line.startswith(b"Tgid:"):
            return int(line.split()[1])
    return None


def thread_ids(pid: int, proc: str = "/proc") -> list[int]:
    """Every TID of the process ``pid`` (sorted); empty when it is gone."""
    try:
        names = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def child_pids(tid: int, proc: str = "/proc") -> list[int]:
    """Processes created by the thread ``tid`` and not yet reaped; empty when gone."""
    raw = _read(f"{proc}/{tid}/task/{tid}/children")
    return [int(p) for p in raw.split()] if raw else []


def all_thread_ids(proc: str = "/proc") -> list[int]:
    """Every TID on the host (sorted), as the default resctrl group lists them."""
    tids: list[int] = []
    for name in os.listdir(proc):
        if name.isdigit():
            tids.extend(thread_ids(int(name), proc))
    return sorted(tids)


def boot_ticks() -> int:
    """Now, in clock ticks since boot: the scale of :attr:`ThreadStat.start_ticks`."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS)


def cpu_busy_ticks(proc: str = "/proc") -> list[int]:
    """Busy clock ticks per CPU since boot (user+nice+system+irq+softirq+steal).

    Index = CPU number; CPUs missing from ``/proc/stat`` (offline) count 0.
    """
    busy: dict[int, int] = {}
    with open(f"{proc}/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu") or line.startswith(b"cpu "):
                continue
            parts = line.split()
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, parts[1:9])
            busy[int(parts[0][3:])] = user + nice + system + irq + softirq + steal
    return [busy.get(cpu, 0) for cpu in range(max(busy, default=-1) + 1)]
