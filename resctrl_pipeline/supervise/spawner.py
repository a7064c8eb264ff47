"""Starting, signalling and reaping the actor processes.

Each actor runs as ``python -m actors.<module> --effective-config
<runtime_dir>/config.json`` so that ``ps`` shows which is which. Children get
``PR_SET_PDEATHSIG`` = SIGTERM: if the supervisor dies, even by SIGKILL, its actors
stop in an orderly way (the writer finalises its file) instead of lingering as orphans.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time

__all__ = ["ActorProcess", "actor_module", "available_actors"]

_PR_SET_PDEATHSIG = 1


def actor_module(actor: str) -> str:
    """``nri-listener`` → ``actors.nri_listener``."""
    return "actors." + actor.replace("-", "_")


def available_actors(actors: tuple[str, ...]) -> tuple[str, ...]:
    """The actors whose module exists (parts not built yet are simply not spawned)."""
    return tuple(a for a in actors if importlib.util.find_spec(actor_module(a)) is not None)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: orphans are then reaped by the init system


class ActorProcess:
    """One actor's child process (may be restarted many times)."""

    def __init__(self, actor: str, config_path: str, env: dict[str, str] | None = None) -> None:
        self.actor = actor
        self.config_path = config_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the current process, if one was started."""
        return self.proc.pid if self.proc else None

    def start(self) -> int:
        """Spawn the process; returns its PID."""
        cmd = [sys.executable, "-m", actor_module(self.actor), "--effective-config",
               self.config_path]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, env=self.env
        )
        return self.proc.pid

    def poll(self) -> int | None:
        """Exit code if the process has exited (reaps it), else None."""
        return self.proc.poll() if self.proc else None

    def running(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> bool:
        """Send ``sig``; False if there is no running process."""
        if not self.running() or self.proc is None:
            return False
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.signal(signal.SIGTERM):
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    self.proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode
