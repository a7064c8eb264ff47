"""Finding a running pipeline: its runtime directory leads to its HTTP address and pids.

``up`` writes ``<runtime_dir>/pids.json``: the supervisor's pid, the configured and
the bound HTTP address, each actor's pid, and each process's start time (clock ticks
since boot, field 22 of ``/proc/<pid>/stat``). ``status``, ``rotate`` and ``top`` find
a pipeline through :func:`locate`: by runtime directory, or by HTTP address when the
user chose one (``--http-addr`` or ``http.addr`` in a file) and not a runtime
directory with at least the same precedence.

A pid alone can name another process after a restart or a reboot, so a pid is only
signalled after :func:`verify_process` found the same start time (or, from ``/status``,
a start time within a few seconds) and a ``resctrl_pipeline`` command line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from resctrl_pipeline.errors import PipelineError

__all__ = [
    "PIDS_FILE",
    "Instance",
    "InstanceError",
    "Target",
    "fetch_json",
    "locate",
    "process_start_ticks",
    "verify_process",
]

#: Written by ``up`` in its runtime directory.
PIDS_FILE = "pids.json"

#: How far a ``/status`` start time (taken right after spawning) may be from the
#: kernel's record of the process start before the pid is taken for someone else.
START_TOLERANCE_S = 5.0

#: Command-line marks of our processes: the CLI (``up``) and the actors (``-m actors.<name>``).
_OURS = ("resctrl_pipeline", "resctrl-pipeline", "-m actors.")

#: Origins of configuration values, weakest first (see :mod:`resctrl_pipeline.config`).
_ORIGIN_RANK = {"default": 0, "file": 1, "env": 2, "flag": 3}


class InstanceError(PipelineError):
    """No usable running pipeline where the user pointed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Target:
    """A process of the pipeline as recorded: ``start_ticks`` (exact, from ``pids.json``)
    or ``started_at`` (wall clock, from ``/status``) identify it beyond its pid."""

    name: str
    pid: int
    start_ticks: int | None = None
    started_at: float | None = None


@dataclass(frozen=True)
class Instance:
    """A pipeline found by :func:`locate`; ``where`` names how (for messages)."""

    where: str
    http_url: str
    processes: dict[str, Target] = field(default_factory=dict)
    #: Found by HTTP address: its pids may be of another machine or PID namespace.
    by_http: bool = False


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def verify_process(target: Target, where: str) -> None:
    """Check that ``target.pid`` is still the process that was recorded.

    Raises:
        InstanceError: the pid is gone, started at another time, or is not a
            resctrl-pipeline process (a stale record: the pipeline is not running).
    """
    ticks = process_start_ticks(target.pid)
    if ticks is None:
        raise InstanceError(f"the {target.name} (pid {target.pid}) named in {where} is not "
                            "running: the record is stale, is the pipeline running?")  # fmt: skip
    cmd = _cmdline(target.pid)
    same = any(mark in cmd for mark in _OURS)
    if same and target.start_ticks is not None:
        same = ticks == target.start_ticks
    elif same and target.started_at is not None:
        boot = _boot_time()
        hz = os.sysconf("SC_CLK_TCK")
        same = boot is None or abs(boot + ticks / hz - target.started_at) <= START_TOLERANCE_S
    if not same:
        shown = (cmd[:60] + "…") if len(cmd) > 60 else cmd
        raise InstanceError(f"pid {target.pid}, named as the {target.name} in {where}, is now "
                            f"another process ({shown or '?'!r}): the record is stale, "
                            "is the pipeline running?")  # fmt: skip


