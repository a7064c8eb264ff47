"""The spool: finalised Parquet files waiting in a local directory for their upload.

With ``s3://`` output the sink writes into ``output.spool_dir`` exactly as it writes
into a local output directory, so every ``*.parquet`` there is complete (temporary
name, then atomic rename). The spool only reads and deletes those final files; it
never touches the sink's hidden files in progress.

Names found in the directory are untrusted: only regular files whose name is exactly
one this writer produces (``<prefix><node>-<YYYYMMDDTHHMMSSZ>-<8 hex>.parquet``) are
queued, so a symlink or a stray file placed there is never uploaded, and object keys
are built from the checked name, never from raw directory text.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from resctrl_pipeline.sink.policy import FINAL_SUFFIX, check_prefix, sanitize_node

__all__ = ["KeyScheme", "Spool", "SpooledFile"]


@dataclass(frozen=True, slots=True)
class SpooledFile:
    """One finalised file waiting for upload.

    Attributes:
        name: the file name (checked: this writer's pattern).
        size: bytes, when the spool was scanned.
        date: ``YYYY-MM-DD`` (UTC) at which the file was started, from its name.
    """

    name: str
    size: int
    date: str


class Spool:
    """This writer's finalised files in ``directory``, oldest first.

    Args:
        directory: the sink's output directory (``output.spool_dir``).
        prefix: ``output.prefix``.
        node: the node name (sanitised as the sink does for file names).
    """

    def __init__(self, directory: str, prefix: str, node: str) -> None:
        self.directory = directory
        base = re.escape(check_prefix(prefix) + sanitize_node(node))
        self._pattern = re.compile(
            rf"{base}-(\d{{4}})(\d{{2}})(\d{{2}})T\d{{6}}Z-[0-9a-f]{{8}}{re.escape(FINAL_SUFFIX)}"
        )

    def pending(self) -> list[SpooledFile]:
        """The files waiting, oldest first (names sort by start time).

        Raises:
            OSError: the directory cannot be listed.
        """
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                match = self._pattern.fullmatch(entry.name)
                if match is None or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # uploaded and removed meanwhile, or deleted by hand
                found.append(SpooledFile(entry.name, size, "-".join(match.groups())))
        found.sort(key=lambda f: f.name)
        return found

    def path(self, file: SpooledFile) -> str:
        """The full path of a file that :meth:`pending` returned."""
        return os.path.join(self.directory, file.name)

    def remove(self, file: SpooledFile) -> None:
        """Delete a file (after its upload, or to respect the bound); gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(file))


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """Object keys: ``<prefix>/<file>``, or with ``hive`` partitioning
    ``<prefix>/node=<node>/date=<YYYY-MM-DD>/<file>``.

    Hive-style directories let DuckDB, Spark, Athena and pyarrow filter on ``node``
    and ``date`` without opening files.

    Attributes:
        prefix: the checked key prefix of ``output.dir`` (no leading/trailing slash).
        partitioning: ``none`` or ``hive``.
        node: the node name; sanitised here like in file names.
    """

    prefix: str
    partitioning: str
    node: str

    def __post_init__(self) -> None:
        if self.partitioning not in ("none", "hive"):
            raise ValueError(f"partitioning must be none or hive, not {self.partitioning!r}")

    def key(self, file: SpooledFile) -> str:
        """The object key of ``file``."""
        parts = [self.prefix] if self.prefix else []
        if self.partitioning == "hive":
            parts += [f"node={sanitize_node(self.node)}", f"date={file.date}"]
        parts.append(file.name)
        return "/".join(parts)
