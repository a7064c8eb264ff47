"""When to flush, when to rotate, and what the files are called (pure: no I/O, no clock).

Every function here takes the current time as an argument, so the writer's behaviour
over hours can be tested in microseconds with a fake clock. Times called ``now`` or
``*_at`` are monotonic seconds (any origin, never jumping); ``created_at`` in
:func:`file_name` is wall-clock epoch seconds, because it ends up in the file name.

File names (architecture §5): ``<prefix><node>-<YYYYMMDDTHHMMSSZ>-<8 hex>.parquet``.
A file being written lives under two hidden names beside its final one:
``.<final>.partial`` (the Parquet bytes so far) and ``.<final>.journal`` (an Arrow IPC
stream of every flushed row, the copy that survives a crash). Neither matches
``*.parquet``, and both start with a dot, so readers that glob never see them.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass

from resctrl_pipeline.errors import ConfigError

__all__ = [
    "FINAL_SUFFIX",
    "FLUSH_ROWS",
    "JOURNAL_SUFFIX",
    "MAX_NODE_CHARS",
    "MAX_PREFIX_CHARS",
    "PARTIAL_SUFFIX",
    "FlushPolicy",
    "FlushReason",
    "RotateReason",
    "RotationPolicy",
    "check_prefix",
    "file_name",
    "final_name_of",
    "journal_name",
    "leftover_pattern",
    "partial_name",
    "sanitize_node",
]

FINAL_SUFFIX = ".parquet"
PARTIAL_SUFFIX = ".partial"
JOURNAL_SUFFIX = ".journal"

#: Buffered rows that trigger a flush by default, hence the row-group size of the files
#: the writer actor writes (the benchmarks' floors use it too, so both sides match).
FLUSH_ROWS = 65_536

#: Bounds that keep the longest name (dot + prefix + node + 26 + suffixes) far below
#: the 255-byte limit of common filesystems.
MAX_NODE_CHARS = 64
MAX_PREFIX_CHARS = 64

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HEX8 = re.compile(r"[0-9a-f]{8}")


class FlushReason(enum.StrEnum):
    """Why buffered rows were written as a row group (a label in logs and metrics)."""

    ROWS = "rows"
    BYTES = "bytes"
    INTERVAL = "interval"


class RotateReason(enum.StrEnum):
    """Why a file was finalised (a label in logs and metrics)."""

    REQUEST = "request"
    SIZE = "size"
    AGE = "age"
    SCHEMA = "schema"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """Buffered rows are flushed when any limit is reached.

    ``interval`` is the durability bound: the oldest buffered row waits at most this
    long, which is also the most a ``kill -9`` can lose. ``max_rows`` and ``max_bytes``
    (Arrow in-memory bytes) bound the buffer and the row-group size.
    """

    interval: float
    max_rows: int
    max_bytes: int

    def __post_init__(self) -> None:
        _require(self.interval > 0, "output.flush_interval", self.interval, "must be > 0")
        _require(self.max_rows > 0, "output.flush_rows", self.max_rows, "must be > 0")
        _require(self.max_bytes > 0, "output.flush_bytes", self.max_bytes, "must be > 0")

    def reason(
        self, rows: int, nbytes: int, oldest_at: float | None, now: float
    ) -> FlushReason | None:
        """Why the buffer must be flushed now, or None if it may wait.

        Args:
            rows: buffered rows.
            nbytes: buffered Arrow bytes.
            oldest_at: when the oldest buffered row arrived; None when empty.
            now: the current monotonic time.
        """
        if rows <= 0:
            return None
        if rows >= self.max_rows:
            return FlushReason.ROWS
        if nbytes >= self.max_bytes:
            return FlushReason.BYTES
        if oldest_at is not None and now >= oldest_at + self.interval:
            return FlushReason.INTERVAL
        return None

    def deadline(self, oldest_at: float | None) -> float | None:
        """When the buffer becomes due by age; None when it is empty."""
        return None if oldest_at is None else oldest_at + self.interval


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """A file is finalised when it reaches ``max_bytes`` or is ``interval`` seconds old.

    A file's age counts from the arrival of its first row, so an idle writer has no
    file and never rotates (no empty files).
    """

    max_bytes: int
    interval: float

    def __post_init__(self) -> None:
        _require(self.max_bytes > 0, "output.max_file_bytes", self.max_bytes, "must be > 0")
        _require(self.interval > 0, "output.rotate_interval", self.interval, "must be > 0")

    def reason(self, file_bytes: int, started_at: float | None, now: float) -> RotateReason | None:
        """Why the current file must be finalised now, or None.

        Args:
            file_bytes: Parquet bytes written to the file so far.
            started_at: when the file's first row arrived; None without a file.
            now: the current monotonic time.
        """
        if started_at is None:
            return None
        if file_bytes >= self.max_bytes:
            return RotateReason.SIZE
        if now >= started_at + self.interval:
            return RotateReason.AGE
        return None

    def deadline(self, started_at: float | None) -> float | None:
        """When the current file becomes due by age; None without a file."""
        return None if started_at is None else started_at + self.interval


def _require(ok: bool, key: str, value: object, reason: str) -> None:
    if not ok:
        raise ConfigError(key, value, reason)


def sanitize_node(node: str) -> str:
    """A node name reduced to a safe file-name fragment.

    The node name comes from the hostname or the environment, so it is untrusted text
    that must never steer a path: every character outside ``[A-Za-z0-9._-]`` becomes
    ``_`` (so no ``/``, NUL or non-ASCII survives), leading dots become ``_`` (no
    hidden file, no ``..``), the result is cut to :data:`MAX_NODE_CHARS`, and an empty
    result becomes ``node``.
    """
    safe = _UNSAFE.sub("_", node)[:MAX_NODE_CHARS]
    stripped = safe.lstrip(".")
    safe = "_" * (len(safe) - len(stripped)) + stripped
    return safe or "node"


def check_prefix(prefix: str) -> str:
    """Validate ``output.prefix`` (configuration, so rejected rather than rewritten).

    Raises:
        ConfigError: the prefix has a character outside ``[A-Za-z0-9._-]``, starts
            with a dot (hidden names are reserved for files in progress) or is longer
            than :data:`MAX_PREFIX_CHARS`.
    """
    if _UNSAFE.search(prefix):
        raise ConfigError("output.prefix", prefix, "only [A-Za-z0-9._-] are allowed")
    if prefix.startswith("."):
        raise ConfigError("output.prefix", prefix, "must not start with a dot")
    if len(prefix) > MAX_PREFIX_CHARS:
        raise ConfigError("output.prefix", prefix, f"at most {MAX_PREFIX_CHARS} characters")
    return prefix


def file_name(prefix: str, node: str, created_at: float, token: str) -> str:
    """The final name of a file: ``<prefix><node>-<YYYYMMDDTHHMMSSZ>-<token>.parquet``.

    Args:
        prefix: a prefix accepted by :func:`check_prefix`.
        node: the node name; sanitised here, so raw text is fine.
        created_at: wall-clock epoch seconds, rendered in UTC.
        token: 8 lowercase hex digits that make the name unique.

    Raises:
        ValueError: ``token`` is not 8 lowercase hex digits.
    """
    if not _HEX8.fullmatch(token):
        raise ValueError(f"token must be 8 lowercase hex digits, got {token!r}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created_at))
    return f"{check_prefix(prefix)}{sanitize_node(node)}-{stamp}-{token}{FINAL_SUFFIX}"


def partial_name(final: str) -> str:
    """Hidden name of the Parquet bytes of ``final`` while it is being written."""
    return f".{final}{PARTIAL_SUFFIX}"


def journal_name(final: str) -> str:
    """Hidden name of the crash journal of ``final``."""
    return f".{final}{JOURNAL_SUFFIX}"


def leftover_pattern(prefix: str, node: str) -> re.Pattern[str]:
    """Matches exactly the hidden names this writer (prefix and node) can leave behind.

    Recovery only touches names it matches, so writers with another prefix or node
    sharing the directory are left alone, even a node whose name extends this one's
    (``node-1`` must not claim the leftovers of ``node-1-b``).
    """
    base = re.escape(f"{check_prefix(prefix)}{sanitize_node(node)}")
    suffixes = f"(?:{re.escape(PARTIAL_SUFFIX)}|{re.escape(JOURNAL_SUFFIX)})"
    return re.compile(
        rf"\.{base}-\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}{re.escape(FINAL_SUFFIX)}{suffixes}"
    )


def final_name_of(hidden: str) -> str | None:
    """The final name a hidden partial or journal name belongs to; None if neither."""
    for suffix in (PARTIAL_SUFFIX, JOURNAL_SUFFIX):
        if hidden.startswith(".") and hidden.endswith(FINAL_SUFFIX + suffix):
            final = hidden[1 : -len(suffix)]
            if final != FINAL_SUFFIX and "/" not in final:
                return final
    return None
