"""One Parquet file in progress: its hidden journal and partial, and its publication.

Life of a file named ``F``::

    open      create .F.journal (exclusive) and .F.partial
    flush     append rows to the journal + fsync   (now they survive a crash)
              write the same rows as a row group to the partial
    finalise  write the footer, fsync the partial, rename it to F, fsync the directory,
              delete the journal
    abandon   (after an error) delete the partial, keep the journal for recovery

A reader globbing ``*.parquet`` sees ``F`` only once it is complete. Whatever moment a
crash hits, the rows of every finished flush are in ``F`` or in ``.F.journal``.
"""

from __future__ import annotations

import contextlib
import os

import pyarrow as pa
import pyarrow.parquet as pq

from resctrl_pipeline.sink.directory import OutputDirectory
from resctrl_pipeline.sink.journal import Journal
from resctrl_pipeline.sink.policy import journal_name, partial_name

__all__ = ["OutputFile", "PartialParquet"]


class PartialParquet:
    """Parquet bytes under the hidden name ``.<final>.partial`` until published.

    Args:
        directory: where the file lives.
        final: the final name it gets in :meth:`publish`.
        schema: the file's schema including key-value metadata.
        compression: Parquet codec (``zstd``, ``snappy``, ``gzip``, ``lz4``, ``none``).

    Raises:
        OSError: the file cannot be created.
    """

    def __init__(
        self, directory: OutputDirectory, final: str, schema: pa.Schema, compression: str
    ) -> None:
        self.final = final
        self._dir = directory
        # Truncating: a partial left by a crash is garbage (its rows are in the journal).
        self._sink = pa.OSFile(directory.path(partial_name(final)), "wb")
        try:
            self._writer = pq.ParquetWriter(self._sink, schema, compression=compression)
        except BaseException:
            self.discard()
            raise

    @property
    def size(self) -> int:
        """Bytes written so far (row groups; the footer comes in :meth:`publish`)."""
        return int(self._sink.tell())

    def write_row_group(self, table: pa.Table) -> None:
        """Write ``table`` as one row group.

        Raises:
            OSError: the file is unusable and must be discarded.
        """
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def publish(self) -> int:
        """Write the footer, fsync, and atomically rename to the final name.

        Returns:
            The size of the complete file in bytes.

        Raises:
            OSError: the file could not be completed; the caller must :meth:`discard`.
        """
        self._writer.close()
        os.fsync(self._sink.fileno())
        size = int(self._sink.tell())
        self._sink.close()
        self._dir.publish(partial_name(self.final), self.final)
        return size

    def discard(self) -> None:
        """Close and delete the partial file. Never raises."""
        # Closing the stream first makes the writer's close fail fast instead of
        # writing a useless footer to a disk that may be full.
        with contextlib.suppress(Exception):
            self._sink.close()
        writer = getattr(self, "_writer", None)
        if writer is not None:
            try:
                writer.close()
            except Exception:
                # Otherwise pyarrow's __del__ would retry the failed close.
                writer.is_open = False
        with contextlib.suppress(OSError):
            self._dir.remove(partial_name(self.final))


class OutputFile:
    """The file ``name`` being written in ``directory``: a journal plus a partial.

    Args:
        directory: where the file lives.
        name: its final name (from :func:`~resctrl_pipeline.sink.policy.file_name`).
        schema: the file's schema including key-value metadata; fixed for its life.
        compression: Parquet codec.
        journal_compression: IPC buffer codec of the journal, or None.

    Raises:
        OSError: the hidden files cannot be created (nothing is left behind).
    """

    def __init__(
        self,
        directory: OutputDirectory,
        name: str,
        schema: pa.Schema,
        compression: str,
        journal_compression: str | None,
    ) -> None:
        self.name = name
        self.rows = 0
        self._dir = directory
        self._journal = Journal(directory.path(journal_name(name)), schema, journal_compression)
        try:
            # The journal's directory entry must survive a power loss, like its bytes.
            directory.fsync()
            self._partial = PartialParquet(directory, name, schema, compression)
        except BaseException:
            self._journal.close()
            directory.remove(journal_name(name))
            raise

    @property
    def size(self) -> int:
        """Parquet bytes written so far (row groups; the footer comes at finalise)."""
        return self._partial.size

    def log_rows(self, table: pa.Table) -> None:
        """Make ``table``'s rows durable in the journal (all-or-nothing).

        Raises:
            OSError: nothing was logged; the file must be abandoned.
        """
        self._journal.append(table)
        self.rows += table.num_rows

    def write_row_group(self, table: pa.Table) -> None:
        """Write rows already logged as one row group of the partial file.

        Raises:
            OSError: the partial file is unusable; the file must be abandoned (its rows
                are safe in the journal).
        """
        self._partial.write_row_group(table)

    def in_place(self) -> bool:
        """False once the file's names vanished (e.g. the directory was removed)."""
        return self._journal.in_place()

    def finalise(self) -> int:
        """Complete the file and give it its final name; returns its size in bytes.

        Raises:
            OSError: the file could not be completed; the caller must :meth:`abandon`
                it, and recovery rebuilds it from the journal later.
        """
        size = self._partial.publish()
        self._journal.close()
        # The file is complete and durable; a journal left behind here is harmless,
        # recovery deletes journals whose final file exists.
        with contextlib.suppress(OSError):
            self._dir.remove(journal_name(self.name))
        return size

    def abandon(self) -> None:
        """Give up the file after an error: delete the partial, keep the journal.

        Never raises. The journal keeps exactly the complete flushes, and recovery
        turns it into the finished file once writing works again.
        """
        self._partial.discard()
        self._journal.close()

    def salvage(self) -> None:
        """Re-create the vanished journal from the open descriptor, then abandon.

        The caller re-creates the directory first. Afterwards the file is exactly in
        the state recovery expects: a journal holding every flushed row.

        Raises:
            OSError: the journal could not be written again.
        """
        self._journal.salvage()
        self.abandon()
