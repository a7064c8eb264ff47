"""``resctrl-pipeline up``: spawn the actors, watch them, restart them, serve HTTP.

The loop waits on the stats socket and a signal wake-up descriptor (SIGCHLD, SIGTERM,
SIGINT, SIGUSR1), so an idle pipeline costs the supervisor almost nothing:

* a heartbeat updates the :class:`PipelineView` behind the HTTP endpoints, and its
  arrival time (monotonic) is kept: an actor without one for
  ``supervisor.liveness_timeout`` (plus :data:`STARTUP_GRACE` before its first) is hung
  — stopped, or stuck in a hook or a kernel call — and is killed with SIGKILL, logged
  once, counted, and restarted through the restart policy once the old process is
  gone (one in an uninterruptible kernel wait outlives SIGKILL for a while: the log and
  ``/ready`` say so);
* an exited actor is restarted after the :class:`RestartPolicy` back-off, or, after
  too many restarts, everything stops and ``up`` exits 1; an actor that exits 2
  found a configuration error at its start (its message is in
  ``<runtime_dir>/<actor>.error``): restarting it would fail the same way forever,
  so everything stops at once and ``up`` exits 2 with that message;
* SIGUSR1 is forwarded to the writer (file rotation);
* SIGTERM/SIGINT stop the actors in data-flow order — listener first, writer last so
  it drains its input and finalises its file — and ``up`` exits 0. Groups are left in
  place; the next start adopts them. Each actor is asked to stop by closing its
  control pipe; the actors leave SIGINT/SIGTERM to ``up`` while it lives, so a signal
  to the whole process group (Ctrl-C, systemd) stops exactly like one to ``up``. A
  second SIGINT/SIGTERM during the stop means "stop now": every actor is asked at
  once, and what still runs after :data:`HURRY_GRACE` seconds is killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import stat
import time
from collections.abc import Callable

import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.config import Config, Sources, dump_handoff
from resctrl_pipeline.errors import DecodeError, PipelineError
from resctrl_pipeline.instance import process_start_ticks
from resctrl_pipeline.messages import ActorStats, PodSummary
from resctrl_pipeline.ownership import DirectoryLock, OwnershipError
from resctrl_pipeline.resctrl.cache import l3_sizes
from resctrl_pipeline.supervise.health import ActorView, PipelineView
from resctrl_pipeline.supervise.http import HttpEndpoints
from resctrl_pipeline.supervise.policy import RestartPolicy
from resctrl_pipeline.supervise.spawner import ActorProcess, available_actors
from resctrl_pipeline.topology import ACTORS, EDGES, endpoint, quiet_heartbeat_interval

__all__ = ["HttpAddressError", "RuntimeDirError", "Supervisor", "prepare_runtime_dir"]

log = logging.getLogger(__name__)

#: Stop order: producers before consumers, so every consumer can drain.
STOP_ORDER = ("nri-listener", "reconciler", "sampler", "writer")
#: Exit status of an actor (and of ``up``) for a configuration error.
CONFIG_ERROR_EXIT = 2
#: Seconds the actors get after a second stop signal before SIGKILL.
HURRY_GRACE = 2.0
#: Extra seconds an actor gets for its first heartbeat (Python imports, recovery).
STARTUP_GRACE = 10.0
#: Seconds after a liveness SIGKILL before a process still there is reported.
LINGER_NOTICE = 1.0
#: Longest poll without a deadline: a safety net only (an exit wakes the loop by
#: SIGCHLD, a heartbeat by its socket), so rare enough to cost nothing idle.
MAX_WAIT = 30.0


class HttpAddressError(PipelineError):
    """The HTTP address cannot be served (in use, or not an address of this host)."""


class RuntimeDirError(PipelineError):
    """The runtime directory cannot be used safely (wrong owner or not a directory)."""


def prepare_runtime_dir(path: str) -> None:
    """Create ``path`` with mode 0700, or tighten an existing directory of ours.

    A leftover socket of ours at an endpoint path is fine (its consumer replaces it);
    anything else there — another user's socket, a file, a link — is refused here, at
    start, never replaced (an actor meeting it later could only crash on it, again at
    every restart).

    Raises:
        RuntimeDirError: it exists and is not a directory, or belongs to another user,
            or an endpoint path in it is not a socket owned by us.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise RuntimeDirError(f"runtime dir {path} is not a directory") from err
    except OSError as err:
        raise RuntimeDirError(f"cannot create runtime dir {path}: {err.strerror}") from err
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"runtime dir {path} is not a directory")
    if st.st_uid != os.getuid():
        raise RuntimeDirError(f"runtime dir {path} belongs to uid {st.st_uid}, not to us")
    os.chmod(path, 0o700)
    for edge in EDGES:
        sock = endpoint(path, edge)[len("ipc://") :]
        try:
            est = os.lstat(sock)
        except FileNotFoundError:
            continue
        if not stat.S_ISSOCK(est.st_mode) or est.st_uid != os.getuid():
            raise RuntimeDirError(
                f"refusing to replace {sock}: not a socket owned by us (owner uid {est.st_uid})"
            )


