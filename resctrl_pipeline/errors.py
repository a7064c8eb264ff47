"""Exception hierarchy, named after states rather than after the code that raised.

Every module raises a subclass of :class:`PipelineError` and chains the cause
(``raise X(...) from err``) so the original errno or decoder message survives.
Subsystems add their own subclasses next to the code that raises them.
"""

from __future__ import annotations

import errno

__all__ = [
    "GONE_ERRNOS",
    "ConfigError",
    "DecodeError",
    "PipelineError",
    "ResctrlGroupGone",
    "ResctrlReadError",
    "ResctrlUnavailable",
]

GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EINVAL})
"""Errnos of a *read* from a cgroup or resctrl group that mean "it went away".

ENOENT: removed before the open (resctrl also answers it for a group being deleted).
ENODEV: kernfs, for a file opened before its directory was removed. ESRCH: the task
behind a list vanished while it was being rendered. EINVAL: kernfs for an open file
whose node is being torn down (a read has no input the kernel could call invalid).
Writes are classified separately: there EINVAL and ESRCH have meanings of their own.
"""


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(PipelineError):
    """A configuration key has an invalid value or is unknown (exit code 2)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"invalid configuration: {key} = {value!r}: {reason}")


class DecodeError(PipelineError):
    """An internal message could not be decoded (malformed, oversized, unknown kind)."""


class ResctrlUnavailable(PipelineError):
    """resctrl monitoring cannot be used at the configured root; the message says why."""


class ResctrlReadError(PipelineError):
    """A monitoring counter could not be read as a number.

    ``reason`` is a short stable label used in metrics: ``unavailable``, ``error``,
    ``unassigned``, ``garbage``, ``missing``, ``gone`` or ``io``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class ResctrlGroupGone(ResctrlReadError):
    """The group was removed while it was read (one of :data:`GONE_ERRNOS`)."""

    def __init__(self, detail: str) -> None:
        super().__init__("gone", detail)
