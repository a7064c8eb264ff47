"""An actor's tie to the supervisor that started it (``resctrl-pipeline up``).

The actor sets this up itself, first thing in its process (``actors/__init__.py``,
before the heavy imports), instead of the supervisor doing it between ``fork`` and
``exec``: a ``preexec_fn`` runs Python in a child forked from a process that already
has an HTTP and a ZeroMQ I/O thread, where any lock held by those threads at the fork
stays locked forever.

* **Parent-death signal.** ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: if ``up`` dies, even by
  SIGKILL, the kernel sends the actor SIGTERM and it stops in an orderly way (the
  writer finalises its file). The signal fires when the *thread* that spawned the
  actor ends; ``up`` spawns from its main thread only.
* **Orphan check.** ``up`` passes its pid in :data:`ENV`. Checked right after the
  parent-death signal is set (so that no death can fall between the two): a parent
  that is already gone means the actor exits at once, status 1.
* **Stop signals.** A Ctrl-C in a terminal, or systemd's ``KillMode=control-group``,
  delivers SIGINT/SIGTERM to every process of the tree at once. While ``up`` lives
  those signals are not the actor's to act on: ``up`` stops the actors one by one in
  data-flow order, each by closing the actor's standard input (its control pipe), so
  that every consumer drains what its producers sent. Only with ``up`` gone does
  SIGINT/SIGTERM stop the actor.

Only the standard library is imported here: this runs before anything else.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping
from types import FrameType

__all__ = ["ENV", "STOP_SIGNALS", "orphaned", "set_parent_death_signal", "supervisor_pid", "tie"]

#: Environment variable through which ``up`` tells an actor its pid.
ENV = "RESCTRL_PIPELINE_SUPERVISOR"
#: The signals a terminal or an init system sends to stop a whole process group. ``up``
#: starts each actor with them blocked; :func:`tie` unblocks them once handled.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})

_PR_SET_PDEATHSIG = 1


def supervisor_pid(environ: Mapping[str, str] | None = None) -> int | None:
    """The pid of the ``up`` that started this process, or None when run by hand."""
    text = (os.environ if environ is None else environ).get(ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def orphaned(expected: int) -> bool:
    """True when this process's parent is no longer ``expected`` (it died; the process
    was re-parented to init or a subreaper)."""
    return os.getppid() != expected


def set_parent_death_signal(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where that does not exist (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def tie(environ: Mapping[str, str] | None = None) -> int | None:
    """Tie this process to its supervisor (see the module docstring).

    Does nothing without :data:`ENV` (an actor run by hand). Until the actor's loop
    installs its own handlers, SIGINT/SIGTERM end the process only when the supervisor
    is gone, and are ignored otherwise; ``up`` spawns the actor with them blocked, so
    one that arrived before this point is handled here too.

    Returns:
        The supervisor's pid, or None when run by hand. Exits (status 1) when the
        supervisor is already gone.
    """
    pid = supervisor_pid(environ)
    if pid is None:
        return None
    set_parent_death_signal(signal.SIGTERM)
    if orphaned(pid):
        os.write(2, f"actor {os.getpid()}: supervisor {pid} is gone; exiting\n".encode())
        os._exit(1)

    def early(signum: int, _frame: FrameType | None) -> None:
        if orphaned(pid):
            raise SystemExit(0)

    for sig in STOP_SIGNALS:
        signal.signal(sig, early)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # pending ones arrive now
    return pid