def _write_private(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Supervisor:
    """Runs the pipeline until stopped. See the module docstring.

    Args:
        cfg: the validated configuration.
        sources: raw values (written to ``<runtime_dir>/config.json`` for the actors).
        actors: which actors to run (default: every actor whose module exists).
        policy: restart policy (tests pass short back-offs).
        stop_timeout: seconds each actor gets to stop before SIGKILL.
        on_ready_change: called with the HTTP port once serving (tests, ``demo``).
    """

    def __init__(
        self,
        cfg: Config,
        sources: Sources,
        actors: tuple[str, ...] | None = None,
        policy: RestartPolicy | None = None,
        stop_timeout: float = 20.0,
        on_serving: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.actor_names = actors if actors is not None else available_actors(ACTORS)
        self.policy = policy or RestartPolicy()
        self.stop_timeout = stop_timeout
        self.on_serving = on_serving
        self.view = PipelineView(
            actors={a: ActorView(a) for a in self.actor_names}, started_at=time.time(),
            node=cfg.node_name, pod_metrics=cfg.pod_metrics,
            l3_cache_bytes=l3_sizes(cfg.resctrl_root),
            heartbeat_interval=quiet_heartbeat_interval(cfg.liveness_timeout),
        )  # fmt: skip
        self.procs: dict[str, ActorProcess] = {}
        self._restart_at: dict[str, float] = {}
        self._stop = False
        self._stop_signal = 0
        self._hurry = False
        self._signals: list[int] = []
        self._lingering: set[str] = set()
        self.http_port = 0

    @property
    def config_path(self) -> str:
        """The effective configuration handed to the actors (JSON, see ``dump_handoff``)."""
        return os.path.join(self.cfg.runtime_dir, "config.json")

    def _write_pids(self) -> None:
        pids = {name: p.pid for name, p in self.procs.items() if p.running()}
        # Start times let `rotate` tell our processes from later holders of the same pid.
        started = {name: process_start_ticks(pid) for name, pid in
                   [("supervisor", os.getpid()), *pids.items()] if pid}  # fmt: skip
        doc = {"supervisor": os.getpid(), "http_addr": self.cfg.http_addr,
               "http_port": self.http_port, "actors": pids, "started": started}  # fmt: skip
        _write_private(os.path.join(self.cfg.runtime_dir, "pids.json"), json.dumps(doc).encode())

    def _start(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._error_path(name))  # a message left by an earlier process
        pid = proc.start()
        now = time.monotonic()
        self.policy.started(name, now)
        view = self.view.actors[name]
        view.pid, view.running, view.started_at = pid, True, time.time()
        view.started_mono, view.heartbeat_at, view.killed_at = now, None, None
        self._lingering.discard(name)
        log.info("started %s (pid %d)", name, pid)
        self._write_pids()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._hurry = self._stop
            self._stop = True
            self._stop_signal = self._stop_signal or signum
        elif signum == signal.SIGUSR1:
            self._signals.append(signum)

    def _reap(self) -> int | None:
        """Handle exited actors; returns ``up``'s exit code when it must stop (1: gave
        up on an actor, 2: an actor found a configuration error)."""
        now = time.monotonic()
        for name, proc in self.procs.items():
            view = self.view.actors[name]
            if not view.running:
                continue
            code = proc.poll()
            if code is None:
                continue
            view.running = False
            if view.killed_at is not None:
                log.info("%s (pid %s) killed for its silence is gone after %.1f s",
                         name, view.pid, now - view.killed_at)  # fmt: skip
                view.killed_at = None
            if code == CONFIG_ERROR_EXIT:
                log.error("%s found a configuration error at its start: %s; stopping",
                          name, self._config_error(name))  # fmt: skip
                return CONFIG_ERROR_EXIT
            decision = self.policy.exited(name, now)
            if decision.give_up:
                log.error("giving up: %s", decision.reason)
                return 1
            view.restarts += 1
            self._restart_at[name] = decision.restart_at
            log.warning("%s exited with %s; restarting in %.1fs", name, code,
                        decision.restart_at - now)  # fmt: skip
        for name, at in list(self._restart_at.items()):
            if now >= at and not self._stop:
                del self._restart_at[name]
                self._start(name)
        return None

    def _error_path(self, name: str) -> str:
        return os.path.join(self.cfg.runtime_dir, f"{name}.error")

    def _config_error(self, name: str) -> str:
        """What the actor wrote about its configuration error (bounded, one line)."""
        try:
            with open(self._error_path(name), "rb") as f:
                text = f.read(4096).decode(errors="replace")
        except OSError:
            return "(no message; see the actor's output above)"
        return " ".join(text.split()) or "(empty message)"

    def _next_wake(self, now: float) -> float:
        """The next time the loop must look without input: a restart, a liveness
        limit or a lingerer's notice. Heartbeats, exits (SIGCHLD) and signals wake it
        through the poller; without a deadline it looks every :data:`MAX_WAIT` s."""
        due = [now + MAX_WAIT, *self._restart_at.values()]
        for name, view in self.view.actors.items():
            at = self._liveness_due(name, view)
            if at is not None:
                due.append(at)
        return min(due)

    def _liveness_due(self, name: str, view: ActorView) -> float | None:
        """When :meth:`_check_liveness` has something to do for this actor: the end
        of its allowed silence, or the notice of a killed process that lingers; None
        for an actor not running or already reported lingering."""
        if not view.running or view.started_mono is None:
            return None
        if view.killed_at is not None:
            return None if name in self._lingering else view.killed_at + LINGER_NOTICE
        if view.heartbeat_at is None:
            return view.started_mono + self.cfg.liveness_timeout + STARTUP_GRACE
        return view.heartbeat_at + self.cfg.liveness_timeout

    def _check_liveness(self, now: float) -> None:
        """SIGKILL actors silent for ``supervisor.liveness_timeout``; report lingerers."""
        for name, view in self.view.actors.items():
            due = self._liveness_due(name, view)
            if due is None or now < due:
                continue
            if view.killed_at is not None:
                self._lingering.add(name)
                log.warning("%s (pid %s) is still there %.1f s after SIGKILL (an "
                            "uninterruptible kernel wait?); its replacement starts when "
                            "it is gone", name, view.pid, now - view.killed_at)  # fmt: skip
                continue
            if view.heartbeat_at is not None:
                what, silent = "no heartbeat", now - view.heartbeat_at
            else:
                assert view.started_mono is not None  # else nothing was due
                what, silent = "no first heartbeat", now - view.started_mono
            log.error("%s (pid %s) sent %s for %.1f s (supervisor.liveness_timeout %gs): "
                      "killing it (SIGKILL) for a restart", name, view.pid, what, silent,
                      self.cfg.liveness_timeout)  # fmt: skip
            view.killed_at = now
            view.liveness_kills += 1
            self.procs[name].signal(signal.SIGKILL)

    def _handle_stats(self, sock: zmq.Socket[bytes]) -> None:
        for _ in range(256):
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                env = codec.decode(data)
            except DecodeError as err:
                log.warning("skipping malformed stats message: %s", err)
                continue
            body = env.body
            if isinstance(body, PodSummary):
                if env.src == "sampler" and self.view.pod_metrics:
                    self.view.pods = body  # replaced whole: readers never see a half
                continue
            if isinstance(body, ActorStats) and body.actor in self.view.actors:
                view = self.view.actors[body.actor]
                if body.pid == view.pid:
                    view.stats = body
                    view.heartbeat_at = time.monotonic()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (0) or until giving up on an actor (1).

        Raises:
            RuntimeDirError, OwnershipError: the runtime or output directory cannot be
                used or is held by another instance.
            HttpAddressError: the HTTP address cannot be served.
        """
        prepare_runtime_dir(self.cfg.runtime_dir)
        locks = self._own_directories()
        try:
            return self._run_owned()
        finally:
            for lock in locks:
                lock.release()

    def _run_owned(self) -> int:
        _write_private(self.config_path, dump_handoff(self.sources))
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        stats = ctx.socket(zmq.PULL)
        stats.setsockopt(zmq.LINGER, 0)
        stats.setsockopt(zmq.RCVHWM, 1024)
        stats.setsockopt(zmq.MAXMSGSIZE, codec.MAX_MESSAGE_BYTES)
        address = endpoint(self.cfg.runtime_dir, "stats")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address[len("ipc://") :])
        stats.bind(address)
        os.chmod(address[len("ipc://") :], 0o600)
        try:
            http = HttpEndpoints(self.cfg.http_addr, lambda: self.view)
        except OSError as err:
            stats.close(0)
            raise HttpAddressError(f"cannot serve HTTP on {self.cfg.http_addr}: {err.strerror} "
                                   "(choose another with --http-addr)") from err  # fmt: skip
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
        }
        old_chld = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self.http_port = http.port
        http.start()
        log.info("serving /live /ready /metrics /status on %s (port %d)",
                 self.cfg.http_addr, self.http_port)  # fmt: skip
        if self.on_serving:
            self.on_serving(self.http_port)
        poller = zmq.Poller()
        poller.register(stats, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        code = 0
        try:
            for name in self.actor_names:
                self.procs[name] = ActorProcess(name, self.config_path,
                                                error_path=self._error_path(name))  # fmt: skip
                self._start(name)
            while not self._stop:
                wait = max(0.0, self._next_wake(time.monotonic()) - time.monotonic())
                # Rounded up: a wait cut to whole milliseconds wakes before the deadline.
                events = dict(poller.poll(math.ceil(wait * 1000)))
                if wake_r in events or wake_r.fileno() in events:
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(4096)
                if stats in events:
                    self._handle_stats(stats)
                while self._signals:
                    self._signals.pop(0)
                    if "writer" in self.procs and self.procs["writer"].signal(signal.SIGUSR1):
                        log.info("forwarded SIGUSR1 to the writer (rotate)")
                self._check_liveness(time.monotonic())
                stop_code = self._reap()
                if stop_code is not None:
                    code = stop_code
                    break
        finally:
            self.view.stopping = True
            self._shutdown()
            http.stop()
            stats.close(0)
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            signal.signal(signal.SIGCHLD, old_chld)
            wake_r.close()
            wake_w.close()
        return code

    def _stopped(self, name: str, code: int | None) -> None:
        self.view.actors[name].running = False
        log.info("stopped %s (exit code %s)", name, code)

    def _own_directories(self) -> list[DirectoryLock]:
        """Lock the runtime and the output directory (the spool with s3:// output).

        Raises:
            OwnershipError: another instance holds one of them.
        """
        out = self.cfg.spool_dir if self.cfg.output_dir.startswith("s3://") else self.cfg.output_dir
        locks = [DirectoryLock(self.cfg.runtime_dir, "runtime dir")]
        try:
            locks.append(DirectoryLock(out, "output dir"))
        except OwnershipError:
            locks[0].release()
            raise
        return locks

    def _shutdown(self) -> None:
        """Stop every actor in :data:`STOP_ORDER`, each after the one before it ended.

        A second stop signal meanwhile ("stop now") asks every remaining actor at once
        and kills what still runs after :data:`HURRY_GRACE` seconds.
        """
        order = [a for a in STOP_ORDER if a in self.procs]
        order += [a for a in self.procs if a not in order]
        if self._stop_signal:
            log.info("%s received: stopping the actors in data-flow order "
                     "(send it again to stop at once)",
                     signal.Signals(self._stop_signal).name)  # fmt: skip
        codes: dict[str, int | None] = {}
        for name in order:
            if self._hurry:
                break
            proc = self.procs[name]
            proc.close_control()
            codes[name] = proc.wait(self.stop_timeout, give_up=lambda: self._hurry)
            if codes[name] is None and not self._hurry:
                log.warning("%s did not stop within %gs; killing it", name, self.stop_timeout)
                codes[name] = proc.kill()
            if codes[name] is not None:
                self._stopped(name, codes[name])
        rest = [n for n in order if codes.get(n) is None]
        if self._hurry and rest:
            log.warning("second stop signal: stopping now; SIGKILL in %gs to what still "
                        "runs of: %s", HURRY_GRACE, ", ".join(rest))  # fmt: skip
            for name in rest:
                self.procs[name].close_control()
            deadline = time.monotonic() + HURRY_GRACE
            for name in rest:
                left = max(0.0, deadline - time.monotonic())
                code = self.procs[name].wait(left)
                self._stopped(name, code if code is not None else self.procs[name].kill())
        self._restart_at.clear()
