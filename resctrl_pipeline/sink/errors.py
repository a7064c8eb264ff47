"""Errors of the writer, and the labels under which write failures are counted."""

from __future__ import annotations

import errno

from resctrl_pipeline.errors import PipelineError

__all__ = [
    "DISK_FULL_ERRNOS",
    "BatchRejected",
    "SinkClosed",
    "SinkError",
    "is_disk_full",
    "write_error_reason",
]

#: Errors that mean "no space for us": the filesystem is full or our quota is used up.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class SinkError(PipelineError):
    """Base class of the writer's errors."""


class BatchRejected(SinkError):
    """An occupancy batch cannot be turned into rows of the output schema.

    ``reason`` is a short stable label used in metrics: ``missing_column``,
    ``ragged_columns``, ``bad_value``, ``null_value`` or ``not_columnar``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class SinkClosed(SinkError):
    """The sink was used after :meth:`ParquetSink.close`."""


def write_error_reason(err: OSError) -> str:
    """A metric label for a failed write: the errno name in lower case (``enospc``).

    ``unknown`` when the error carries no errno (some pyarrow I/O errors).
    """
    code = err.errno
    if code is None:
        return "unknown"
    return errno.errorcode.get(code, str(code)).lower()


def is_disk_full(err: OSError) -> bool:
    """True for ENOSPC (filesystem full) and EDQUOT (quota reached)."""
    return err.errno in DISK_FULL_ERRNOS
