"""The output directory: names inside it, atomic publication, and directory fsync.

Every path the writer touches is ``<dir>/<name>`` with a name produced by
:mod:`~resctrl_pipeline.sink.policy`; :meth:`OutputDirectory.path` refuses anything
else, so no text from outside can make the writer leave its directory.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

__all__ = ["OutputDirectory"]


class OutputDirectory:
    """One local directory that receives finished Parquet files.

    Methods raise :class:`OSError` unchanged; the sink decides what a failure means
    (disk full, directory gone, ...).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)

    def path(self, name: str) -> str:
        """The full path of ``name`` inside the directory.

        Raises:
            ValueError: ``name`` is not a plain file name (empty, ``.``, ``..`` or with
                a separator or NUL).
        """
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise ValueError(f"not a plain file name: {name!r}")
        return str(self.root / name)

    def ensure(self) -> bool:
        """Create the directory (and its parents) if missing; True if it was created."""
        if self.root.is_dir():
            return False
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir()
        except FileExistsError:
            return False
        self.fsync()
        return True

    def exists(self, name: str) -> bool:
        """True if ``name`` exists (any type, dangling symlinks included)."""
        return os.path.lexists(self.path(name))

    def names(self, pattern: re.Pattern[str]) -> list[str]:
        """Sorted names in the directory that ``pattern`` matches in full."""
        return sorted(n for n in os.listdir(self.root) if pattern.fullmatch(n))

    def publish(self, hidden: str, final: str) -> None:
        """Atomically give the complete file ``hidden`` its final name, durably.

        The caller has fsync'd the file. The rename is atomic, so a reader sees either
        nothing or the whole file; the directory fsync makes the rename survive a power
        loss before the caller deletes the journal that could rebuild the file.
        """
        os.rename(self.path(hidden), self.path(final))
        self.fsync()

    def remove(self, name: str) -> None:
        """Delete ``name``; a missing file is not an error."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(name))

    def fsync(self) -> None:
        """Make the directory's entries (creations, renames) durable."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
