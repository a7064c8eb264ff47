"""The one actor shell every process uses: sockets, poll loop, timers, signals, stats.

An :class:`Actor` wires a :class:`~resctrl_pipeline.core.Core` to its edges from
:mod:`topology`: it binds a PULL socket per input edge, connects a PUSH socket per
output edge, and runs one poll loop that

* decodes input messages (malformed or oversized ones are counted and skipped),
* fires deadline timers on the monotonic clock (a missed tick is skipped and counted,
  never made up in a burst),
* sends outputs without blocking: at the high-water mark a message is dropped and
  counted, a stateful edge is marked dirty and gets a full snapshot as soon as a send
  succeeds again, and each stateful edge also gets a snapshot every
  ``snapshot_interval`` (anti-entropy: PUSH/PULL has no back channel),
* logs drops at most once a second per edge: ``Dropped N <what> in the last second``,
* turns SIGTERM/SIGINT into an orderly stop and SIGUSR1 into ``core.on_signal``;
  under ``up`` it stops when ``up`` closes its standard input (the control pipe), and
  SIGTERM/SIGINT stop it only once ``up`` is gone (:mod:`tether`: a group signal
  reaches every process at once, and ``up`` stops the actors in data-flow order),
* isolates faults: a hook that raises loses its input (message, timer tick, signal),
  is counted (``hook_errors_<hook>``) and logged sparingly (traceback the first
  time), and every stateful output is marked dirty so that a full snapshot
  re-converges the consumers; only ``max_consecutive_hook_errors`` failures in a row
  of one hook on one input end the actor (exit 1) so the supervisor restarts it,
* runs a core's long work in steps (:meth:`Core.more_work`): the loop then polls
  without waiting, so heartbeats and inputs keep flowing between the steps,
* pushes an :class:`~resctrl_pipeline.messages.ActorStats` heartbeat to the supervisor:
  within ``stats_interval`` (1 s) of any activity (a message received or sent, an fd
  event, a signal, the core's own deadline, a step of long work, a failed hook; not a
  periodic timer that emitted nothing), and otherwise every
  ``quiet_stats_interval`` (:func:`topology.quiet_heartbeat_interval`), so that an idle
  actor wakes only for its own deadlines and a rare proof of life.

Only this module and the supervisor import zmq.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from resctrl_pipeline import codec, tether
from resctrl_pipeline.config import Config, load, load_handoff, resolve
from resctrl_pipeline.core import Core, Outputs, Stats, Timer
from resctrl_pipeline.droplog import DropLog
from resctrl_pipeline.errors import ConfigError, DecodeError
from resctrl_pipeline.hookfaults import HookFaults
from resctrl_pipeline.messages import ActorStats, Message
from resctrl_pipeline.topology import (
    EDGES,
    HEARTBEAT_INTERVAL,
    edges_from,
    edges_into,
    endpoint,
    quiet_heartbeat_interval,
)

__all__ = ["Actor", "ActorSettings", "TimerSchedule", "run_actor"]

log = logging.getLogger(__name__)

_SIGNALS_TO_CORE: dict[int, str] = {
    signal.SIGUSR1: "SIGUSR1",
    signal.SIGUSR2: "SIGUSR2",
    signal.SIGHUP: "SIGHUP",
}


class TimerSchedule:
    """Deadline bookkeeping for periodic timers (pure; time passed in).

    Deadlines advance by whole intervals from the start time, so timers do not drift.
    After a stall, the timer fires once and the ticks that were missed are counted in
    :attr:`missed`, not replayed.
    """

    def __init__(self, timers: list[Timer], now: float) -> None:
        self._timers = {t.name: t for t in timers}
        self._deadline = {t.name: now + t.interval for t in timers}
        self.missed: dict[str, int] = {t.name: 0 for t in timers}

    def due(self, now: float, idle: frozenset[str] = frozenset()) -> list[str]:
        """Names of timers whose deadline has passed, advancing their deadlines.

        An ``idle`` timer's passed deadlines advance without firing and without counting
        missed ticks (nothing was due, so nothing was missed).
        """
        fired = []
        for name, deadline in self._deadline.items():
            if now < deadline:
                continue
            interval = self._timers[name].interval
            late = int((now - deadline) // interval)
            self._deadline[name] = deadline + (late + 1) * interval
            if name in idle:
                continue
            self.missed[name] += late
            fired.append(name)
        return fired

    def next_deadline(self, idle: frozenset[str] = frozenset()) -> float | None:
        """The earliest pending deadline of a timer not ``idle``, or None."""
        return min((d for n, d in self._deadline.items() if n not in idle), default=None)


@dataclass(frozen=True)
class ActorSettings:
    """How the shell runs a core. Injected so tests can pick tiny intervals and clocks."""

    runtime_dir: str
    channel_capacity: int
    snapshot_interval: float = 10.0
    #: Heartbeat period while the actor is active (see the module docstring).
    stats_interval: float = HEARTBEAT_INTERVAL
    #: Heartbeat period while nothing happens; at least ``stats_interval``.
    quiet_stats_interval: float = HEARTBEAT_INTERVAL
    #: Monotonic clock; injectable so tests drive timers deterministically.
    clock: Callable[[], float] = time.monotonic
    #: Edge name → endpoint override (tests); default from :func:`topology.endpoint`.
    endpoints: dict[str, str] = field(default_factory=dict)
    install_signal_handlers: bool = True
    #: Failures in a row of one hook on one input that end the actor (exit 1).
    max_consecutive_hook_errors: int = 5
    #: The pid of ``up`` when run by it (see :mod:`tether`), else None.
    supervisor_pid: int | None = None
    #: Read end of the control pipe from ``up`` (its EOF asks for an orderly stop).
    control_fd: int | None = None


class Actor:
    """Runs one core in a poll loop until stopped. Not thread-safe; one per process."""

    def __init__(self, core: Core, settings: ActorSettings) -> None:
        self.core = core
        self.settings = settings
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._pull: dict[str, zmq.Socket[bytes]] = {}
        self._push: dict[str, zmq.Socket[bytes]] = {}
        self._dirty: dict[str, bool] = {}
        self._drops = DropLog()
        self._seq = 0
        self._received: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        self._decode_errors = 0
        self._started_at = time.time()
        self._stop = False
        self._failed = False
        self._faults = HookFaults(settings.max_consecutive_hook_errors)
        self._pending_signals: list[str] = []
        self._ignored_signals: list[int] = []
        self._wakeup_set = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller = zmq.Poller()
        self._fds: set[int] = set()
        self._open_sockets()
        now = settings.clock()
        #: When the last heartbeat went out, and whether anything happened since.
        self._stats_at = now
        self._active = False
        extra = []
        if any(EDGES[e].stateful for e in self._push):
            extra.append(Timer("__snapshot", settings.snapshot_interval))
        self._schedule = TimerSchedule(core.timers() + extra, now)

    # --- sockets --------------------------------------------------------------------

    def _address(self, edge: str) -> str:
        return self.settings.endpoints.get(edge) or endpoint(self.settings.runtime_dir, edge)

    def _open_sockets(self) -> None:
        hwm = self.settings.channel_capacity
        for edge in edges_into(self.core.name):
            sock = self._ctx.socket(zmq.PULL)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_MESSAGE_BYTES)
            address = self._address(edge)
            _remove_stale_ipc(address)
            sock.bind(address)
            _restrict_ipc(address)
            self._pull[edge] = sock
            self._poller.register(sock, zmq.POLLIN)
        for edge in (*edges_from(self.core.name), "stats"):
            if edge in self._push:
                continue
            sock = self._ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.connect(self._address(edge))
            self._push[edge] = sock
        self._poller.register(self._wake_r, zmq.POLLIN)
        if self.settings.control_fd is not None:
            self._poller.register(self.settings.control_fd, zmq.POLLIN)

    def _sync_fds(self) -> None:
        wanted = set(self.core.watched_fds())
        for fd in self._fds - wanted:
            self._poller.unregister(fd)
        for fd in wanted - self._fds:
            self._poller.register(fd, zmq.POLLIN)
        self._fds = wanted

    # --- sending ----------------------------------------------------------------------

    def _try_send(self, edge: str, msg: Message) -> bool:
        self._seq += 1
        data = codec.encode(msg, src=self.core.name, seq=self._seq, ts=time.time())
        try:
            self._push[edge].send(data, zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._sent[edge] = self._sent.get(edge, 0) + 1
        if edge != "stats":
            self._active = True
        return True

    def send(self, edge: str, msg: Message) -> bool:
        """Send without blocking; returns False (and counts a drop) at the HWM.

        On a stateful edge that is dirty, a full snapshot is tried first and, when it
        goes out, stands in for ``msg`` (the snapshot already contains its effect).
        """
        now = self.settings.clock()
        if self._dirty.get(edge):
            if not self._writable(edge):
                self._drops.record(edge, now)
                return False
            snap = self._snapshot(edge)
            if snap is not None:
                if self._try_send(edge, snap):
                    self._dirty[edge] = False
                    return True
                self._drops.record(edge, now)
                return False
            # No snapshot yet (the core does not know the full state): the delta is
            # the best there is; the edge stays dirty until a snapshot goes out.
        if self._try_send(edge, msg):
            return True
        self._drops.record(edge, now)
        if EDGES[edge].stateful:
            self._dirty[edge] = True
        return False

    def _emit(self, outputs: Outputs) -> None:
        if any(edge != "stats" for edge, _ in outputs):
            self._active = True  # even when every message is dropped: drops are news
        for edge, msg in outputs:
            self.send(edge, msg)

    def _writable(self, edge: str) -> bool:
        """Whether a message on ``edge`` would be accepted now (below the HWM).

        Checked before a snapshot is built: building and encoding one (O(pods)) for
        every event, or every period, while the consumer is down made NRI answers
        wait for it.
        """
        events = self._push[edge].getsockopt(zmq.EVENTS)
        return isinstance(events, int) and bool(events & zmq.POLLOUT)

    def _retry_dirty(self) -> None:
        for edge, dirty in self._dirty.items():
            if dirty and self._writable(edge):
                snap = self._snapshot(edge)
                if snap is not None and self._try_send(edge, snap):
                    self._dirty[edge] = False

    # --- fault isolation ----------------------------------------------------------------

    def _hook_failed(self, hook: str, where: str, err: Exception) -> None:
        """Count a hook's failure; its input is lost, so re-send every stateful output
        in full (the core may have applied part of it); stop after too many in a row."""
        self._active = True
        for edge in self._push:
            if EDGES[edge].stateful:
                self._dirty[edge] = True
        if self._faults.failed(hook, where, err, self.settings.clock()):
            self._failed = self._stop = True

    def _snapshot(self, edge: str) -> Message | None:
        """The core's snapshot of ``edge``, or None when building it failed (counted;
        the edge stays dirty and is tried again)."""
        try:
            snap = self.core.snapshot(edge)
        except Exception as err:
            self._hook_failed("snapshot", edge, err)
            return None
        self._faults.succeeded("snapshot", edge)
        return snap

    # --- the loop ---------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            sup = self.settings.supervisor_pid
            if sup is not None and not tether.orphaned(sup):
                self._ignored_signals.append(signum)  # up drives the stop
            else:
                self._stop = True
        else:
            self._pending_signals.append(_SIGNALS_TO_CORE.get(signum, str(signum)))

    def stop(self) -> None:
        """Ask the loop to finish after the current step."""
        self._stop = True

    def step(self, max_wait: float | None = None) -> None:
        """One poll iteration: wait for input or the next deadline, then handle both.

        Args:
            max_wait: upper bound on the wait in seconds (tests pass 0 to never block).
        """
        clock = self.settings.clock
        self._sync_fds()
        now = clock()
        core_deadline = self._core_deadline()
        idle = self._idle_timers()
        deadlines = [
            d
            for d in (
                self._schedule.next_deadline(idle),
                self._drops.next_due(),
                core_deadline,
                self._stats_due(),
            )
            if d is not None
        ]
        wait = max(0.0, min(deadlines) - now) if deadlines else 1.0
        if self._core_busy():
            wait = 0.0  # a long job is under way: only look for input, then go on with it
        if max_wait is not None:
            wait = min(wait, max_wait)
        try:
            # Rounded up: a timeout cut to whole milliseconds would wake the loop before
            # the deadline and spin with zero timeouts until it passes (hundreds of empty
            # steps a second). A deadline is met up to 1 ms late instead, never early.
            events = dict(self._poller.poll(math.ceil(wait * 1000)))
        except zmq.ZMQError as err:
            if err.errno == zmq.ETERM:
                self._stop = True
                return
            events = {}
        if events:
            # Input, an fd event or a signal: news for the next heartbeat.
            self._active = True
        if self._wake_r in events or self._wake_r.fileno() in events:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        self._tend_supervisor(events)
        for edge, sock in self._pull.items():
            if sock in events:
                self._drain(edge, sock)
        for fd in self._fds:
            if fd in events:
                try:
                    out = self.core.on_readable(fd, clock())
                except Exception as err:
                    self._hook_failed("on_readable", "fd", err)
                else:
                    self._faults.succeeded("on_readable", "fd")
                    self._emit(out)
        while self._pending_signals:
            signame = self._pending_signals.pop(0)
            try:
                out = self.core.on_signal(signame, clock())
            except Exception as err:
                self._hook_failed("on_signal", signame, err)
            else:
                self._faults.succeeded("on_signal", signame)
                self._emit(out)
        now = clock()
        # Idle as before the wait: a timer that stops being idle in this step (a
        # pod arrived) starts at its next deadline, its quiet past not counted missed.
        for name in self._schedule.due(now, idle):
            if name == "__snapshot":
                self._send_snapshots()
            else:
                try:
                    out = self.core.on_timer(name, now)
                except Exception as err:
                    self._hook_failed("on_timer", name, err)
                else:
                    self._faults.succeeded("on_timer", name)
                    self._emit(out)
        if core_deadline is not None and now >= core_deadline:
            # Work the core scheduled for itself (a flush, a reconnect): news, unlike a
            # periodic timer that found nothing to do (the sampler's tick without pods).
            self._active = True
            try:
                out = self.core.on_deadline(now)
            except Exception as err:
                self._hook_failed("on_deadline", "", err)
            else:
                self._faults.succeeded("on_deadline", "")
                self._emit(out)
        if self._core_busy():
            self._active = True
            try:
                out = self.core.on_continue(clock())
            except Exception as err:
                self._hook_failed("on_continue", "", err)
            else:
                self._faults.succeeded("on_continue", "")
                self._emit(out)
        self._retry_dirty()
        for edge, n in self._drops.due(now):
            log.warning("Dropped %d %s in the last second", n, EDGES[edge].what)
        if clock() >= self._stats_due():
            self._send_stats()

    def _stats_due(self) -> float:
        """When the next heartbeat is due: soon after activity, rarely without."""
        s = self.settings
        period = s.stats_interval if self._active else max(s.quiet_stats_interval, s.stats_interval)
        return self._stats_at + period

    def _tend_supervisor(self, events: dict[object, int]) -> None:
        """Stop when ``up`` closes the control pipe; say which signals were left to it."""
        fd = self.settings.control_fd
        # Data is never sent on the pipe; only its end means something.
        if fd is not None and fd in events and not os.read(fd, 4096):
            log.info("stop requested by the supervisor")
            self._stop = True
        while self._ignored_signals:
            name = signal.Signals(self._ignored_signals.pop(0)).name
            log.info("%s left to the supervisor (pid %s), which stops the actors in order",
                     name, self.settings.supervisor_pid)  # fmt: skip

    def _drain(self, edge: str, sock: zmq.Socket[bytes]) -> bool:
        """Handle up to 1,024 queued messages; True when more may be waiting.

        Bounded so that one busy edge cannot starve timers and the other edges.
        """
        for _ in range(1024):
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return False
            self._received[edge] = self._received.get(edge, 0) + 1
            try:
                env = codec.decode(data)
            except DecodeError as err:
                self._decode_errors += 1
                log.warning("skipping malformed message on %s: %s", edge, err)
                continue
            try:
                out = self.core.on_message(edge, env.body, self.settings.clock())
            except Exception as err:
                self._hook_failed("on_message", edge, err)
                continue
            self._faults.succeeded("on_message", edge)
            self._emit(out)
        return True

    def _core_deadline(self) -> float | None:
        """The core's next deadline (None if asking fails: the failure is counted, and
        the heartbeat timer still wakes the loop)."""
        try:
            deadline = self.core.next_deadline()
        except Exception as err:
            self._hook_failed("next_deadline", "", err)
            return None
        if deadline is None or math.isnan(deadline) or deadline == math.inf:
            return None  # nothing due ever (until the core says otherwise)
        return deadline  # -inf: due now

    def _idle_timers(self) -> frozenset[str]:
        """The core's idle timers (none if asking fails: the failure is counted, and
        every timer then fires as scheduled)."""
        try:
            return self.core.idle_timers()
        except Exception as err:
            self._hook_failed("idle_timers", "", err)
            return frozenset()

    def _core_busy(self) -> bool:
        """Whether the core has a long job with steps left (False if asking fails)."""
        try:
            return self.core.more_work()
        except Exception as err:
            self._hook_failed("more_work", "", err)
            return False

    def _send_snapshots(self) -> None:
        for edge in self._push:
            if not EDGES[edge].stateful:
                continue
            if not self._writable(edge):
                self._dirty[edge] = True  # goes out once the consumer takes messages again
                continue
            snap = self._snapshot(edge)
            if snap is not None and not self._try_send(edge, snap):
                self._dirty[edge] = True

    def stats(self) -> ActorStats:
        """The heartbeat: core statistics plus the shell's own counters."""
        try:
            core: Stats = self.core.statistics()
        except Exception as err:
            # The shell's own counters still go out: a heartbeat proves the loop runs.
            self._hook_failed("statistics", "", err)
            core = Stats()
        else:
            self._faults.succeeded("statistics", "")
        counters = dict(core.counters)
        for edge, n in self._received.items():
            counters[f"received_{edge}"] = n
        for edge, n in self._sent.items():
            counters[f"sent_{edge}"] = n
        for edge in self._push:
            # Zero before the first drop, so that a dashboard's drop rate reads 0, not "no data".
            counters[f"dropped_{edge}"] = self._drops.total.get(edge, 0)
        for name, n in self._schedule.missed.items():
            if not name.startswith("__"):
                counters[f"missed_ticks_{name}"] = n
        counters["decode_errors"] = self._decode_errors
        counters.update(self._faults.counters())
        return ActorStats(
            actor=self.core.name, pid=os.getpid(), started_at=self._started_at,
            counters=counters, gauges=dict(core.gauges), ready=dict(core.ready),
            info=dict(core.info),
        )  # fmt: skip

    def _send_stats(self) -> None:
        # Heartbeats are plain data: a dropped one is replaced by the next.
        self._try_send("stats", self.stats())
        self._stats_at = self.settings.clock()
        self._active = False

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`stop`); returns the exit code.

        0 after an orderly stop; 1 when a hook failed ``max_consecutive_hook_errors``
        times in a row (the supervisor's restart policy then starts a fresh process).
        """
        if self.settings.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT, *_SIGNALS_TO_CORE):
                signal.signal(sig, self._on_signal)
            signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            self._wakeup_set = True
        try:
            self._emit(self.core.on_start(self.settings.clock()))
            self._send_stats()
            # Everything alive now (modules, the core's set-up) lives as long as the
            # process: frozen, the cycle collector stops re-scanning it, and its full
            # collections shrink from 10-20 ms (a missed 10 ms sampling tick, a late
            # NRI answer) to about one.
            gc.freeze()
            while not self._stop:
                self.step()
            if self._failed:
                self._send_stats()  # the counters that explain the exit
                return 1
            if self.settings.install_signal_handlers:
                # A stop is under way: a second signal (another Ctrl-C reaching the
                # whole group) must not cut it short. Ignored, not handled, because a
                # Python handler reverts to the default action while the interpreter
                # shuts down. ``up``'s "stop now" ends a stop that hangs, with SIGKILL.
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)
            # Producers are stopped first, so what is queued now is all there is: take
            # it before the core finalises (the writer's last rows).
            for edge, sock in self._pull.items():
                while self._drain(edge, sock):
                    pass
            self._emit(self.core.on_stop(self.settings.clock()))
            self._send_stats()
            # What went through this process, for whoever checks that a stop lost nothing.
            log.info("orderly stop; sent %s; received %s", _tally(self._sent),
                     _tally(self._received))  # fmt: skip
        finally:
            self.close()
        return 0

    def close(self) -> None:
        """Close every socket (linger 0: queued messages are discarded)."""
        for sock in (*self._pull.values(), *self._push.values()):
            sock.close(0)
        self._pull.clear()
        self._push.clear()
        if self._wakeup_set:
            signal.set_wakeup_fd(-1)  # the descriptor is closed next; its number is reused
            self._wakeup_set = False
        self._wake_r.close()
        self._wake_w.close()


def _write_error(path: str, text: str) -> None:
    """Leave the message for ``up`` (private file; never through a link)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return  # the message is on stderr anyway
    try:
        os.write(fd, text.encode(errors="backslashreplace"))
    finally:
        os.close(fd)


def _tally(counts: dict[str, int]) -> str:
    return " ".join(f"{edge}={n}" for edge, n in sorted(counts.items())) or "nothing"


def _ipc_path(address: str) -> str | None:
    return address[len("ipc://") :] if address.startswith("ipc://") else None


def _remove_stale_ipc(address: str) -> None:
    """Remove a leftover socket file of ours; refuse anything we do not own.

    A crashed consumer leaves its socket file behind; binding again needs it gone. A
    path owned by another user, or that is not a socket, is refused (never hijacked).
    """
    path = _ipc_path(address)
    if path is None:
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"refusing to replace {path}: not a socket owned by us")
    os.unlink(path)


