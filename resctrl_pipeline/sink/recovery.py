"""Start-up recovery: turn what a crash left behind into complete Parquet files.

For each hidden journal ``.F.journal`` of this writer (:func:`.policy.leftover_pattern`):

* ``F`` already exists → the crash came after publication; delete the journal.
* otherwise → write every complete record batch of the journal to ``.F.partial``
  (overwriting the crashed writer's useless partial), publish it as ``F``, then delete
  the journal. A torn last message is ignored; a journal without a complete batch
  is deleted without producing a file (no empty files).

Partials without a journal hold no row that was ever flushed and are deleted.
Each step is idempotent, so a crash during recovery is repaired by the next one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import pyarrow as pa

from resctrl_pipeline.sink.directory import OutputDirectory
from resctrl_pipeline.sink.journal import JournalReader
from resctrl_pipeline.sink.output_file import PartialParquet
from resctrl_pipeline.sink.policy import (
    JOURNAL_SUFFIX,
    PARTIAL_SUFFIX,
    final_name_of,
    journal_name,
    partial_name,
)

__all__ = ["RecoveryReport", "recover"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecoveryReport:
    """What recovery did; updated as it goes, so it is accurate even after an error."""

    #: Final names of the files rebuilt from journals.
    files: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    #: Journals whose end was torn or invalid (the rows after the damage are lost).
    damaged_journals: int = 0
    #: Hidden leftovers deleted without producing a file.
    removed: int = 0


def recover(
    directory: OutputDirectory,
    pattern: re.Pattern[str],
    *,
    compression: str,
    row_group_rows: int,
    recovered_at: str,
    keep: frozenset[str] = frozenset(),
    report: RecoveryReport | None = None,
) -> RecoveryReport:
    """Repair every leftover of this writer in ``directory``.

    Args:
        directory: the output directory (must exist).
        pattern: only hidden names it matches in full are touched.
        compression: Parquet codec of rebuilt files.
        row_group_rows: the most rows per row group of a rebuilt file.
        recovered_at: ISO 8601 time stored as ``recovered_at`` metadata.
        keep: hidden names in use by the running writer, never touched.
        report: progress is added to it (pass one to see progress after an error).

    Raises:
        OSError: a file could not be written (e.g. ENOSPC). What was done so far is in
            ``report``; the journal being rebuilt is kept and the next call retries.
    """
    report = RecoveryReport() if report is None else report
    names = [n for n in directory.names(pattern) if n not in keep]
    for name in names:
        final = final_name_of(name)
        if final is not None and name.endswith(JOURNAL_SUFFIX):
            _rebuild(directory, final, compression, row_group_rows, recovered_at, report)
    for name in names:
        final = final_name_of(name)
        orphan = final is not None and not directory.exists(journal_name(final))
        if orphan and name.endswith(PARTIAL_SUFFIX) and directory.exists(name):
            directory.remove(name)
            report.removed += 1
    return report


def _rebuild(
    directory: OutputDirectory,
    final: str,
    compression: str,
    row_group_rows: int,
    recovered_at: str,
    report: RecoveryReport,
) -> None:
    journal = journal_name(final)
    if directory.exists(final):
        directory.remove(partial_name(final))
        directory.remove(journal)
        report.removed += 1
        return
    partial: PartialParquet | None = None
    rows = 0
    try:
        with JournalReader(directory.path(journal)) as reader:
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for batch in reader.batches():
                if partial is None and reader.schema is not None:
                    meta = dict(reader.schema.metadata or {})
                    meta[b"recovered_at"] = recovered_at.encode()
                    schema = reader.schema.with_metadata(meta)
                    partial = PartialParquet(directory, final, schema, compression)
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= row_group_rows:
                    _write(partial, pending)
                    rows += pending_rows
                    pending, pending_rows = [], 0
            _write(partial, pending)
            rows += pending_rows
            damaged = reader.damaged
        size = partial.publish() if partial is not None and rows else 0
    except BaseException:
        if partial is not None:
            partial.discard()
        raise
    directory.remove(journal)
    report.damaged_journals += damaged
    if partial is None or not rows:
        if partial is not None:
            partial.discard()
        directory.remove(partial_name(final))
        report.removed += 1
        log.info("Removed leftover journal %s: no complete rows in it", journal)
        return
    report.files.append(final)
    report.rows += rows
    report.bytes += size
    log.info(
        "Recovered %d rows into %s from its journal%s",
        rows,
        final,
        " (its torn end was ignored)" if damaged else "",
    )


def _write(partial: PartialParquet | None, batches: list[pa.RecordBatch]) -> None:
    if partial is not None and batches:
        partial.write_row_group(pa.Table.from_batches(batches))
