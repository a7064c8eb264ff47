"""``report --plot``: occupancy (and MBM rate) over wall-clock time, per pod.

What makes it readable: the ``top`` pods of the ranking get a line each, in styles
that do not repeat (9 colours × 4 dash patterns), everything else is summed into one
"others" line; labels are unique (the uid's start is added where two pods share a
name, the node where the data spans nodes); a pod's line breaks where it has no
samples for more than three of its usual intervals, so a pause is a gap, not a slope;
a dashed reference line marks the L3 size when the files' metadata gives it; a
second panel shows the MBM rate when the data has MBM counters.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from resctrl_pipeline.report.ranking import Ranked, with_mbm_rate
from resctrl_pipeline.report.source import ReportError

__all__ = ["plot"]

_DASHES = ("-", "--", ":", "-.")
# tab10 without its grey, which is kept for "others".
_COLOURS = (0, 1, 2, 3, 4, 5, 6, 8, 9)
_GAP_FACTOR = 3.0


def _labels(top: list[Ranked], multi_node: bool) -> dict[str, str]:
    names = Counter((r.namespace, r.pod) for r in top)
    out = {}
    for r in top:
        label = f"{r.namespace}/{r.pod}" if r.namespace is not None else f"uid {r.key[:8]}"
        if names[(r.namespace, r.pod)] > 1:
            label += f" ({r.key[:8]})"
        if multi_node and r.node:
            label += f" @{r.node}"
        out[r.key] = label
    return out


def _with_gaps(ts: list[int], ys: list[float | None]) -> tuple[list[datetime], list[float]]:
    """Wall-clock x values and y values with NaN inserted where samples pause."""
    if len(ts) < 2:
        return [datetime.fromtimestamp(t / 1e9, UTC) for t in ts], [
            float("nan") if y is None else y for y in ys
        ]
    steps = sorted(b - a for a, b in itertools.pairwise(ts) if b > a)
    usual = steps[len(steps) // 2] if steps else 0
    xs: list[datetime] = []
    out: list[float] = []
    for i, (t, y) in enumerate(zip(ts, ys, strict=True)):
        if i and usual and t - ts[i - 1] > _GAP_FACTOR * usual:
            xs.append(datetime.fromtimestamp((ts[i - 1] + usual) / 1e9, UTC))
            out.append(float("nan"))
        xs.append(datetime.fromtimestamp(t / 1e9, UTC))
        out.append(float("nan") if y is None else y)
    return xs, out


def plot(
    table: pa.Table,
    ranking: list[Ranked],
    out_png: str,
    *,
    top: int = 10,
    l3_cache_bytes: dict[str, int] | None = None,
) -> None:
    """Draw the ``top`` pods of ``ranking`` (by pod) from ``table`` into ``out_png``.

    Raises:
        ReportError: matplotlib is missing (says how to install it), the directory of
            ``out_png`` does not exist, or the file cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(out_png))
    if not os.path.isdir(directory):
        raise ReportError(f"--plot {out_png}: directory {directory} does not exist")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ReportError(
            "--plot needs matplotlib: pip install 'resctrl-pipeline[plot]' "
            "(or .venv/bin/pip install matplotlib)"
        ) from err
    data = with_mbm_rate(table.filter(pc.is_valid(table.column("pod_uid"))))
    chosen = ranking[:top]
    keys = {r.key for r in chosen}
    nodes = {r.node for r in ranking if r.node}
    labels = _labels(chosen, len(nodes) > 1)
    has_mbm = data.num_rows > 0 and data.column("mbm_rate").null_count < data.num_rows
    fig, axes = plt.subplots(
        2 if has_mbm else 1, 1, figsize=(12, 7.5 if has_mbm else 5.5), sharex=True,
        squeeze=False, gridspec_kw={"height_ratios": [3, 2]} if has_mbm else None,
    )  # fmt: skip
    occ_ax = axes[0][0]
    mbm_ax = axes[1][0] if has_mbm else None
    cols = data.select(["pod_uid", "timestamp", "llc_occupancy_bytes", "mbm_rate"]).to_pydict()
    series: dict[str, tuple[list[int], list[float], list[float | None]]] = {}
    others: dict[int, list[float]] = {}
    others_pods: set[str] = set()
    for uid, ts, occ, rate in zip(*cols.values(), strict=True):
        if uid in keys:
            s = series.setdefault(uid, ([], [], []))
            s[0].append(ts)
            s[1].append(occ / 2**20)
            s[2].append(None if rate is None else rate / 1e6)
        else:
            others_pods.add(uid)
            bucket = others.setdefault(ts // 1_000_000_000, [0.0, 0.0])
            bucket[0] += occ / 2**20
            bucket[1] += 0.0 if rate is None else rate / 1e6
    for uid, (ts, occ, rate) in series.items():  # time order, whatever the file order
        order = sorted(range(len(ts)), key=ts.__getitem__)
        series[uid] = ([ts[i] for i in order], [occ[i] for i in order], [rate[i] for i in order])
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(chosen):
        if r.key not in series:
            continue
        ts, occ, rate = series[r.key]
        colour = cmap(_COLOURS[i % len(_COLOURS)])
        style = {"color": colour, "linestyle": _DASHES[(i // len(_COLOURS)) % 4], "linewidth": 1.4}
        xs, ys = _with_gaps(ts, list(occ))
        occ_ax.plot(xs, ys, label=labels[r.key], **style)
        if mbm_ax is not None:
            xs, ys = _with_gaps(ts, rate)
            mbm_ax.plot(xs, ys, **style)
    if others:
        secs = sorted(others)
        style = {"color": "0.5", "linewidth": 2.0, "linestyle": ":"}
        xs, ys = _with_gaps([s * 1_000_000_000 for s in secs], [others[s][0] for s in secs])
        occ_ax.plot(xs, ys, label=f"others ({len(others_pods)} pods, summed)", **style)
        if mbm_ax is not None:
            xs, ys = _with_gaps([s * 1_000_000_000 for s in secs], [others[s][1] for s in secs])
            mbm_ax.plot(xs, ys, **style)
    sizes = sorted(set((l3_cache_bytes or {}).values()))
    if sizes:
        l3 = sizes[-1]
        what = "L3 cache" if len(sizes) == 1 else "largest L3 cache in the data"
        occ_ax.axhline(l3 / 2**20, color="black", linestyle="--", linewidth=1.0,
                       label=f"{what} ({l3 / 2**20:.0f} MiB)")  # fmt: skip
    occ_ax.set_ylabel("LLC occupancy (MiB)")
    occ_ax.set_ylim(bottom=0)
    span = ", ".join(sorted(nodes)) if 0 < len(nodes) <= 3 else f"{len(nodes)} nodes"
    occ_ax.set_title(f"LLC occupancy per pod — top {len(chosen)} of {len(ranking)} pods"
                     + (f" ({span})" if nodes else ""))  # fmt: skip
    occ_ax.grid(True, alpha=0.3)
    occ_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    last_ax = occ_ax
    if mbm_ax is not None:
        mbm_ax.set_ylabel("MBM total (MB/s)")
        mbm_ax.set_ylim(bottom=0)
        mbm_ax.grid(True, alpha=0.3)
        last_ax = mbm_ax
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    last_ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    last_ax.xaxis.set_major_formatter(formatter)
    last_ax.set_xlabel("time (UTC)")
    fig.tight_layout()
    try:
        fig.savefig(out_png, dpi=100)
    except OSError as err:
        raise ReportError(f"--plot {out_png}: {err.strerror or err}") from err
    finally:
        plt.close(fig)