def _restrict_ipc(address: str) -> None:
    path = _ipc_path(address)
    if path is not None:
        os.chmod(path, 0o600)


def run_actor(build: Callable[[Config], Core], argv: list[str] | None = None) -> int:
    """Entry point shared by the actor processes: ``rp-<actor> --config FILE``.

    Run by hand, an actor reads a TOML file (``--config``; the environment is not
    read). Under ``up`` it reads the values ``up`` resolved (``--effective-config``,
    JSON written by :func:`~resctrl_pipeline.config.dump_handoff`), so a value the
    supervisor took from a flag is not overridden by a stale variable.

    Returns:
        The process exit code: 0 after an orderly stop, 2 on a bad configuration.
    """
    import argparse

    parser = argparse.ArgumentParser(description="resctrl-pipeline actor process")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="configuration file (TOML)")
    source.add_argument("--effective-config", help="the values `up` resolved (JSON)")
    parser.add_argument("--error-file", help="where to write a configuration error's message")
    args = parser.parse_args(argv)
    supervisor = tether.supervisor_pid()
    try:
        if args.effective_config is not None:
            cfg = resolve(load_handoff(args.effective_config))
        else:
            cfg = resolve(load(args.config, environ={}))
        logging.basicConfig(
            level=cfg.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        )
        core = build(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        if args.error_file:
            _write_error(args.error_file, str(err))
        return 2
    settings = ActorSettings(
        runtime_dir=cfg.runtime_dir,
        channel_capacity=cfg.channel_capacity,
        snapshot_interval=cfg.retry_interval,
        quiet_stats_interval=quiet_heartbeat_interval(cfg.liveness_timeout),
        max_consecutive_hook_errors=cfg.max_consecutive_hook_errors,
        supervisor_pid=supervisor,
        control_fd=sys.stdin.fileno() if supervisor is not None else None,
    )
    return Actor(core, settings).run()
