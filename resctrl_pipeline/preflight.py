"""``resctrl-pipeline check``: is this node ready to run the pipeline? One verdict per fact.

Each check returns OK, WARN or FAIL with a sentence a node operator can act on. The
checks read, connect to the NRI socket, and write one probe file into the output
directory (removed at once, as are directories created for it); nothing else changes.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from dataclasses import dataclass

from resctrl_pipeline.config import Config
from resctrl_pipeline.resctrl.info import MonitoringInfo, parse_domain_counts, probe
from resctrl_pipeline.resctrl.support import diagnose, read_platform

__all__ = ["Verdict", "run_checks"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's outcome: ``status`` is ``OK``, ``WARN`` or ``FAIL``."""

    name: str
    status: str
    detail: str


def _resctrl(cfg: Config) -> list[Verdict]:
    info = probe(cfg.resctrl_root)
    out = []
    if info.fs_type == "resctrl":
        out.append(Verdict("resctrl mount", "OK", f"resctrl mounted at {cfg.resctrl_root}"))
    elif info.fs_type:
        out.append(Verdict("resctrl mount", "WARN",
                           f"{cfg.resctrl_root} is a {info.fs_type} mount, not resctrl "
                           "(fine for an emulation or a bind mount)"))  # fmt: skip
    elif info.usable:
        out.append(Verdict("resctrl mount", "WARN",
                           f"nothing mounted at {cfg.resctrl_root}, but a resctrl-like tree is "
                           "there (a plain directory?)"))  # fmt: skip
    else:
        # Say why before suggesting a mount that cannot work (CPU flags, kernel, BIOS).
        # FAIL either way (nothing is mounted); `why` says whether a mount will do.
        _, why = diagnose(read_platform(), cfg.resctrl_root)
        out.append(Verdict("resctrl mount", "FAIL",
                           f"nothing mounted at {cfg.resctrl_root}; {why}"))  # fmt: skip
    if info.usable:
        out.append(Verdict("L3 monitoring", "OK", "features: " + ", ".join(info.mon_features)))
    elif not info.fs_type and not os.path.exists(cfg.resctrl_root):
        out.append(Verdict("L3 monitoring", "FAIL", "unavailable until resctrl is mounted "
                           "(see resctrl mount)"))  # fmt: skip
    else:
        out.append(Verdict("L3 monitoring", "FAIL", info.reason))
    if info.num_rmids is not None:
        groups_dir = os.path.join(cfg.resctrl_root, "mon_groups")
        try:
            used = len(os.listdir(groups_dir)) + 1  # + the root group's RMID
        except OSError:
            used = 0
        ours = 0
        if used:
            ours = sum(1 for g in os.listdir(groups_dir) if g.startswith(cfg.group_prefix))
        out.append(Verdict("RMIDs", "OK" if used < info.num_rmids else "WARN",
                           f"{info.num_rmids} in total, {used} in use ({ours} by this agent): "
                           f"at most {max(0, info.num_rmids - used + ours)} pods can be "
                           "monitored at once"))  # fmt: skip
    if info.usable:
        out.extend(_hardware(cfg, info))
        writable = os.access(os.path.join(cfg.resctrl_root, "mon_groups"), os.W_OK)
        out.append(Verdict("resctrl permissions", "OK" if writable else "FAIL",
                           "mon_groups is writable" if writable else
                           "mon_groups is not writable: run as root and mount resctrl "
                           "read-write (docs/operations.md lists the privileges)"))  # fmt: skip
    return out


_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096)
    except OSError:
        return ""


