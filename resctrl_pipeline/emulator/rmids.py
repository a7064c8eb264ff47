"""The RMIDs of an emulated node: allocation, limbo after release, a settable limit.

Kernel behaviour reproduced (``arch/x86/kernel/cpu/resctrl/monitor.c``):

* RMID 0 belongs to the default group and is never handed out, so ``num_rmids``
  RMIDs allow ``num_rmids - 1`` monitoring groups.
* Free RMIDs are handed out least recently freed first (the kernel's free list is an
  LRU list).
* A released RMID goes to *limbo*. The kernel frees it once its residual occupancy
  falls below ``max_threshold_occupancy`` (checked every second); here it is freed
  after ``limbo_seconds``, or at once by :meth:`RmidPool.release_limbo`.
* Allocation fails with ``EBUSY`` while only limbo RMIDs remain (newer kernels) and
  with ``ENOSPC`` when there are none at all.

Not thread-safe: the owner (:class:`~.resctrltree.ResctrlTree`) serialises calls.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable

__all__ = ["RmidPool"]


class RmidPool:
    """RMID bookkeeping of one emulated node.

    Args:
        num_rmids: RMIDs the hardware has, including RMID 0 (at least 1).
        limbo_seconds: how long a released RMID stays unusable (0: reusable at once).
        clock: monotonic seconds; injectable so tests control limbo expiry.
    """

    def __init__(self, num_rmids: int, limbo_seconds: float, clock: Callable[[], float]) -> None:
        if num_rmids < 1:
            raise ValueError("num_rmids must be at least 1")
        if limbo_seconds < 0:
            raise ValueError("limbo_seconds must not be negative")
        self._num_rmids = num_rmids
        self._limbo_seconds = limbo_seconds
        self._clock = clock
        self._free: deque[int] = deque(range(1, num_rmids))
        self._used: set[int] = set()
        self._limbo: dict[int, float] = {}  # rmid → release time, in release order

    @property
    def num_rmids(self) -> int:
        """The current limit, as ``info/L3_MON/num_rmids`` shows it."""
        return self._num_rmids

    def allocate(self) -> int:
        """Take a free RMID.

        Raises:
            OSError: ``EBUSY`` when the only unused RMIDs are still in limbo;
                ``ENOSPC`` when every RMID is in use.
        """
        self._expire_limbo()
        if self._free:
            rmid = self._free.popleft()
            self._used.add(rmid)
            return rmid
        if any(rmid < self._num_rmids for rmid in self._limbo):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def release(self, rmid: int) -> None:
        """Return an RMID taken by :meth:`allocate`; it enters limbo."""
        self._used.discard(rmid)
        self._limbo[rmid] = self._clock()
        self._expire_limbo()

    def release_limbo(self) -> None:
        """Free every RMID in limbo now, as if their occupancy had drained."""
        self._expire_limbo(force=True)

    def in_limbo(self) -> tuple[int, ...]:
        """RMIDs waiting in limbo, oldest first."""
        self._expire_limbo()
        return tuple(self._limbo)

    def free_count(self) -> int:
        """How many groups could be created right now."""
        self._expire_limbo()
        return len(self._free)

    def set_limit(self, num_rmids: int) -> None:
        """Change ``num_rmids``; RMIDs in use above the new limit stay in use.

        Raises:
            ValueError: ``num_rmids`` is below 1.
        """
        if num_rmids < 1:
            raise ValueError("num_rmids must be at least 1")
        self._num_rmids = num_rmids
        kept = [rmid for rmid in self._free if rmid < num_rmids]
        known = set(kept) | self._used | set(self._limbo)
        kept.extend(rmid for rmid in range(1, num_rmids) if rmid not in known)
        self._free = deque(kept)

    def _expire_limbo(self, force: bool = False) -> None:
        now = self._clock()
        for rmid, released in list(self._limbo.items()):
            if force or now - released >= self._limbo_seconds:
                del self._limbo[rmid]
                if rmid < self._num_rmids:
                    self._free.append(rmid)
