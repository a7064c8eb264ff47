"""What reaches Parquet has exactly the golden schema (``tests/golden_schema.py``):
names, types, nullability and order of the nine fixed columns and of every optional
column, written through the real path — a plain-directory resctrl tree, the
production reader, the sampler, the Parquet sink — and read back from the file."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resctrl_pipeline.messages import GroupState, PodLabels
from resctrl_pipeline.resctrl.mondata import PreadReader
from resctrl_pipeline.sampling import Sampler
from tests import golden_schema as golden
from tests.support import make_group, make_resctrl_tree, write_batch


def written(tmp_path: Path, *, mbm: bool, telemetry: bool = False, per_domain: bool = False,
            labels: bool = True) -> pq.ParquetFile:  # fmt: skip
    """One tick of one pod (and one without labels) through the real path; the file."""
    root = tmp_path / "resctrl"
    make_resctrl_tree(str(root))
    events = tuple(golden.AET_EVENTS) if telemetry else ()
    groups = []
    for uid in ("u1", "u2"):
        g = make_group(str(root / "mon_groups" / f"pod_{uid}"), value=4096)
        for event in events:
            pkg = os.path.join(g, "mon_data", "mon_PERF_PKG_00")
            os.makedirs(pkg, exist_ok=True)
            with open(os.path.join(pkg, event), "w") as f:
                f.write("1.5\n")
        groups.append(g)
    sampler = Sampler(
        PreadReader(mbm=mbm, telemetry=events, per_domain=per_domain),
        with_mbm=mbm,
        telemetry=events,
        per_domain=per_domain,
    )
    for uid, g in zip(("u1", "u2"), groups, strict=True):
        sampler.handle_resctrl_event(GroupState(uid, g, 1, 1))
    if labels:
        sampler.handle_metadata_event(PodLabels("u1", "ns", "p1"))  # u2: labels still null
    batch = sampler.handle_sample_timer()
    assert batch is not None
    return pq.ParquetFile(write_batch(batch, tmp_path / "out"))


@pytest.mark.parametrize(
    ("kind", "options", "optional"),
    [
        ("llc only", {"mbm": False}, []),
        ("with MBM", {"mbm": True}, ["mbm_total_bytes", "mbm_local_bytes", "mbm_state"]),
        (
            "MBM, AET and domains",
            {"mbm": True, "telemetry": True, "per_domain": True},
            [
                "mbm_total_bytes",
                "mbm_local_bytes",
                "mbm_state",
                *golden.AET_EVENTS.values(),
                "domains",
            ],
        ),
        ("domains without MBM", {"mbm": False, "per_domain": True}, ["domains"]),
    ],
)
def test_written_files_have_the_golden_schema(
    tmp_path: Path, kind: str, options: dict[str, bool], optional: list[str]
) -> None:
    f = written(tmp_path, **options)
    assert golden.fields(f.schema_arrow) == golden.expected(optional), kind
    meta = f.schema_arrow.metadata or {}
    assert set(golden.METADATA_KEYS) <= set(meta), meta
    assert meta[b"node"] == b"n1"
    rows = f.read().to_pylist()
    assert {r["pod_uid"] for r in rows} == {"u1", "u2"}
    # Null where the contract says it may be (labels before the metadata arrived).
    assert [(r["pod_namespace"], r["pod_name"]) for r in rows if r["pod_uid"] == "u2"] == [
        (None, None)
    ]


def test_the_fixed_nine_come_first_in_every_file(tmp_path: Path) -> None:
    """Whatever optional columns a file holds, the fixed nine are its first columns,
    with their golden types and nullability."""
    for i, options in enumerate(({"mbm": False}, {"mbm": True, "telemetry": True})):
        f = written(tmp_path / str(i), **options)
        assert golden.fields(f.schema_arrow)[:9] == golden.FIXED


def test_pod_label_columns_come_last_sorted_as_nullable_strings(tmp_path: Path) -> None:
    """``output.pod_labels``: one string column per label key, ``label_`` + the key with
    every character outside [A-Za-z0-9] as ``_``, after every other column, sorted by
    name; null where a pod lacks the label."""
    root = tmp_path / "resctrl"
    make_resctrl_tree(str(root))
    g = make_group(str(root / "mon_groups" / "pod_u1"), value=4096)
    sampler = Sampler(
        PreadReader(mbm=True), with_mbm=True, label_keys=("team", "app.kubernetes.io/name")
    )
    sampler.handle_resctrl_event(GroupState("u1", g, 1, 1))
    sampler.handle_metadata_event(PodLabels("u1", "ns", "p1", labels={"team": "red"}))
    batch = sampler.handle_sample_timer()
    assert batch is not None
    f = pq.ParquetFile(write_batch(batch, tmp_path / "out"))
    labels = [
        ("label_app_kubernetes_io_name", pa.string(), True),
        ("label_team", pa.string(), True),
    ]
    mbm = ["mbm_total_bytes", "mbm_local_bytes", "mbm_state"]
    assert golden.fields(f.schema_arrow) == golden.expected(mbm) + labels
    [row] = f.read().to_pylist()
    assert (row["label_team"], row["label_app_kubernetes_io_name"]) == ("red", None)
