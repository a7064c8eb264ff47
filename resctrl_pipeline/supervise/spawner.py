"""Starting, stopping and reaping the actor processes.

Each actor runs as ``python -m actors.<module> --effective-config
<runtime_dir>/config.json`` so that ``ps`` shows which is which. Nothing runs between
``fork`` and ``exec`` (no ``preexec_fn``: this process has an HTTP and a ZeroMQ I/O
thread): the actor ties itself to the supervisor at its start (parent-death signal,
orphan check; :mod:`resctrl_pipeline.tether`), told the supervisor's pid in
``RESCTRL_PIPELINE_SUPERVISOR``.

An actor's standard input is its control pipe: the supervisor keeps the write end,
and closing it asks the actor for an orderly stop. Unlike SIGTERM, nothing but the
supervisor can send that (a group signal reaches every process at once), and its EOF
also arrives when the supervisor dies.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from resctrl_pipeline.tether import ENV, STOP_SIGNALS

__all__ = ["ActorProcess", "actor_module", "available_actors"]


def actor_module(actor: str) -> str:
    """``nri-listener`` → ``actors.nri_listener``."""
    return "actors." + actor.replace("-", "_")


def available_actors(actors: tuple[str, ...]) -> tuple[str, ...]:
    """The actors whose module exists (parts not built yet are simply not spawned)."""
    return tuple(a for a in actors if importlib.util.find_spec(actor_module(a)) is not None)


class ActorProcess:
    """One actor's child process (may be restarted many times)."""

    def __init__(self, actor: str, config_path: str, env: dict[str, str] | None = None,
                 error_path: str | None = None) -> None:  # fmt: skip
        self.actor = actor
        self.config_path = config_path
        self.env = env
        #: Where the actor writes the message of a configuration error (exit 2).
        self.error_path = error_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the current process, if one was started."""
        return self.proc.pid if self.proc else None

    def start(self) -> int:
        """Spawn the process; returns its PID."""
        self.close_control()
        cmd = [sys.executable, "-m", actor_module(self.actor), "--effective-config",
               self.config_path]  # fmt: skip
        if self.error_path is not None:
            cmd += ["--error-file", self.error_path]
        env = dict(os.environ if self.env is None else self.env)
        env[ENV] = str(os.getpid())
        # Blocked across the spawn (the child inherits the mask): a group signal that
        # reaches the new process before it installed its handlers then waits for them
        # (the actor unblocks it in ``tether.tie``) instead of killing it. Here, a
        # signal arriving meanwhile is only delayed until the mask is restored.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
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

    def close_control(self) -> None:
        """Close the control pipe: the actor stops in an orderly way (or already has)."""
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def wait(self, timeout: float, give_up: Callable[[], bool] = lambda: False) -> int | None:
        """Wait up to ``timeout`` s for the process to exit; its exit code, or None.

        ``give_up`` is asked every 50 ms and ends the wait early when true (a second
        Ctrl-C while waiting).
        """
        if self.proc is None:
            return None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline and not give_up():
            try:
                self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()

    def kill(self) -> int | None:
        """SIGKILL the process if it still runs and reap it; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close_control()
        return self.proc.returncode
