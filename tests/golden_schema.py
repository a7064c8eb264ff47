"""The output schema as users' analysis scripts rely on it, written out literally.

Deliberately NOT derived from ``resctrl_pipeline/schema.py``: the tests compare what
the pipeline actually writes to Parquet with this list, so a change to a name, a type,
a nullability or the order in the code fails them (a test that read the code's own
table would follow any such change). The source is the contract in the design
(architecture §5 and docs/output.md). A deliberate change of the schema changes this
file too, in the same commit, and bumps the schema version.
"""

from __future__ import annotations

import pyarrow as pa

#: The nine fixed columns: (name, Arrow type, nullable), in file order. Never change.
FIXED: list[tuple[str, pa.DataType, bool]] = [
    ("start_timestamp", pa.int64(), False),
    ("timestamp", pa.int64(), False),
    ("pod_namespace", pa.string(), True),
    ("pod_name", pa.string(), True),
    ("pod_uid", pa.string(), True),
    ("resctrl_group", pa.string(), True),
    ("total_containers", pa.int64(), False),
    ("reconciled_containers", pa.int64(), False),
    ("llc_occupancy_bytes", pa.int64(), False),
]

#: ``domains``: one struct per L3 domain (``output.per_domain``).
DOMAINS_TYPE = pa.list_(
    pa.struct(
        [
            pa.field("domain", pa.int32()),
            pa.field("llc_occupancy_bytes", pa.int64()),
            pa.field("mbm_total_bytes", pa.int64()),
            pa.field("mbm_local_bytes", pa.int64()),
        ]
    )
)

#: Intel AET events (``mon_PERF_PKG_*`` file names) → their column names.
AET_EVENTS: dict[str, str] = {
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

#: Every optional column, in file order after the nine; a file holds a subset, in this
#: order. All nullable.
OPTIONAL: list[tuple[str, pa.DataType, bool]] = [
    ("mbm_total_bytes", pa.int64(), True),
    ("mbm_local_bytes", pa.int64(), True),
    ("mbm_state", pa.string(), True),
    *((column, pa.float64(), True) for column in AET_EVENTS.values()),
    ("domains", DOMAINS_TYPE, True),
    ("node", pa.string(), True),  # the writer's node name in every row (schema version 3)
]

#: File key-value metadata every output file carries.
METADATA_KEYS = (b"node", b"schema_version", b"tool", b"tool_version", b"created_at",
                 b"l3_cache_bytes")  # fmt: skip


def expected(optional: list[str], node: bool = True) -> list[tuple[str, pa.DataType, bool]]:
    """The fixed nine, then the named optional columns in golden order, and ``node``
    (which the writer adds to every row of a node with a name) unless ``node`` is False."""
    unknown = set(optional) - {name for name, _, _ in OPTIONAL}
    assert not unknown, f"not in the golden schema: {sorted(unknown)}"
    wanted = {*optional, "node"} if node else set(optional)
    return FIXED + [c for c in OPTIONAL if c[0] in wanted]


def fields(schema: pa.Schema) -> list[tuple[str, pa.DataType, bool]]:
    """(name, type, nullable) of every field of ``schema``, in order."""
    return [(f.name, f.type, f.nullable) for f in schema]
