"""What the resctrl filesystem at a root offers: mount type, monitoring features, RMIDs.

Also the 2025–2026 additions (reference ``resctrl-modern.md``): the MBM counter
assignment mode (``info/L3_MON/mbm_assign_mode``, bracketed current choice) and
counter budget (``num_mbm_cntrs``, ``available_mbm_cntrs``: ``<domain>=<n>;…``), and
Intel AET telemetry (``info/PERF_PKG_MON/{mon_features,num_rmids}``).

"Monitoring is usable" (architecture §4.2) means ``info/L3_MON/mon_features`` lists
``llc_occupancy`` and ``mon_groups/`` exists. The filesystem type from
``/proc/mounts`` is reported but not required, so FUSE emulations and bind mounts
work with the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from resctrl_pipeline.errors import ResctrlUnavailable

__all__ = [
    "MonitoringInfo",
    "mount_type",
    "parse_assign_mode",
    "parse_domain_counts",
    "probe",
    "require_monitoring",
]


@dataclass(frozen=True, slots=True)
class MonitoringInfo:
    """Capabilities read from ``<root>/info``; fields are None when unreadable."""

    root: str
    fs_type: str | None
    mon_features: tuple[str, ...]
    num_rmids: int | None
    has_mon_groups: bool
    reason: str
    mbm_assign_mode: str | None = None
    num_mbm_cntrs: dict[int, int] | None = None
    telemetry: tuple[str, ...] = ()
    telemetry_rmids: int | None = None

    @property
    def counter_assignment(self) -> bool:
        """True in ``mbm_event`` mode (ABMC): MBM counters must be assigned to groups."""
        return self.mbm_assign_mode == "mbm_event"

    @property
    def group_limit(self) -> int | None:
        """Monitoring groups the node can hold: the smaller RMID pool (AET), root included."""
        pools = [n for n in (self.num_rmids, self.telemetry_rmids) if n is not None]
        return min(pools) if pools else None

    @property
    def usable(self) -> bool:
        """True when per-group LLC occupancy can be monitored at this root."""
        return not self.reason

    @property
    def has_mbm(self) -> bool:
        """True when both memory-bandwidth counters exist."""
        return {"mbm_total_bytes", "mbm_local_bytes"} <= set(self.mon_features)


def mount_type(root: str, mounts_file: str = "/proc/mounts") -> str | None:
    """Filesystem type mounted exactly at ``root`` (last mount wins), or None."""
    target = os.path.realpath(root)
    found = None
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                # /proc/mounts escapes spaces in paths as \040.
                if len(parts) >= 3 and parts[1].replace("\\040", " ") == target:
                    found = parts[2]
    except OSError:
        return None
    return found


def parse_assign_mode(text: str) -> str | None:
    """The bracketed (current) line of ``mbm_assign_mode``: ``[mbm_event]`` → ``mbm_event``."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            return line[1:-1]
    return None


def parse_domain_counts(text: str) -> dict[int, int] | None:
    """``0=32;1=32`` → {0: 32, 1: 32}; None when malformed."""
    out: dict[int, int] = {}
    for item in text.strip().split(";"):
        dom, eq, count = item.partition("=")
        if not eq or not dom.strip().isdigit() or not count.strip().isdigit():
            return None
        out[int(dom)] = int(count)
    return out or None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096)
    except OSError:
        return None


def probe(root: str, mounts_file: str = "/proc/mounts") -> MonitoringInfo:
    """Inspect ``root`` without raising; ``reason`` says why monitoring is unusable."""
    fs_type = mount_type(root, mounts_file)
    features_text = _read_text(os.path.join(root, "info", "L3_MON", "mon_features"))
    features = tuple(features_text.split()) if features_text else ()
    rmids_text = _read_text(os.path.join(root, "info", "L3_MON", "num_rmids"))
    num_rmids = int(rmids_text) if rmids_text and rmids_text.strip().isdigit() else None
    has_groups = os.path.isdir(os.path.join(root, "mon_groups"))
    if not os.path.isdir(root):
        reason = f"{root} does not exist (is resctrl mounted? mount -t resctrl resctrl {root})"
    elif features_text is None:
        reason = (
            f"{root}/info/L3_MON/mon_features is missing: not a resctrl mount, or the CPU "
            "or kernel lacks L3 monitoring (CONFIG_X86_CPU_RESCTRL, cqm_occup_llc)"
        )
    elif "llc_occupancy" not in features:
        reason = f"L3 monitoring at {root} lacks llc_occupancy (features: {features_text.strip()})"
    elif not has_groups:
        reason = f"{root}/mon_groups is missing: monitoring groups are not supported"
    else:
        reason = ""
    mode_text = _read_text(os.path.join(root, "info", "L3_MON", "mbm_assign_mode"))
    counters_text = _read_text(os.path.join(root, "info", "L3_MON", "num_mbm_cntrs"))
    tele_text = _read_text(os.path.join(root, "info", "PERF_PKG_MON", "mon_features"))
    tele_rmids = _read_text(os.path.join(root, "info", "PERF_PKG_MON", "num_rmids"))
    return MonitoringInfo(
        root,
        fs_type,
        features,
        num_rmids,
        has_groups,
        reason,
        mbm_assign_mode=parse_assign_mode(mode_text) if mode_text else None,
        num_mbm_cntrs=parse_domain_counts(counters_text) if counters_text else None,
        telemetry=tuple(tele_text.split()) if tele_text else (),
        telemetry_rmids=int(tele_rmids) if tele_rmids and tele_rmids.strip().isdigit() else None,
    )


def require_monitoring(root: str) -> MonitoringInfo:
    """Like :func:`probe`, but raise when monitoring is unusable.

    Raises:
        ResctrlUnavailable: with the reason from :func:`probe`.
    """
    info = probe(root)
    if not info.usable:
        raise ResctrlUnavailable(info.reason)
    return info
