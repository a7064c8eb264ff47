"""Exception hierarchy, named after states rather than after the code that raised.

Every module raises a subclass of :class:`PipelineError` and chains the cause
(``raise X(...) from err``) so the original errno or decoder message survives.
Subsystems add their own subclasses next to the code that raises them.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "PipelineError",
    "ResctrlReadError",
    "ResctrlUnavailable",
]


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
    ``unassigned``, ``garbage``, ``missing`` or ``io``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")
