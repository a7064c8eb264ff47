"""Where ``report`` reads rows: local files and directories, or ``s3://bucket/prefix``.

Both are opened as one :mod:`pyarrow.dataset` over the ``*.parquet`` files below the
given paths, with Hive partitioning (``node=…/date=…`` directories as the S3 upload
writes them; plain directories simply have none). Filters are pushed down: the
``node`` and ``date`` partitions prune whole files before they are opened, the
``timestamp`` range and the column filters use the row-group statistics of the rest.

Hidden files (``.…``) are never read as Parquet: a running writer's file in progress
is hidden. With :func:`in_progress_rows` its rows that are already durable — the
complete messages of its crash journal, fsync'd at every flush — are read too,
read-only, without any lock or write, so the writer is not disturbed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from resctrl_pipeline.errors import PipelineError
from resctrl_pipeline.sink.journal import JournalReader
from resctrl_pipeline.sink.policy import FINAL_SUFFIX, JOURNAL_SUFFIX, final_name_of

__all__ = [
    "COLUMNS", "Filters", "ReportError", "Scan", "Source", "in_progress_rows", "open_source",
    "progress_printer", "scan",
]  # fmt: skip


class ReportError(PipelineError):
    """The input cannot be reported on (no files, unreadable file, bad option)."""


#: The columns ``report`` reads; a file without one of them gives nulls there.
COLUMNS = pa.schema([
    ("start_timestamp", pa.int64()), ("timestamp", pa.int64()),
    ("pod_namespace", pa.string()), ("pod_name", pa.string()), ("pod_uid", pa.string()),
    ("total_containers", pa.int64()), ("reconciled_containers", pa.int64()),
    ("llc_occupancy_bytes", pa.int64()), ("mbm_total_bytes", pa.int64()),
    ("node", pa.string()),
])  # fmt: skip
# What the dataset is opened with: the columns plus the ``date`` partition.
_DATASET_SCHEMA = COLUMNS.append(pa.field("date", pa.string()))
_PARTITIONING = ds.partitioning(
    pa.schema([("node", pa.string()), ("date", pa.string())]), flavor="hive"
)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which rows to read. Empty tuples and None mean "no restriction".

    ``since_ns``/``until_ns`` bound ``timestamp`` (inclusive, exclusive).
    """

    since_ns: int | None = None
    until_ns: int | None = None
    nodes: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    def expression(self, partitioned: bool) -> ds.Expression | None:
        """The filter as a dataset expression (``date`` only on partitioned data)."""
        parts: list[ds.Expression] = []
        if self.since_ns is not None:
            parts.append(ds.field("timestamp") >= self.since_ns)
            if partitioned:  # whole days before the range are skipped unopened
                parts.append(ds.field("date") >= _day(self.since_ns))
        if self.until_ns is not None:
            parts.append(ds.field("timestamp") < self.until_ns)
            if partitioned:
                parts.append(ds.field("date") <= _day(self.until_ns))
        if self.nodes:
            parts.append(ds.field("node").isin(list(self.nodes)))
        if self.namespaces:
            parts.append(ds.field("pod_namespace").isin(list(self.namespaces)))
        if not parts:
            return None
        expr = parts[0]
        for p in parts[1:]:
            expr = expr & p
        return expr


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d")


@dataclass(slots=True)
class Scan:
    """The rows read and where they came from.

    Attributes:
        table: the rows, with the columns of :data:`COLUMNS`.
        files: Parquet files read (after partition pruning).
        files_found: Parquet files found below the paths.
        in_progress_rows: rows among ``table`` read from files in progress.
        in_progress_files: those files' final names.
        l3_cache_bytes: node → total L3 bytes, from file metadata where present.
    """

    table: pa.Table
    files: int
    files_found: int
    in_progress_rows: int = 0
    in_progress_files: list[str] = field(default_factory=list)
    l3_cache_bytes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Source:
    """The Parquet files to read and the filesystem they are on; ``base`` is the root
    of Hive partitions (empty when there is none), ``local_dirs`` the directories
    whose files in progress :func:`in_progress_rows` may read."""

    filesystem: pafs.FileSystem
    base: str
    files: list[str]
    local_dirs: list[str]