def _hardware(cfg: Config, info: MonitoringInfo) -> list[Verdict]:
    """Name what the node has (reference ``resctrl-modern.md``) and what the agent does
    about each: classic or SNC-n, ABMC with counters, AET, classes, runtime-made groups."""
    root = cfg.resctrl_root
    mon_data = os.path.join(root, "mon_data")
    l3 = [d for d in _listdir(mon_data) if d.startswith("mon_L3_")]
    first = os.path.join(mon_data, l3[0]) if l3 else ""
    subs = [s for s in _listdir(first) if s.startswith("mon_sub_L3_")] if l3 else []
    out = []
    if subs:
        out.append(Verdict("hardware: SNC", "OK",
                           f"SNC-{len(subs)} (sub-NUMA clustering, {len(subs)} nodes in each of "
                           f"{len(l3)} L3 domains): the agent reads each L3 once (the "
                           "kernel's L3-level sum) and checks a zero sum against the nodes "
                           "(kernels without fix 594902c986e2 read 0 after a CPU went "
                           "offline)"))  # fmt: skip
    else:
        out.append(Verdict("hardware: L3", "OK",
                           f"classic L3 monitoring, {len(l3)} L3 domain(s): one MON group per "
                           "pod, its values summed over the domains"))  # fmt: skip
    if info.counter_assignment:
        total = min((info.num_mbm_cntrs or {0: 0}).values())
        free = parse_domain_counts(_read(os.path.join(root, "info", "L3_MON",
                                                      "available_mbm_cntrs"))) or {}  # fmt: skip
        spare = min(free.values(), default=0)
        pods = spare // 2
        policy = ", ".join(cfg.mbm_assign)
        out.append(Verdict("hardware: ABMC", "OK" if pods else "WARN",
                           f"AMD counter assignment (mbm_event mode): {spare}/{total} MBM "
                           f"counters free per domain, two per group: about {pods} more pods "
                           f"can have MBM; resctrl.mbm_assign = {policy} decides which; the "
                           "others' rows have null MBM and mbm_state 'unassigned'"))  # fmt: skip
    elif info.mbm_assign_mode == "default" and "mbm_event" in _read(
        os.path.join(root, "info", "L3_MON", "mbm_assign_mode")
    ):
        out.append(Verdict("hardware: ABMC", "OK",
                           "AMD counter assignment is available but off (default mode): "
                           "MBM as on older kernels"))  # fmt: skip
    if info.telemetry:
        out.append(Verdict("hardware: AET", "OK",
                           f"Intel telemetry (PERF_PKG): {', '.join(info.telemetry)}; one "
                           "float64 column per event; groups limited to "
                           f"{info.group_limit} (the smaller RMID pool)"))  # fmt: skip
    classes = [c for c in _listdir(root) if c not in ("info", "mon_groups", "mon_data")
               and os.path.isdir(os.path.join(root, c, "mon_groups"))]  # fmt: skip
    if classes:
        shown = ", ".join(classes[:8]) + (" …" if len(classes) > 8 else "")
        out.append(Verdict("hardware: classes", "OK",
                           f"{len(classes)} RDT class(es) (CTRL_MON groups): {shown}; "
                           "a pod with threads in a class gets its MON group under that "
                           "class (<class>/mon_groups/); classes themselves are never "
                           "touched"))  # fmt: skip
    runtime = [
        g for c in ("", *classes)
        for g in _listdir(os.path.join(root, c, "mon_groups"))
        if _CONTAINER_ID.fullmatch(g)
    ]  # fmt: skip
    if runtime:
        what = ("moves their threads into the pod's group" if cfg.runtime_groups == "move"
                else "reads them for their pods and moves none of their threads")  # fmt: skip
        out.append(Verdict("hardware: runtime groups", "OK",
                           f"{len(runtime)} runtime-made MON group(s) (runc/crun "
                           f"enableMonitoring); resctrl.runtime_groups = {cfg.runtime_groups}: "
                           f"the agent {what}"))  # fmt: skip
    return out


def _cgroups(cfg: Config) -> Verdict:
    root = cfg.cgroup_root
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return Verdict("cgroups", "OK", f"cgroup v2 (unified) at {root}")
    v1 = [
        c for c in ("pids", "cpu", "cpuacct", "memory", "systemd") if os.path.isdir(f"{root}/{c}")
    ]
    if v1:
        return Verdict("cgroups", "OK", f"cgroup v1/hybrid at {root} ({', '.join(v1)})")
    return Verdict("cgroups", "FAIL", f"no cgroup hierarchy found at {root}")


def _nri(cfg: Config) -> Verdict:
    path = cfg.nri_socket
    if not os.path.exists(path):
        return Verdict(
            "NRI socket",
            "FAIL",
            f"{path} does not exist: enable NRI in containerd (docs/nri-setup.md)",
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(path)
    except OSError as err:
        return Verdict("NRI socket", "FAIL", f"cannot connect to {path}: {err.strerror}")
    finally:
        sock.close()
    return Verdict("NRI socket", "OK", f"{path} accepts connections")


def _host_pid() -> Verdict:
    try:
        with open("/proc/1/comm", encoding="utf-8") as f:
            init = f.read().strip()
    except OSError:
        init = "?"
    if init in ("pause", "sleep", "sh", "bash", "python3", "python", "resctrl-pipeline"):
        return Verdict(
            "host PID namespace",
            "WARN",
            f"PID 1 is {init!r}: without hostPID the agent cannot move threads",
        )
    return Verdict("host PID namespace", "OK", f"PID 1 is {init!r}")


def _output(cfg: Config) -> Verdict:
    """Create the directory if needed, write, sync and remove a probe file, and remove
    the directories it created: what the writer will do, tried for real."""
    out = cfg.spool_dir if cfg.output_dir.startswith("s3://") else cfg.output_dir
    what = "spool dir" if out != cfg.output_dir else "output dir"
    created: list[str] = []
    probe_dir = out
    while not os.path.exists(probe_dir) and probe_dir != os.path.dirname(probe_dir):
        created.append(probe_dir)
        probe_dir = os.path.dirname(probe_dir)
    path = os.path.join(out, f".resctrl-pipeline-check-{os.getpid()}")
    try:
        os.makedirs(out, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"check\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(path)
    except OSError as err:
        reason = err.strerror or str(err)
        if not os.path.isdir(probe_dir):
            reason = f"{probe_dir} is not a directory"
        return Verdict("output", "FAIL", f"cannot write into {what} {out}: {reason}")
    finally:
        for d in created:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(d)
    suffix = f" (object storage {cfg.output_dir} uploads from it)" if what == "spool dir" else ""
    return Verdict("output", "OK", f"created and removed a file in {what} {out}{suffix}")


def run_checks(cfg: Config) -> list[Verdict]:
    """Every preflight verdict, in a stable order."""
    return [*_resctrl(cfg), _cgroups(cfg), _nri(cfg), _host_pid(), _output(cfg)]
