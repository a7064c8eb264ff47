"""What every benchmark shares: the run context, timing helpers, ``up`` and /status.

Benchmarks that run the pipeline start ``resctrl-pipeline up`` as a child process
with flags, exactly as a user does, and read its ``pids.json`` and HTTP ``/status``.
CPU time is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, every thread,
zmq's I/O threads included) rather than from clock ticks, so that a fraction of a
percent of one core is resolved within a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

from bench.native import Natives
from bench.report import Section

__all__ = [
    "Context",
    "Pipeline",
    "cpu_seconds",
    "memory_mb",
    "runqueue_wait",
    "section",
    "wait_for",
    "wakeups",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Context:
    """Options shared by every benchmark.

    Attributes:
        quick: tiny sizes and short windows (CI smoke runs; numbers not meaningful).
        natives: the compiled C helpers, or None when no compiler is available.
        fuse_missing: why the FUSE emulator cannot run here, or None.
        work: a private scratch directory under /tmp (short, for ipc:// paths).
    """

    quick: bool
    natives: Natives | None
    fuse_missing: str | None
    work: str


def section(name: str, title: str, ctx: Context) -> Section:
    """An empty section for ``name`` (the caller adds the load average around the run)."""
    return Section(name, title, quick=ctx.quick)


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``predicate`` every 50 ms until it returns something truthy.

    Raises:
        TimeoutError: ``timeout`` seconds passed; the message names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _schedstat_sum(pid: int, field: int) -> int | None:
    """One ``schedstat`` field summed over the live threads of ``pid`` (a thread that
    exits between listing and reading is skipped); None without schedstat."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[field])
        except FileNotFoundError:
            continue
        except (OSError, ValueError, IndexError):
            return None
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of every live thread of ``pid``, in seconds.

    Threads that already exited are not counted; a pipeline's threads live as long
    as their process. Falls back to psutil (clock ticks) without schedstat.
    """
    ns = _schedstat_sum(pid, 0)
    if ns is None:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    return ns / 1e9


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` including threads that already exited.

    From ``/proc/<pid>/stat`` (clock ticks, 10 ms): coarser than :func:`cpu_seconds`,
    but it counts the short-lived thread the HTTP server starts for each request (a
    scrape), which ``schedstat`` of the live threads misses.
    """
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def runqueue_wait(pid: int) -> float:
    """Seconds the main thread of ``pid`` has spent runnable but waiting for a CPU
    (``schedstat``'s second field): how much the scheduler, not the code, delayed it."""
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
        return int(f.read().split()[1]) / 1e9


def wakeups(pid: int) -> int:
    """How many times the live threads of ``pid`` have been put on a CPU so far
    (``schedstat``'s third field, summed): each is a wake-up or a preemption resumed.
    0 without schedstat."""
    return _schedstat_sum(pid, 2) or 0


def memory_mb(pid: int) -> tuple[float, float, float]:
    """(RSS, PSS, USS) of ``pid`` in MiB."""
    m = psutil.Process(pid).memory_full_info()
    return m.rss / 2**20, m.pss / 2**20, m.uss / 2**20


class Pipeline:
    """``resctrl-pipeline up`` in a child process, with its runtime dir and HTTP port.

    Args:
        runtime_dir: the pipeline's runtime directory (``pids.json`` appears there).
        flags: every ``up`` flag except ``--runtime-dir`` and ``--http-addr``.
        env: extra environment variables.
        log_path: where its output goes (default: discarded).
    """

    def __init__(
        self,
        runtime_dir: str,
        flags: list[str],
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.runtime_dir = runtime_dir
        cmd = [
            sys.executable,
            "-m",
            "resctrl_pipeline.cli",
            "up",
            "--runtime-dir",
            runtime_dir,
            "--http-addr",
            "127.0.0.1:0",
            *flags,
        ]
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        finally:
            if log_path:
                out.close()  # type: ignore[union-attr]

    def pids(self) -> dict[str, Any]:
        """``pids.json`` ({} before it exists)."""
        try:
            with open(os.path.join(self.runtime_dir, "pids.json"), encoding="utf-8") as f:
                doc: dict[str, Any] = json.load(f)
                return doc
        except (OSError, ValueError):
            return {}

    def actor_pids(self, actors: list[str], timeout: float = 60.0) -> dict[str, int]:
        """Wait until every named actor runs; their pids by name.

        Raises:
            RuntimeError: ``up`` exited. TimeoutError: not all started in time.
        """

        def ready() -> dict[str, int] | None:
            self.check_alive()
            got = self.pids().get("actors", {})
            return {a: int(got[a]) for a in actors} if all(a in got for a in actors) else None

        return wait_for(ready, timeout, f"actors {', '.join(actors)}")

    def check_alive(self) -> None:
        """Raises RuntimeError when ``up`` has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"resctrl-pipeline up exited with {self.proc.returncode}")

    def status(self) -> dict[str, Any] | None:
        """The ``/status`` document, or None while unreachable."""
        port = self.pids().get("http_port")
        if not port:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
                doc: dict[str, Any] = json.loads(r.read())
                return doc
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def scrape(self, path: str) -> tuple[int, float]:
        """GET ``path`` once: (body bytes, seconds until the whole body arrived)."""
        port = self.pids()["http_port"]
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            size = len(r.read())
        return size, time.perf_counter() - t0

    def counter(self, actor: str, name: str, kind: str = "counters") -> float | None:
        """One counter (or gauge, with ``kind="gauges"``) of an actor from /status."""
        doc = self.status()
        if doc is None:
            return None
        value = doc.get("actors", {}).get(actor, {}).get(kind, {}).get(name)
        return None if value is None else float(value)

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait (kill after ``timeout``); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
