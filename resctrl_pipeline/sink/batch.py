"""Occupancy batches → Arrow record batches of the output schema, column by column.

An :class:`~resctrl_pipeline.messages.OccupancyBatch` is already columnar (one list
per column), so each column becomes one Arrow array in a single call, with no
per-row Python work. The schema decides the types; the batch only supplies values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from resctrl_pipeline.schema import (
    MBM_COLUMNS,
    OPTIONAL_COLUMNS,
    SCHEMA_VERSION,
    arrow_schema,
    column_names,
    is_label_column,
    optional_names,
)
from resctrl_pipeline.sink.errors import BatchRejected

__all__ = ["RowBuffer", "file_schema", "optional_in", "to_record_batch", "unknown_columns"]

_MBM_NAMES = frozenset(name for name, _, _ in MBM_COLUMNS)
_REQUIRED = frozenset(column_names(with_mbm=False))
_KNOWN = frozenset(column_names([name for name, _, _ in OPTIONAL_COLUMNS]))

# pyarrow signals bad values with several exception types; all mean "reject the batch".
_CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


def file_schema(
    optional: tuple[str, ...], node: str, tool_version: str, created_at: str,
    l3_cache_bytes: Mapping[int, int] | None = None,
) -> pa.Schema:  # fmt: skip
    """The schema of one output file, with the key-value metadata readers rely on.

    Keys: ``node``, ``schema_version``, ``tool`` (``resctrl-pipeline``),
    ``tool_version``, ``created_at`` (ISO 8601, UTC) and ``l3_cache_bytes`` (JSON:
    L3 domain id → bytes, ``{}`` when unknown; occupancy / size = share of the cache).
    ``optional``: the optional columns the file holds.
    """
    return arrow_schema(
        optional,
        metadata={
            "node": node,
            "schema_version": str(SCHEMA_VERSION),
            "tool": "resctrl-pipeline",
            "tool_version": tool_version,
            "created_at": created_at,
            "l3_cache_bytes": json.dumps(
                {str(d): n for d, n in sorted((l3_cache_bytes or {}).items())}
            ),
        },
    )


def optional_in(columns: Mapping[str, object]) -> tuple[str, ...]:
    """The optional columns the batch carries, in file order.

    The MBM columns come as a unit: a batch with any of them gets all of them (a
    producer that predates ``mbm_state`` still writes files of one shape).
    """
    if not isinstance(columns, Mapping):
        return ()
    names = optional_names(columns)
    if not _MBM_NAMES.isdisjoint(names):
        names = optional_names((*names, *_MBM_NAMES))
    return names


def unknown_columns(columns: Mapping[str, object]) -> frozenset[str]:
    """Columns the schema does not know; they are ignored so the format can grow."""
    return frozenset(c for c in columns if c not in _KNOWN and not is_label_column(c))


def to_record_batch(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Build a record batch of ``schema`` from a batch's columns.

    The nine fixed columns must be present (a missing one means a producer bug, not
    a missing value); absent optional columns become all-null; columns the schema does not
    name are ignored.

    Raises:
        BatchRejected: a fixed column is missing, a non-nullable one holds a null, a value does
            not fit its column's type, the columns differ in length, or the batch is
            not a mapping of sequences.
    """
    if not isinstance(columns, Mapping):
        raise BatchRejected("not_columnar", f"columns is a {type(columns).__name__}")
    arrays: list[pa.Array | None] = []
    length: int | None = None
    for field in schema:
        values = columns.get(field.name)
        if values is None:
            if field.name in _REQUIRED:
                raise BatchRejected("missing_column", field.name)
            arrays.append(None)
            continue
        if not isinstance(values, Sequence) or isinstance(values, str | bytes):
            raise BatchRejected("not_columnar", f"{field.name} is a {type(values).__name__}")
        try:
            array = pa.array(values, type=field.type)
        except _CONVERSION_ERRORS as err:
            raise BatchRejected("bad_value", f"{field.name}: {err}") from err
        if not field.nullable and array.null_count:
            raise BatchRejected("null_value", field.name)
        if length is None:
            length = len(array)
        elif len(array) != length:
            raise BatchRejected("ragged_columns", f"{field.name} has {len(array)}, not {length}")
        arrays.append(array)
    rows = length or 0
    filled = [
        pa.nulls(rows, f.type) if a is None else a for a, f in zip(arrays, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(filled, schema=schema)


class RowBuffer:
    """Record batches waiting for the next flush, with the numbers the policy needs."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0
        #: Arrow in-memory bytes of the buffered batches.
        self.nbytes = 0
        #: Monotonic arrival time of the oldest buffered row; None when empty.
        self.oldest_at: float | None = None

    def __bool__(self) -> bool:
        return self.rows > 0

    def append(self, batch: pa.RecordBatch, now: float) -> None:
        """Buffer ``batch``, which arrived at ``now``."""
        self.batches.append(batch)
        self.rows += batch.num_rows
        self.nbytes += batch.get_total_buffer_size()
        if self.oldest_at is None:
            self.oldest_at = now

    def table(self) -> pa.Table:
        """The buffered rows as one table with a single chunk per column.

        One contiguous chunk per column, not one per batch: compressing a few large
        buffers is several times faster (and smaller) than thousands of small ones,
        which pays for the copy many times over in the journal.
        """
        return pa.Table.from_batches(self.batches).combine_chunks()

    def clear(self) -> None:
        """Forget every buffered row."""
        self.batches = []
        self.rows = 0
        self.nbytes = 0
        self.oldest_at = None
