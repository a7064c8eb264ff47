"""Text table of a running pipeline's ``/status`` document (``resctrl-pipeline status``)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["format_status"]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def format_status(doc: dict[str, Any], now: float | None = None) -> str:
    """Render the status document as a table, one row per actor, plus readiness."""
    now = time.time() if now is None else now
    header = ("ACTOR", "PID", "STATE", "UPTIME", "RESTARTS", "DROPPED", "LAST SAMPLE")
    rows = [header]
    for name, a in sorted(doc.get("actors", {}).items()):
        counters = a.get("counters", {})
        gauges = a.get("gauges", {})
        dropped = sum(v for k, v in counters.items() if k.startswith("dropped_"))
        last = gauges.get("last_sample_seconds")
        rows.append((
            name,
            str(a.get("pid") or "-"),
            "running" if a.get("running") else "down",
            _age(now - a["started_at"]) if a.get("started_at") else "-",
            str(a.get("restarts", 0)),
            f"{dropped:.0f}",
            f"{_age(now - last)} ago" if last else "-",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if doc.get("ready"):
        lines.append("\nready")
    else:
        lines.append("\nnot ready:")
        lines.extend(f"  - {r}" for r in doc.get("reasons", []))
    return "\n".join(lines)
