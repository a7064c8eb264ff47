"""The output schema: the nine fixed columns and the optional bandwidth columns.

The first nine columns are a contract with users' analysis scripts (architecture §5):
never reorder them, never insert before them. This module names them without
importing pyarrow, so that only the writer pays for pyarrow; :func:`arrow_schema`
builds the Arrow form on demand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FIXED_COLUMNS",
    "MBM_COLUMNS",
    "SCHEMA_VERSION",
    "arrow_schema",
    "column_names",
]

#: Bumped whenever a column is added or its meaning changes.
SCHEMA_VERSION = 1

#: (name, arrow type name, nullable) of the fixed columns, in file order.
FIXED_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("start_timestamp", "int64", False),
    ("timestamp", "int64", False),
    ("pod_namespace", "string", True),
    ("pod_name", "string", True),
    ("pod_uid", "string", True),
    ("resctrl_group", "string", True),
    ("total_containers", "int64", False),
    ("reconciled_containers", "int64", False),
    ("llc_occupancy_bytes", "int64", False),
)

#: Memory-bandwidth counters, nullable because not every CPU has them.
MBM_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("mbm_total_bytes", "int64", True),
    ("mbm_local_bytes", "int64", True),
)


def column_names(with_mbm: bool = True) -> tuple[str, ...]:
    """Column names in file order; the MBM columns follow the fixed nine."""
    cols = FIXED_COLUMNS + (MBM_COLUMNS if with_mbm else ())
    return tuple(name for name, _, _ in cols)


def arrow_schema(with_mbm: bool = True, metadata: dict[str, str] | None = None) -> pa.Schema:
    """The Arrow schema of the output files (imports pyarrow on first call)."""
    import pyarrow as pa

    types: dict[str, Any] = {"int64": pa.int64(), "string": pa.string()}
    cols = FIXED_COLUMNS + (MBM_COLUMNS if with_mbm else ())
    fields = [pa.field(name, types[t], nullable=n) for name, t, n in cols]
    return pa.schema(fields, metadata=metadata)
