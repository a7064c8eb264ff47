"""What a failed resctrl write means: errnos turned into state-named exceptions.

One place for every implementation of the :class:`~resctrl_pipeline.resctrl.ops.ResctrlOps`
seam, so the kernel, the FUSE emulation and the test doubles are judged alike. The
errno table is in ``docs/reconciler.md``.
"""

from __future__ import annotations

import errno
from typing import NoReturn

from resctrl_pipeline.errors import PipelineError, ResctrlUnavailable

__all__ = [
    "AssignmentRefused",
    "CountersExhausted",
    "GroupVanished",
    "NoFreeRmid",
    "PermissionProblem",
    "ResctrlWriteError",
    "RmidUnavailable",
    "RmidsInLimbo",
    "TaskRefused",
    "raise_classified",
]


class ResctrlWriteError(PipelineError):
    """A resctrl operation failed; ``errno`` and ``path`` say how and where."""

    def __init__(self, message: str, path: str, err: int | None) -> None:
        self.path = path
        self.errno = err
        super().__init__(f"{message}: {path}")


class PermissionProblem(ResctrlWriteError):
    """EACCES/EPERM: the agent lacks a privilege (a node-level problem, not a race)."""


class RmidUnavailable(ResctrlWriteError):
    """The kernel has no RMID to give to a new monitoring group right now."""


class NoFreeRmid(RmidUnavailable):
    """mkdir ENOSPC: every RMID is in use (capacity is ``info/L3_MON/num_rmids``)."""


class RmidsInLimbo(RmidUnavailable):
    """mkdir EBUSY: the only free RMIDs still hold cache lines of deleted groups.

    The kernel frees them once their occupancy decays (re-checked every second).
    """


class GroupVanished(ResctrlWriteError):
    """A group's ``tasks`` answered "gone" (ENOENT, or ENODEV from kernfs): removed behind
    our back."""


class TaskRefused(ResctrlWriteError):
    """EINVAL on a ``tasks`` write; ``status`` is the kernel's reason.

    Typically the thread sits in another control group (a MON group only accepts
    threads of its parent CTRL_MON group).
    """

    def __init__(self, path: str, tid: int, status: str) -> None:
        self.tid = tid
        self.status = status
        super().__init__(f"kernel refused tid {tid} ({status or 'no status'})", path, errno.EINVAL)


class CountersExhausted(ResctrlWriteError):
    """ENOSPC on ``mbm_L3_assignments``: no free MBM counter in some domain (ABMC).

    ``status`` is ``info/last_cmd_status`` (``Failed to allocate counter for <event>
    in domain <id>`` …). Domains walked before the failure stay assigned.
    """

    def __init__(self, path: str, status: str) -> None:
        self.status = status
        super().__init__(f"no free MBM counter ({status or 'no status'})", path, errno.ENOSPC)


class AssignmentRefused(ResctrlWriteError):
    """EINVAL/ENOENT with a reason on ``mbm_L3_assignments``: the request was wrong for
    this kernel (``Invalid event``, ``Invalid domain id``, ``mbm_event mode is not
    enabled`` …); ``status`` is ``info/last_cmd_status``."""

    def __init__(self, path: str, err: int | None, status: str) -> None:
        self.status = status
        super().__init__(f"counter assignment refused ({status or 'no status'})", path, err)


_PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM)


def raise_classified(err: OSError, what: str, path: str, *, root_missing: bool = False) -> NoReturn:
    """Raise the exception for ``err`` at ``path``.

    Args:
        err: the failure. what: the operation, for the message. path: where.
        root_missing: ENOENT or ENODEV (resctrl unmounted under an open descriptor)
            means ``mon_groups`` itself is missing (monitoring unusable).

    Raises:
        ResctrlUnavailable: ENOENT or ENODEV with ``root_missing``.
        PermissionProblem: EACCES/EPERM. ResctrlWriteError: any other errno.
    """
    code = err.errno
    if root_missing and code in (errno.ENOENT, errno.ENODEV):
        raise ResctrlUnavailable(f"{path}: mon_groups missing ({err.strerror})") from err
    cls = PermissionProblem if code in _PERMISSION_ERRNOS else ResctrlWriteError
    raise cls(f"{what} ({err.strerror})", path, code) from err