def open_source(
    paths: Iterable[str], *, s3_endpoint: str = "", s3_region: str = ""
) -> Source:
    """List the Parquet files below ``paths`` (local paths, or one ``s3://`` URL).

    Raises:
        ReportError: a path does not exist, mixes S3 and local, or nothing was found.
    """
    paths = list(paths)
    if any(p.startswith("s3://") for p in paths):
        if len(paths) != 1:
            raise ReportError("give one s3://bucket/prefix, or local paths, not both")
        return _open_s3(paths[0], s3_endpoint, s3_region)
    local = pafs.LocalFileSystem()
    files: list[str] = []
    dirs: list[str] = []
    for path in paths:
        full = os.path.abspath(path)
        if os.path.isdir(full):
            dirs.append(full)
            selector = pafs.FileSelector(full, recursive=True)
            files += [i.path for i in local.get_file_info(selector) if _visible_parquet(i, full)]
        elif os.path.isfile(full):
            files.append(full)
        else:
            raise ReportError(f"{path}: no such file or directory")
    base = os.path.commonpath(dirs) if len(dirs) == 1 and len(dirs) == len(paths) else ""
    return Source(local, base, sorted(set(files)), dirs)


def _visible_parquet(info: pafs.FileInfo, base: str) -> bool:
    if info.type != pafs.FileType.File or not info.path.endswith(FINAL_SUFFIX):
        return False
    rel = info.path[len(base) :].lstrip("/")
    return not any(part.startswith((".", "_")) for part in rel.split("/"))


def _open_s3(url: str, endpoint: str, region: str) -> Source:
    # Imported here: local reports need neither the S3 module nor its settings.
    from resctrl_pipeline.errors import ConfigError
    from resctrl_pipeline.storage.s3 import (
        S3Location,
        S3Settings,
        filesystem,
        region_from,
        upload_reason,
    )

    try:
        location = S3Location.parse(url, key="PATH")
        fs = filesystem(S3Settings(
            endpoint=endpoint, region=region_from(region, os.environ), path_style=bool(endpoint)
        ))  # fmt: skip
        infos = fs.get_file_info(pafs.FileSelector(location.path, recursive=True))
    except ConfigError as err:
        # Name what the user typed: the URL, or the option (--s3-endpoint, ...).
        option = "--" + err.key.removeprefix("output.").replace("_", "-")
        where = url if err.key == "PATH" else f"{option} {err.value!r}"
        raise ReportError(f"{where}: {err.reason}") from err
    except FileNotFoundError as err:
        raise ReportError(f"{url}: no such bucket or prefix") from err
    except OSError as err:
        raise ReportError(f"{url}: cannot list: {upload_reason(err)}") from err
    files = sorted(i.path for i in infos if _visible_parquet(i, location.path))
    return Source(fs, location.path, files, [])


def scan(
    source: Source,
    filters: Filters,
    *,
    progress: Callable[[int, int, int, bool], None] | None = None,
) -> Scan:
    """Read the rows that pass ``filters``; ``progress(files_done, files, rows, last)``
    is called after every batch read and once more at the end (``last`` true).

    Raises:
        ReportError: nothing found, or a file that is not readable Parquet.
    """
    found = len(source.files)
    if not source.files and not source.local_dirs:
        raise ReportError("no *.parquet files found")
    if not source.files:
        return Scan(COLUMNS.empty_table(), 0, 0)
    try:
        dataset = ds.dataset(
            source.files, schema=_DATASET_SCHEMA, format="parquet", filesystem=source.filesystem,
            partitioning=_PARTITIONING if source.base else None,
            partition_base_dir=source.base or None,
        )  # fmt: skip
        partitioned = bool(source.base) and any(
            "node=" in f or "date=" in f for f in source.files[:1]
        )
        expr = filters.expression(partitioned)
        fragments = list(dataset.get_fragments(filter=expr))
        if not fragments:
            return Scan(COLUMNS.empty_table(), 0, found)
        pruned = ds.FileSystemDataset(
            fragments, _DATASET_SCHEMA, ds.ParquetFileFormat(), source.filesystem
        )
        batches: list[pa.RecordBatch] = []
        done, rows, seen = 0, 0, ""
        for tagged in pruned.scanner(columns=COLUMNS.names, filter=expr).scan_batches():
            if tagged.fragment.path != seen:
                seen = tagged.fragment.path
                done += 1
            batches.append(tagged.record_batch)
            rows += tagged.record_batch.num_rows
            if progress is not None:
                progress(done, len(fragments), rows, False)
        if progress is not None:
            progress(len(fragments), len(fragments), rows, True)
        l3 = _l3_sizes(fragments)
    except (OSError, pa.ArrowInvalid) as err:
        raise ReportError(f"not a readable Parquet file: {' '.join(str(err).split())}") from err
    table = pa.Table.from_batches(batches, schema=COLUMNS)
    return Scan(table, len(fragments), found, l3_cache_bytes=l3)


