"""The contract between an actor's pure core and the shared shell in :mod:`actor`.

A core is a synchronous object that takes inputs and the current monotonic time and
returns outputs as ``(edge, message)`` pairs. It never touches sockets, never sleeps
and has no clock of its own, so unit tests and Hypothesis machines drive it directly.
The shell owns sockets, the poll loop, timers, signals and stats heartbeats.

Hooks have no-op defaults; a core overrides what it needs. A hook returns quickly:
the shell's heartbeat comes from the same loop, so work that can take long (a pass
over thousands of containers) is cut into steps: the core answers True from
:meth:`Core.more_work` and the shell calls :meth:`Core.on_continue` on its next turns,
between inputs, timers and heartbeats, without waiting. A hook that raises loses its
input (the shell counts it and re-sends the core's snapshots); see :mod:`actor`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resctrl_pipeline.messages import Message

__all__ = ["Core", "Outputs", "Stats", "Timer"]

#: What a hook returns: messages to send, each on a named output edge.
Outputs = list[tuple[str, Message]]


@dataclass(frozen=True, slots=True)
class Timer:
    """A periodic deadline timer: fires every ``interval`` seconds of monotonic time."""

    name: str
    interval: float


@dataclass(slots=True)
class Stats:
    """What a core reports in its heartbeat (see :class:`messages.ActorStats`)."""

    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


class Core:
    """Base class of actor cores; every hook defaults to doing nothing."""

    #: Actor name as in :data:`topology.ACTORS`.
    name: str = ""

    def timers(self) -> list[Timer]:
        """Periodic timers this core wants; read once at start."""
        return []

    def idle_timers(self) -> frozenset[str]:
        """Names of :meth:`timers` that have nothing to do now (asked before every wait).

        An idle timer neither fires nor wakes the loop, and its skipped ticks are not
        counted as missed; it resumes on its own schedule once no longer idle (e.g. the
        sampler's tick while there is no pod to read).
        """
        return frozenset()

    def on_start(self, now: float) -> Outputs:
        """Called once before the loop starts."""
        return []

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        """Called for each decoded message received on an input edge."""
        return []

    def on_timer(self, name: str, now: float) -> Outputs:
        """Called when the named timer's deadline passes (missed ticks are skipped)."""
        return []

    def on_signal(self, signame: str, now: float) -> Outputs:
        """Called for SIGUSR1/SIGUSR2/SIGHUP, outside the signal handler."""
        return []

    def watched_fds(self) -> list[int]:
        """Extra file descriptors to poll for reading (e.g. the NRI socket)."""
        return []

    def on_readable(self, fd: int, now: float) -> Outputs:
        """Called when one of :meth:`watched_fds` is readable."""
        return []

    def snapshot(self, edge: str) -> Message | None:
        """Full state for a stateful output edge (sent after drops and periodically)."""
        return None

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`on_deadline` has work, or None.

        Asked before every wait, so a core whose deadlines move (a backoff, a flush
        due some time after the oldest row) wakes exactly when it has work instead of
        polling on a fixed timer. A deadline in the past means "now".
        """
        return None

    def on_deadline(self, now: float) -> Outputs:
        """Called once :meth:`next_deadline` has passed."""
        return []

    def more_work(self) -> bool:
        """True while a long job has steps left (the shell then polls without waiting)."""
        return False

    def on_continue(self, now: float) -> Outputs:
        """Do one bounded step of the pending long job (see :meth:`more_work`)."""
        return []

    def on_stop(self, now: float) -> Outputs:
        """Called once on SIGTERM/SIGINT before the sockets close; drain and finalise."""
        return []

    def statistics(self) -> Stats:
        """Counters, gauges, readiness flags and info strings for the heartbeat."""
        return Stats()
