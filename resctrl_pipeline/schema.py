"""The output schema: the nine fixed columns, then the optional ones in a fixed order.

The first nine columns are a contract with users' analysis scripts (architecture §5):
never reorder them, never insert before them. Optional columns follow in the order of
:data:`OPTIONAL_COLUMNS`; a file holds those its sampler emits. This module names them
without importing pyarrow, so that only the writer pays for pyarrow;
:func:`arrow_schema` builds the Arrow form on demand.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DOMAINS_COLUMN",
    "FIXED_COLUMNS",
    "LABEL_PREFIX",
    "MBM_COLUMNS",
    "MBM_STATES",
    "NODE_COLUMN",
    "OPTIONAL_COLUMNS",
    "SCHEMA_VERSION",
    "TELEMETRY_COLUMNS",
    "arrow_schema",
    "column_names",
    "is_label_column",
    "label_column",
    "optional_names",
]

#: Bumped whenever a column is added or its meaning changes.
SCHEMA_VERSION = 3

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

#: Memory-bandwidth counters, nullable because not every CPU has them and a counter
#: may be unassigned; ``mbm_state`` says why a value is null.
MBM_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("mbm_total_bytes", "int64", True),
    ("mbm_local_bytes", "int64", True),
    ("mbm_state", "string", True),
)

#: Values of ``mbm_state``: a counter counts for the group (always so without counter
#: assignment); no counter is assigned in some domain; the kernel has no valid value
#: yet (e.g. the first read after an assignment); the group has no MBM files.
MBM_STATES = ("assigned", "unassigned", "unavailable", "unsupported")

#: Intel AET (``mon_PERF_PKG_*``) events → column names, float64, summed over packages.
TELEMETRY_COLUMNS: dict[str, str] = {
    "core_energy": "core_energy_joules",
    "activity": "activity",
    "stalls_llc_hit": "stalls_llc_hit",
    "stalls_llc_miss": "stalls_llc_miss",
    "c1_res": "c1_res",
    "c6_res": "c6_res",
    "unhalted_core_cycles": "unhalted_core_cycles",
    "unhalted_ref_cycles": "unhalted_ref_cycles",
    "uops_retired": "uops_retired",
}

#: The per-domain breakdown (``output.per_domain``).
DOMAINS_COLUMN = "domains"

#: The node the row was sampled on: the writer fills it in every row, so that files
#: read together (without Hive partitions) still say where each row came from.
NODE_COLUMN = "node"

#: Every optional column, in file order (after the fixed nine).
OPTIONAL_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    *MBM_COLUMNS,
    *((name, "float64", True) for name in TELEMETRY_COLUMNS.values()),
    (DOMAINS_COLUMN, "domains", True),
    (NODE_COLUMN, "string", True),
)

_MBM_NAMES = tuple(name for name, _, _ in MBM_COLUMNS)

#: Pod label columns (``output.pod_labels``): ``label_`` + the label key with every
#: character outside ``[A-Za-z0-9]`` as ``_`` (``app.kubernetes.io/name`` →
#: ``label_app_kubernetes_io_name``); string, null where the pod lacks the label.
#: They come after every other column, sorted by name.
LABEL_PREFIX = "label_"
_LABEL_COLUMN = re.compile(r"label_[A-Za-z0-9_]{1,317}")


def label_column(key: str) -> str:
    """The column name of pod label ``key``."""
    return LABEL_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", key)


def is_label_column(name: str) -> bool:
    """Whether ``name`` is a pod label column (see :data:`LABEL_PREFIX`)."""
    return bool(_LABEL_COLUMN.fullmatch(name))


def optional_names(columns: Iterable[str]) -> tuple[str, ...]:
    """The optional column names among ``columns``, in file order."""
    wanted = set(columns)
    known = tuple(name for name, _, _ in OPTIONAL_COLUMNS if name in wanted)
    return known + tuple(sorted(n for n in wanted if is_label_column(n)))


def _selected(with_mbm: bool | Collection[str]) -> tuple[tuple[str, str, bool], ...]:
    names = set(_MBM_NAMES if with_mbm else ()) if isinstance(with_mbm, bool) else set(with_mbm)
    labels = tuple((n, "string", True) for n in sorted(names) if is_label_column(n))
    return FIXED_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c[0] in names) + labels


def column_names(with_mbm: bool | Collection[str] = True) -> tuple[str, ...]:
    """Column names in file order.

    Args:
        with_mbm: True for the fixed nine plus the MBM columns, False for the nine
            alone, or the optional column names wanted (unknown names are ignored).
    """
    return tuple(name for name, _, _ in _selected(with_mbm))


def arrow_schema(
    with_mbm: bool | Collection[str] = True, metadata: dict[str, str] | None = None
) -> pa.Schema:
    """The Arrow schema of the output files (imports pyarrow on first call).

    ``with_mbm`` as in :func:`column_names`.
    """
    import pyarrow as pa

    types: dict[str, Any] = {
        "int64": pa.int64(),
        "string": pa.string(),
        "float64": pa.float64(),
        "domains": pa.list_(
            pa.struct(
                [
                    pa.field("domain", pa.int32()),
                    pa.field("llc_occupancy_bytes", pa.int64()),
                    pa.field("mbm_total_bytes", pa.int64()),
                    pa.field("mbm_local_bytes", pa.int64()),
                ]
            )
        ),
    }
    fields = [pa.field(name, types[t], nullable=n) for name, t, n in _selected(with_mbm)]
    return pa.schema(fields, metadata=metadata)
