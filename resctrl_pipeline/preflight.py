"""``resctrl-pipeline check``: is this node ready to run the pipeline? One verdict per fact.

Each check returns OK, WARN or FAIL with a sentence a node operator can act on. The
checks read, connect to the NRI socket, and write one probe file into the output
directory (removed at once, as are directories created for it); nothing else changes.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

from resctrl_pipeline.config import Config
from resctrl_pipeline.resctrl.info import probe
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
