"""The noisy-neighbour ranking: occupancy and MBM rate statistics per pod, namespace
or node (pure: Arrow tables in, rows out).

* ``pod``: one row per pod uid, over its samples: mean, p95 and max of
  ``llc_occupancy_bytes`` and of the MBM rate, with its node.
* ``namespace`` / ``node``: each sampling tick's sum over the group's pods on one node
  (rows of a tick share ``start_timestamp``), then mean, p95 and max of those sums:
  "how much cache did this namespace hold on a node at a time".

The MBM rate of a sample is the growth of ``mbm_total_bytes`` since the pod's
previous sample divided by the time between them; the first sample of a pod, a
counter that went backwards (reset) and null counters give no rate. p95 is Arrow's
t-digest estimate. Ranked by mean occupancy, highest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BY", "Ranked", "rank", "with_mbm_rate"]

BY = ("pod", "namespace", "node")


@dataclass(frozen=True, slots=True)
class Ranked:
    """One line of the ranking. Occupancy in bytes, MBM rates in bytes/s (None
    without MBM data); ``key`` is the pod uid, namespace or node. ``reconciled`` and
    ``containers``: the most containers seen in the pod's group and in the pod (pods
    only; 0 for namespaces and nodes)."""

    key: str
    namespace: str | None
    pod: str | None
    node: str | None
    nodes: int
    pods: int
    samples: int
    reconciled: int
    containers: int
    occupancy_mean: float
    occupancy_p95: float
    occupancy_max: float
    mbm_rate_mean: float | None
    mbm_rate_p95: float | None
    mbm_rate_max: float | None
    first_ns: int
    last_ns: int


def with_mbm_rate(table: pa.Table) -> pa.Table:
    """``table`` (in its order) with a float64 ``mbm_rate`` column and an int32
    ``pod_key`` (one value per ``pod_uid``: cheaper to sort and group by than the uid).

    Only the pod key, the timestamp and the counter are put in (pod, time) order to
    find each sample's predecessor; the rates are then put back in the table's order,
    so the string columns are never reordered (that was most of the cost).
    """
    if table.num_rows == 0:
        return table.append_column("pod_key", pa.array([], pa.int32())).append_column(
            "mbm_rate", pa.array([], pa.float64())
        )
    keys = pc.dictionary_encode(table.column("pod_uid").combine_chunks()).indices
    t = table.append_column("pod_key", keys)
    small = t.select(["pod_key", "timestamp", "mbm_total_bytes"])
    order = pc.sort_indices(small, [("pod_key", "ascending"), ("timestamp", "ascending")])
    s = small.take(order).combine_chunks()
    key, ts, mbm = s.column("pod_key"), s.column("timestamp"), s.column("mbm_total_bytes")
    n = s.num_rows
    same = pc.fill_null(pc.equal(key.slice(1), key.slice(0, n - 1)), False)
    dbytes = pc.subtract(mbm.slice(1), mbm.slice(0, n - 1))
    dt = pc.subtract(ts.slice(1), ts.slice(0, n - 1))
    valid = pc.and_(pc.and_(same, pc.greater(dt, 0)), pc.greater_equal(dbytes, 0))
    rate = pc.divide(pc.multiply(pc.cast(dbytes, pa.float64()), 1e9), pc.cast(dt, pa.float64()))
    rate = pc.if_else(pc.fill_null(valid, False), rate, pa.scalar(None, pa.float64()))
    rate = pa.concat_arrays([pa.nulls(1, pa.float64()), *rate.chunks])
    # rate[i] belongs to row order[i]; the inverse permutation puts it at that row.
    back = pc.take(rate, pc.sort_indices(order))
    return t.append_column("mbm_rate", back)


def _stats(table: pa.Table, keys: list[str], extra: list[tuple[str, str]]) -> pa.Table:
    aggs = [
        ("occ", "count"), ("occ", "mean"), ("occ", "max"),
        ("occ", "tdigest", pc.TDigestOptions(q=0.95)),
        ("rate", "mean"), ("rate", "max"), ("rate", "tdigest", pc.TDigestOptions(q=0.95)),
        ("timestamp", "min"), ("timestamp", "max"), *extra,
    ]  # fmt: skip
    return table.group_by(keys, use_threads=False).aggregate(aggs)


def _q(value: list[float] | None) -> float | None:
    return value[0] if value else None


def rank(table: pa.Table, by: str = "pod") -> list[Ranked]:
    """The ranking of ``table`` (columns of :data:`~.source.COLUMNS`) by ``by``.

    Raises:
        ValueError: ``by`` is not one of :data:`BY`.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    t = with_mbm_rate(table.filter(pc.is_valid(table.column("pod_uid"))))
    if t.num_rows == 0:
        return []
    t = t.append_column("occ", pc.cast(t.column("llc_occupancy_bytes"), pa.float64()))
    t = t.append_column("rate", t.column("mbm_rate"))
    t = t.set_column(
        t.schema.get_field_index("node"), "node", pc.fill_null(t.column("node"), "")
    )
    out: list[Ranked] = []
    if by == "pod":
        extra = [("pod_uid", "first"), ("pod_namespace", "last"), ("pod_name", "last"),
                 ("node", "last"), ("reconciled_containers", "max"),
                 ("total_containers", "max")]  # fmt: skip
        for r in _stats(t, ["pod_key"], extra).to_pylist():
            out.append(Ranked(
                key=r["pod_uid_first"], namespace=r["pod_namespace_last"],
                pod=r["pod_name_last"], node=r["node_last"] or None, nodes=1, pods=1,
                samples=r["occ_count"],
                reconciled=r["reconciled_containers_max"] or 0,
                containers=r["total_containers_max"] or 0,
                occupancy_mean=r["occ_mean"], occupancy_p95=_q(r["occ_tdigest"]) or 0.0,
                occupancy_max=r["occ_max"], mbm_rate_mean=r["rate_mean"],
                mbm_rate_p95=_q(r["rate_tdigest"]), mbm_rate_max=r["rate_max"],
                first_ns=r["timestamp_min"], last_ns=r["timestamp_max"],
            ))  # fmt: skip
    else:
        group = "pod_namespace" if by == "namespace" else "node"
        # Dictionary-encoded keys group much faster than plain strings.
        for name in ("pod_namespace", "node"):
            encoded = pc.dictionary_encode(pc.fill_null(t.column(name), "").combine_chunks())
            t = t.set_column(t.schema.get_field_index(name), name, encoded)
        t = t.append_column("node_key", t.column("node").combine_chunks().indices)
        keys = [group, "node", "start_timestamp"] if group != "node" else [group, "start_timestamp"]
        per_tick = t.group_by(keys, use_threads=False).aggregate([
            ("occ", "sum"), ("rate", "sum"), ("rate", "count"),
            ("timestamp", "min"), ("timestamp", "max"),
        ])  # fmt: skip
        rate = pc.if_else(
            pc.greater(per_tick.column("rate_count"), 0), per_tick.column("rate_sum"),
            pa.scalar(None, pa.float64()),
        )  # fmt: skip
        ticks = pa.table({
            "g": per_tick.column(group), "occ": per_tick.column("occ_sum"), "rate": rate,
            "timestamp": per_tick.column("timestamp_min"),
            "last": per_tick.column("timestamp_max"),
        })  # fmt: skip
        pods = t.group_by([group], use_threads=False).aggregate([
            ("pod_key", "count_distinct"), ("node_key", "count_distinct"),
        ])  # fmt: skip
        counts = {r[group]: r for r in pods.to_pylist()}
        for r in _stats(ticks, ["g"], [("last", "max")]).to_pylist():
            c = counts[r["g"]]
            out.append(Ranked(
                key=r["g"], namespace=r["g"] if by == "namespace" else None, pod=None,
                node=r["g"] if by == "node" else None, nodes=c["node_key_count_distinct"],
                pods=c["pod_key_count_distinct"], samples=r["occ_count"], reconciled=0,
                containers=0,
                occupancy_mean=r["occ_mean"], occupancy_p95=_q(r["occ_tdigest"]) or 0.0,
                occupancy_max=r["occ_max"], mbm_rate_mean=r["rate_mean"],
                mbm_rate_p95=_q(r["rate_tdigest"]), mbm_rate_max=r["rate_max"],
                first_ns=r["timestamp_min"], last_ns=r["last_max"],
            ))  # fmt: skip
    out.sort(key=lambda r: (-r.occupancy_mean, r.key))
    return out
