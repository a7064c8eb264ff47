"""``resctrl-pipeline check``: is this node ready to run the pipeline? One verdict per fact.

Each check returns OK, WARN or FAIL with a sentence a node operator can act on. The
checks only read (and connect to the NRI socket); nothing is created or changed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from resctrl_pipeline.config import Config
from resctrl_pipeline.resctrl.info import probe

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
    else:
        out.append(Verdict("resctrl mount", "WARN" if info.usable else "FAIL",
                           f"nothing mounted at {cfg.resctrl_root}; "
                           f"try: mount -t resctrl resctrl {cfg.resctrl_root}"))  # fmt: skip
    if info.usable:
        out.append(Verdict("L3 monitoring", "OK", "features: " + ", ".join(info.mon_features)))
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
        writable = os.access(os.path.join(cfg.resctrl_root, "mon_groups"), os.W_OK)
        out.append(Verdict("resctrl permissions", "OK" if writable else "FAIL",
                           "mon_groups is writable" if writable else
                           "mon_groups is not writable: run as root and mount resctrl "
                           "read-write (docs/operations.md lists the privileges)"))  # fmt: skip
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
    out = cfg.output_dir
    if out.startswith("s3://"):
        return Verdict("output", "OK", f"object storage {out}")
    probe_dir = out
    while not os.path.exists(probe_dir):
        probe_dir = os.path.dirname(probe_dir) or "/"
    if os.access(probe_dir, os.W_OK):
        return Verdict("output", "OK", f"{out} is writable")
    return Verdict("output", "FAIL", f"{out} is not writable")


def run_checks(cfg: Config) -> list[Verdict]:
    """Every preflight verdict, in a stable order."""
    return [*_resctrl(cfg), _cgroups(cfg), _nri(cfg), _host_pid(), _output(cfg)]
