"""``resctrl-pipeline top``: a running pipeline at a glance, from its HTTP API.

Pure core: :func:`build_view` turns a ``/status`` and a ``/pods`` document (plus the
previous ``/pods``, for MBM rates) into one JSON-ready view, and :func:`render` draws
it as text. The command (:mod:`resctrl_pipeline.cli`) fetches, redraws every
``--interval``, and prints the view once as JSON with ``--once --format json``.

The view: the node, its total L3 occupancy against the L3 size (every domain), the
pipeline's health in one line, and one line per pod, sorted by occupancy: its share
of the L3, its MBM rates (bytes per second between the last two readings; ``None``
before two readings, after a counter reset, or without MBM) and its reconciled
containers.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["build_view", "health_line", "render"]


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def health_line(status: dict[str, Any], now: float | None = None) -> str:
    """The pipeline's health in one line: readiness, actors, restarts, drops, last sample."""
    now = time.time() if now is None else now
    actors = status.get("actors") if isinstance(status.get("actors"), dict) else {}
    assert isinstance(actors, dict)
    running = sum(1 for a in actors.values() if isinstance(a, dict) and a.get("running"))
    restarts = sum(_num(a.get("restarts")) for a in actors.values() if isinstance(a, dict))
    dropped = sum(
        _num(v)
        for a in actors.values() if isinstance(a, dict)
        for k, v in (a.get("counters") or {}).items() if str(k).startswith("dropped_")
    )  # fmt: skip
    sampler = actors.get("sampler") if isinstance(actors.get("sampler"), dict) else {}
    assert isinstance(sampler, dict)
    last = _num((sampler.get("gauges") or {}).get("last_sample_seconds"))
    age = f"{max(0.0, now - last):.1f}s ago" if last else "none yet"
    head = "ready" if status.get("ready") else "NOT READY"
    line = (f"{head} · {running}/{len(actors)} actors running · {restarts:.0f} restarts · "
            f"{dropped:.0f} dropped · last sample {age}")  # fmt: skip
    reasons = [str(r) for r in status.get("reasons") or []]
    return f"{line} · {'; '.join(reasons)}" if reasons else line


def _rate(now: object, before: object, seconds: float) -> float | None:
    if not isinstance(now, int) or not isinstance(before, int) or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


def build_view(status: dict[str, Any], pods: dict[str, Any],
               previous: dict[str, Any] | None = None,
               now: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The view as a JSON-ready document (the ``--once --format json`` output)."""
    l3 = status.get("l3_cache_bytes") if isinstance(status.get("l3_cache_bytes"), dict) else {}
    assert isinstance(l3, dict)
    l3_total = int(sum(_num(v) for v in l3.values())) or None
    before: dict[str, dict[str, Any]] = {}
    seconds = 0.0
    if previous:
        before = {str(p.get("pod_uid")): p for p in previous.get("pods", [])
                  if isinstance(p, dict)}  # fmt: skip
        seconds = (_num(pods.get("timestamp")) - _num(previous.get("timestamp"))) / 1e9
    rows = []
    for p in pods.get("pods", []):
        if not isinstance(p, dict):
            continue
        occ = int(_num(p.get("llc_occupancy_bytes")))
        old = before.get(str(p.get("pod_uid")), {})
        rows.append({
            "namespace": p.get("namespace", ""),
            "pod": p.get("pod", ""),
            "pod_uid": p.get("pod_uid", ""),
            "llc_occupancy_bytes": occ,
            "llc_share": occ / l3_total if l3_total else None,
            "mbm_total_bytes_per_second": _rate(p.get("mbm_total_bytes"),
                                                old.get("mbm_total_bytes"), seconds),
            "mbm_local_bytes_per_second": _rate(p.get("mbm_local_bytes"),
                                                old.get("mbm_local_bytes"), seconds),
            "containers": int(_num(p.get("containers"))),
            "reconciled_containers": int(_num(p.get("reconciled_containers"))),
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["llc_occupancy_bytes"], r["namespace"], r["pod"]))
    return {
        "node": pods.get("node") or status.get("node") or "",
        "timestamp": int(_num(pods.get("timestamp"))),
        "ready": bool(status.get("ready")),
        "health": health_line(status, now),
        "l3_cache_bytes": l3_total,
        "l3_domains": len(l3),
        "llc_occupancy_bytes": sum(r["llc_occupancy_bytes"] for r in rows),
        "pods": rows,
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def _mbs(rate: float | None) -> str:
    return "-" if rate is None else f"{rate / 1e6:.1f}"


def render(view: dict[str, Any], max_pods: int | None = None) -> str:
    """The view as text: a header of three lines, then one line per pod."""
    total, l3 = view["llc_occupancy_bytes"], view["l3_cache_bytes"]
    size = (f" of {_mib(l3)} MiB L3 ({view['l3_domains']} domain(s), {100 * total / l3:.0f}%)"
            if l3 else " (L3 size unknown)")  # fmt: skip
    lines = [
        f"node {view['node'] or '?'} · {len(view['pods'])} pods · "
        f"occupancy {_mib(total)} MiB{size}",
        view["health"],
        "",
    ]
    header = ("POD", "OCC MiB", "% L3", "MBM TOTAL MB/s", "MBM LOCAL MB/s", "CONTAINERS")
    table = [header]
    pods = view["pods"] if max_pods is None else view["pods"][:max_pods]
    for p in pods:
        share = p["llc_share"]
        table.append((
            f"{p['namespace']}/{p['pod']}",
            _mib(p["llc_occupancy_bytes"]),
            "-" if share is None else f"{100 * share:.1f}",
            _mbs(p["mbm_total_bytes_per_second"]),
            _mbs(p["mbm_local_bytes_per_second"]),
            f"{p['reconciled_containers']}/{p['containers']} reconciled",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in table]  # fmt: skip
    if max_pods is not None and len(view["pods"]) > max_pods:
        lines.append(f"… {len(view['pods']) - max_pods} more")
    return "\n".join(lines)
