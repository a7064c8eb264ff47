"""The crash journal: every flushed row of a file in progress, as an Arrow IPC stream.

Why a journal: a Parquet file is unreadable until its footer is written at the very
end, so the bytes of a file in progress are worthless after a ``kill -9``. The journal
is an Arrow IPC *stream* — a schema message followed by self-delimiting record batch
messages — appended and fsync'd on every flush. After a crash each complete message
is still readable and a torn last message is detected and ignored, so the rows of
every finished flush can be rebuilt into a Parquet file (:mod:`.recovery`).

Appends are all-or-nothing: after a failed append (disk full) the file is cut back
to the end of the last good message, so the journal never holds a torn message
followed by good ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import TracebackType

import pyarrow as pa

__all__ = ["Journal", "JournalReader"]

_COPY_CHUNK = 1 << 20


class Journal:
    """Append-only writer of one journal file (created exclusively).

    Args:
        path: where to create the journal; must not exist.
        schema: the file's schema, metadata included (recovery reuses it).
        compression: IPC buffer compression (``zstd``, ``lz4`` or None). Compressed
            buffers keep the journal's disk use near that of the Parquet file.

    Raises:
        OSError: the file cannot be created.
    """

    def __init__(self, path: str, schema: pa.Schema, compression: str | None) -> None:
        self.path = path
        # Unbuffered and opened read-write: every byte pyarrow writes reaches the kernel
        # at once, and salvage() can read the journal back through this descriptor.
        self._file = open(path, "x+b", buffering=0)  # noqa: SIM115 (closed in close())
        self._good = 0
        self._broken = False
        try:
            options = pa.ipc.IpcWriteOptions(compression=compression)
            self._writer = pa.ipc.new_stream(self._file, schema, options=options)
        except BaseException:
            self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    @property
    def size(self) -> int:
        """Bytes of complete, fsync'd messages."""
        return self._good

    def append(self, table: pa.Table) -> None:
        """Append ``table``'s rows and fsync; all-or-nothing.

        Raises:
            OSError: the write or the fsync failed (e.g. ENOSPC). The journal is cut back
                to its previous size and refuses further appends.
        """
        if self._broken:
            raise OSError(f"journal {self.path} is unusable after an earlier error")
        try:
            self._writer.write_table(table)
            os.fsync(self._file.fileno())
        except BaseException:
            self._broken = True
            self._cut_back()
            raise
        self._good = self._file.tell()

    def in_place(self) -> bool:
        """True while ``path`` still names this journal (its directory was not removed)."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def salvage(self) -> None:
        """Write the complete messages, read from the open descriptor, to ``path`` anew.

        For when the journal's name vanished (the output directory was removed) while
        this process still holds the only copy; the directory must exist again.

        Raises:
            OSError: the new file cannot be written.
        """
        fd = self._file.fileno()
        with open(self.path, "xb") as out:
            offset = 0
            while offset < self._good:
                chunk = os.pread(fd, min(_COPY_CHUNK, self._good - offset), offset)
                if not chunk:
                    break
                out.write(chunk)
                offset += len(chunk)
            out.flush()
            os.fsync(out.fileno())

    def close(self) -> None:
        """Close without deleting; the file keeps exactly its complete messages. Never raises."""
        # Closing the writer appends an end-of-stream marker; cutting back afterwards
        # drops it again if it landed after a torn message.
        with contextlib.suppress(Exception):
            self._writer.close()
        self._cut_back()
        with contextlib.suppress(OSError):
            self._file.close()

    def _cut_back(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.ftruncate(self._file.fileno(), self._good)
            self._file.seek(self._good)


class JournalReader:
    """The complete record batches of a journal, however it ended.

    Reading stops at the first message that is torn or invalid; :attr:`damaged` tells
    whether that happened (rather than a clean end of stream). ``schema`` is None when
    not even the schema message is complete. Use as a context manager.
    """

    def __init__(self, path: str) -> None:
        self.damaged = False
        self._source = pa.memory_map(path)
        self._reader: pa.ipc.RecordBatchStreamReader | None = None
        self.schema: pa.Schema | None = None
        try:
            self._reader = pa.ipc.open_stream(self._source)
            self.schema = self._reader.schema
        except (pa.ArrowException, OSError, ValueError):
            self.damaged = self._source.size() > 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Yield each complete, valid record batch in order."""
        if self._reader is None:
            return
        while True:
            try:
                batch = self._reader.read_next_batch()
                batch.validate(full=True)
            except StopIteration:
                return
            except (pa.ArrowException, OSError, ValueError):
                self.damaged = True
                return
            yield batch

    def close(self) -> None:
        """Release the file."""
        self._source.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