def _l3_sizes(fragments: list[ds.Fragment]) -> dict[str, int]:
    """Node → L3 bytes from the ``l3_cache_bytes`` metadata of one file per node
    (written by the agent since schema version 3; absent in older files)."""
    import json

    sizes: dict[str, int] = {}
    tried: set[str] = set()
    for fragment in fragments:
        node = _partition_node(fragment) or os.path.dirname(fragment.path)
        if node in tried or len(tried) >= 64:
            continue
        tried.add(node)
        meta = fragment.physical_schema.metadata or {}
        raw = meta.get(b"l3_cache_bytes")
        if not raw:
            continue
        try:
            domains = json.loads(raw)
            total = sum(int(v) for v in domains.values())
        except (ValueError, TypeError, AttributeError):
            continue
        if total > 0:
            name = bytes(meta.get(b"node") or b"").decode(errors="replace") or node
            sizes[_partition_node(fragment) or name] = total
    return sizes


def _partition_node(fragment: ds.Fragment) -> str:
    for part in str(fragment.path).split("/"):
        if part.startswith("node="):
            return part[len("node=") :]
    return ""


def in_progress_rows(directories: Iterable[str], filters: Filters, read: set[str]) -> Scan:
    """The durable rows of the files in progress in ``directories`` (not recursive).

    For each hidden journal ``.F.journal`` whose final file ``F`` was not read as
    Parquet (``read`` holds the absolute paths read), the journal's complete record
    batches are read through a read-only memory map: the writer appends to it and
    fsyncs at every flush, so what is there is exactly what a crash would keep. A
    journal that vanishes meanwhile (the file was published) is skipped.
    """
    tables: list[pa.Table] = []
    names: list[str] = []
    for directory in directories:
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in entries:
            final = final_name_of(name)
            if final is None or not name.endswith(JOURNAL_SUFFIX):
                continue
            if os.path.join(directory, final) in read:
                continue  # published already: the Parquet file was read
            try:
                with JournalReader(os.path.join(directory, name)) as reader:
                    batches = list(reader.batches())
            except (OSError, pa.ArrowException):
                continue
            if not batches:
                continue
            table = pa.Table.from_batches(batches)
            table = _conform(table)
            expr = filters.expression(partitioned=False)
            if expr is not None:
                table = table.filter(expr)
            tables.append(table)
            names.append(final)
    if not tables:
        return Scan(COLUMNS.empty_table(), 0, 0)
    table = pa.concat_tables(tables)
    return Scan(table, 0, 0, in_progress_rows=table.num_rows, in_progress_files=names)


def _conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly the columns of :data:`COLUMNS` (missing ones null)."""
    cols = []
    for f in COLUMNS:
        if f.name in table.column_names:
            cols.append(pc.cast(table.column(f.name), f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=COLUMNS)


def progress_printer(out: TextIO, interval: float = 0.5) -> Callable[[int, int, int, bool], None]:
    """A ``progress`` callback writing ``scanning: F/N files, R rows`` to ``out`` at
    most every ``interval`` s and at the end; on a terminal the line is rewritten in
    place, elsewhere each update is a line of its own."""
    tty = out.isatty()
    last = time.monotonic()

    def show(done: int, total: int, rows: int, final: bool) -> None:
        nonlocal last
        now = time.monotonic()
        if not final and now - last < interval:
            return
        last = now
        line = f"scanning: {done}/{total} files, {rows:,} rows"
        out.write(f"\r{line}" + ("\n" if final else "") if tty else f"{line}\n")
        out.flush()

    return show
