"""What the resctrl filesystem at a root offers: mount type, monitoring features, RMIDs.

"Monitoring is usable" (architecture §4.2) means ``info/L3_MON/mon_features`` lists
``llc_occupancy`` and ``mon_groups/`` exists. The filesystem type from
``/proc/mounts`` is reported but not required, so FUSE emulations and bind mounts
work with the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from resctrl_pipeline.errors import ResctrlUnavailable

__all__ = ["MonitoringInfo", "mount_type", "probe", "require_monitoring"]


@dataclass(frozen=True, slots=True)
class MonitoringInfo:
    """Capabilities read from ``<root>/info``; fields are None when unreadable."""

    root: str
    fs_type: str | None
    mon_features: tuple[str, ...]
    num_rmids: int | None
    has_mon_groups: bool
    reason: str

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
    return MonitoringInfo(root, fs_type, features, num_rmids, has_groups, reason)


def require_monitoring(root: str) -> MonitoringInfo:
    """Like :func:`probe`, but raise when monitoring is unusable.

    Raises:
        ResctrlUnavailable: with the reason from :func:`probe`.
    """
    info = probe(root)
    if not info.usable:
        raise ResctrlUnavailable(info.reason)
    return info
