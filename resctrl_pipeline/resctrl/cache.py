"""The size of each L3 cache domain, so that an occupancy can be read as a share.

Two sources, first that answers wins:

* ``<resctrl root>/size``: the root (default) group's allocation per resource and
  domain in bytes, e.g. ``L3:0=33554432;1=33554432`` — the whole cache, as the root
  group owns every way. Present when the kernel offers L3 allocation (CAT).
* ``/sys/devices/system/cpu/cpu*/cache/index*/``: the cache with ``level`` 3, its
  ``id`` (the domain id resctrl uses in ``mon_L3_<id>``) and ``size`` (``32768K``).
  Present on every Linux machine, also without CAT (monitoring-only CPUs, most VMs).

Domains with Sub-NUMA Clustering split one cache between nodes; the sizes here are
of the whole cache, as both sources report it.
"""

from __future__ import annotations

import os
import re

__all__ = ["l3_sizes"]

_SIZE = re.compile(r"^(\d+)\s*([KMG]?)$")
_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _from_resctrl(root: str) -> dict[int, int]:
    try:
        with open(os.path.join(root, "size"), encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    out: dict[int, int] = {}
    for line in text.splitlines():
        resource, _, domains = line.strip().partition(":")
        if resource != "L3":  # L3CODE/L3DATA (CDP) are halves of one cache
            continue
        for item in domains.split(";"):
            dom, _, size = item.partition("=")
            if dom.strip().isdigit() and size.strip().isdigit():
                out[int(dom)] = int(size)
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _from_sysfs(cpu_root: str) -> dict[int, int]:
    out: dict[int, int] = {}
    try:
        cpus = [c for c in os.listdir(cpu_root) if re.fullmatch(r"cpu\d+", c)]
    except OSError:
        return {}
    for cpu in cpus:
        cache = os.path.join(cpu_root, cpu, "cache")
        try:
            indexes = [i for i in os.listdir(cache) if i.startswith("index")]
        except OSError:
            continue
        for index in indexes:
            base = os.path.join(cache, index)
            if _read(os.path.join(base, "level")) != "3":
                continue
            ident, size = _read(os.path.join(base, "id")), _SIZE.match(
                _read(os.path.join(base, "size")))  # fmt: skip
            if ident.isdigit() and size:
                out[int(ident)] = int(size[1]) * _UNIT[size[2]]
    return out


def l3_sizes(resctrl_root: str, cpu_root: str = "/sys/devices/system/cpu") -> dict[int, int]:
    """Bytes of each L3 domain by domain id ({} when neither source answers)."""
    return _from_resctrl(resctrl_root) or _from_sysfs(cpu_root)