def _url(host: str, port: int) -> str:
    # A wildcard bind is reached through the loopback address.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def read_pids(runtime_dir: str) -> dict[str, Any]:
    """The ``pids.json`` document of ``runtime_dir``.

    Raises:
        InstanceError: there is none (no pipeline ever ran there) or it is unreadable.
    """
    path = os.path.join(runtime_dir, PIDS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        hint = "point at one with --runtime-dir DIR or --http-addr HOST:PORT"
        msg = f"no running pipeline in {runtime_dir} (no {PIDS_FILE}); {hint}"
        raise InstanceError(msg) from None
    except PermissionError:
        raise InstanceError(f"cannot read {path}: permission denied (run as the pipeline's "
                            "user, e.g. with sudo)") from None  # fmt: skip
    except (OSError, ValueError) as err:
        raise InstanceError(f"cannot read {path}: {err}") from err
    if not isinstance(doc, dict):
        raise InstanceError(f"{path} is not a pids document")
    return doc


def _from_runtime_dir(runtime_dir: str) -> Instance:
    doc = read_pids(runtime_dir)
    where = os.path.join(runtime_dir, PIDS_FILE)
    started = doc.get("started") if isinstance(doc.get("started"), dict) else {}
    assert isinstance(started, dict)
    procs: dict[str, Target] = {}
    named: dict[str, Any] = {"supervisor": doc.get("supervisor")}
    if isinstance(doc.get("actors"), dict):
        named.update(doc["actors"])
    for name, pid in named.items():
        if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
            ticks = started.get(name)
            procs[name] = Target(str(name), pid, ticks if isinstance(ticks, int) else None)
    if "supervisor" not in procs:
        raise InstanceError(f"{where} names no supervisor pid")
    verify_process(procs["supervisor"], where)
    addr = str(doc.get("http_addr", ""))
    host = addr.rpartition(":")[0].strip("[]")
    port = doc.get("http_port")
    if not isinstance(port, int) or port <= 0:
        raise InstanceError(f"{where} has no HTTP port yet: the pipeline is still starting")
    return Instance(where, _url(host, port), procs)


def fetch_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``url`` and decode its JSON object.

    Raises:
        InstanceError: unreachable, an HTTP error, or not a JSON object.
    """
    # Imported here: urllib pulls in http.client, email and ssl, which `up` (the
    # supervisor, a long-lived process) has no use for.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as err:
        # The pipeline's answers say why in their first line (e.g. per-pod data is off).
        why = err.read(300).decode("utf-8", "replace").strip().split("\n")[0] or err.reason
        raise InstanceError(f"{url} answered {err.code}: {why}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise InstanceError(f"cannot reach the pipeline at {url}: {reason}") from err
    except ValueError as err:
        raise InstanceError(f"{url} did not answer JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InstanceError(f"{url} did not answer a JSON object")
    return doc


def _from_http_addr(addr: str) -> Instance:
    host, _, port = addr.rpartition(":")
    url = _url(host.strip("[]"), int(port))
    doc = fetch_json(f"{url}/status")
    procs: dict[str, Target] = {}
    actors = doc.get("actors") if isinstance(doc.get("actors"), dict) else {}
    assert isinstance(actors, dict)
    for name, a in actors.items():
        if not isinstance(a, dict):
            continue
        pid, at = a.get("pid"), a.get("started_at")
        if isinstance(pid, int) and pid > 0 and a.get("running"):
            procs[name] = Target(str(name), pid, None, float(at) if at else None)
    return Instance(f"the pipeline at {url}", url, procs, by_http=True)


def _rank(origin: str) -> int:
    return _ORIGIN_RANK.get(origin.split(" ", 1)[0], 0)


def locate(runtime_dir: str, http_addr: str, runtime_origin: str = "default",
           http_origin: str = "default") -> Instance:  # fmt: skip
    """The running pipeline the user means.

    The HTTP address is used when it was chosen with a stronger source than the
    runtime directory (flag > env > file > default); otherwise the runtime directory.

    Raises:
        InstanceError: nothing usable there; the message says what to try.
    """
    if _rank(http_origin) > _rank(runtime_origin):
        return _from_http_addr(http_addr)
    return _from_runtime_dir(runtime_dir)
