"""The NRI plugin connection as an object for a single-threaded, non-blocking poll loop.

:class:`NriPlugin` owns the socket to the runtime and everything time-related around
it: connecting, registering, answering, noticing EOF, and reconnecting with capped
exponential backoff. It never sleeps and never blocks on a read. The actor shell:

* calls :meth:`NriPlugin.on_timer` when :meth:`NriPlugin.next_deadline` has passed
  (the first call connects),
* polls :meth:`NriPlugin.fileno` for readability and then calls
  :meth:`NriPlugin.on_readable` — the descriptor changes with every reconnect and is
  -1 while disconnected, so re-read it after every call,
* sends the messages both calls return (non-blocking; drops are the shell's business).

Writes: answers are a few dozen bytes, so they are written at once; if the socket
buffer is full the write waits at most ``write_timeout`` (default 0.2 s, far below the
runtime's 2 s deadline) and then the connection is dropped as stuck. This is the one
bounded blocking point, chosen so that no answer is ever queued behind a poll cycle.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.messages import Message
from resctrl_pipeline.nri.events import Event, event_mask
from resctrl_pipeline.nri.mux import FrameTooLarge
from resctrl_pipeline.nri.service import PluginService
from resctrl_pipeline.nri.session import PluginSession, SessionFailed

__all__ = ["DEFAULT_SOCKET", "Backoff", "NriPlugin", "OutputSource", "PluginConfig"]

_log = logging.getLogger(__name__)

DEFAULT_SOCKET: Final = "/var/run/nri/nri.sock"
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_INDEX = re.compile(r"[0-9]{2}")
_READ_SIZE = 256 * 1024
_READS_PER_CALL = 32  # 8 MiB per on_readable, then the poll loop gets a turn


class OutputSource(Protocol):
    """A handler object whose calls produce pipeline messages."""

    def drain(self) -> list[Message]: ...


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """How to reach the runtime and how to behave towards it.

    Attributes:
        socket_path: the runtime's NRI socket.
        name, index: plugin identity; the runtime orders plugins by index.
        events: narrow the subscription to these events (None: every handled event).
        backoff_initial, backoff_max: reconnect delays in seconds; the delay doubles
            after every failed attempt and resets once a connection is synchronized.
        setup_timeout: seconds from connect to the end of Synchronize before the
            connection is given up (a runtime that accepts but never answers).
        write_timeout: longest wait for socket buffer space when answering.
    """

    socket_path: str = DEFAULT_SOCKET
    name: str = "resctrl-pipeline"
    index: str = "10"
    events: tuple[Event, ...] | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    setup_timeout: float = 10.0
    write_timeout: float = 0.2

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError("nri.plugin_name", self.name, "must match [A-Za-z0-9_.+-]+")
        if not _INDEX.fullmatch(self.index):
            raise ConfigError("nri.plugin_index", self.index, "must be two digits, 00-99")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ConfigError(
                "nri.backoff", (self.backoff_initial, self.backoff_max), "need 0 < initial <= max"
            )


class Backoff:
    """Capped exponential delays: initial, 2x, 4x, … up to ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self.current = initial

    def next_delay(self) -> float:
        """Return the delay to wait now and double the next one (capped)."""
        delay = self.current
        self.current = min(self.current * 2, self._maximum)
        return delay

    def reset(self) -> None:
        """Start again from the initial delay (after a healthy connection)."""
        self.current = self._initial


def connect_unix(path: str) -> socket.socket:
    """Connect a non-blocking unix stream socket to ``path``.

    Raises:
        OSError: no listener (ENOENT, ECONNREFUSED), or its backlog is full (EAGAIN).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class NriPlugin:
    """One plugin registration with the runtime, kept alive across runtime restarts.

    Args:
        handler: the event handlers (e.g. :class:`~.listener.NriListener`); its
            methods decide the subscription and its :meth:`~OutputSource.drain`
            yields the messages the calls produced.
        config: identity, socket path and timing.
        connect: opens a connected non-blocking socket for a path; injectable so
            tests can hand in socketpairs or failing dialers.
        clock: monotonic seconds, used for answer latencies only.

    Raises:
        UnhandledEvents: ``config.events`` names events the handler cannot take.
    """

    def __init__(
        self,
        handler: OutputSource,
        config: PluginConfig | None = None,
        *,
        connect: Callable[[str], socket.socket] = connect_unix,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handler = handler
        self.config = config or PluginConfig()
        self._mask = event_mask(handler, self.config.events)
        self._connect = connect
        self._clock = clock
        self._backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        self._sock: socket.socket | None = None
        self._session: PluginSession | None = None
        self._pending = bytearray()
        self._reconnect_at = float("-inf")
        self._setup_deadline = float("inf")
        self._failing = False
        self.counters: Counter[str] = Counter()
        self._latencies: deque[tuple[str, float]] = deque(maxlen=65536)

    # --- what the shell polls -------------------------------------------------------

    def fileno(self) -> int:
        """The socket's descriptor, or -1 while disconnected."""
        return self._sock.fileno() if self._sock is not None else -1

    @property
    def connected(self) -> bool:
        """Registered and synchronized with a runtime (``nri_connected``)."""
        return self._session is not None and self._session.synchronized

    @property
    def mask(self) -> int:
        """The subscription mask sent to the runtime."""
        return self._mask

    def next_deadline(self) -> float:
        """Monotonic time at which :meth:`on_timer` has work; ``inf`` when none."""
        if self._sock is None:
            return self._reconnect_at
        if not self.connected:
            return self._setup_deadline
        return float("inf")

    def on_timer(self, now: float) -> list[Message]:
        """Connect when the backoff has elapsed; give up a connection stuck in setup."""
        if self._sock is None:
            if now >= self._reconnect_at:
                self._open(now)
        elif not self.connected and now >= self._setup_deadline:
            self._drop(now, "setup_timeout")
        return self._handler.drain()

    def on_readable(self, now: float) -> list[Message]:
        """Read what is there (never waiting for more), answer it, return the output."""
        for _ in range(_READS_PER_CALL):
            sock, session = self._sock, self._session
            if sock is None or session is None:
                break
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self._drop(now, "read_error", err)
                break
            if not data:
                self._drop(now, "eof")
                break
            self.counters["bytes_received"] += len(data)
            self._process(now, session, data)
        return self._handler.drain()

    def close(self) -> None:
        """Close the connection for good (no reconnect is scheduled)."""
        self._retire()
        self._reconnect_at = float("inf")

    # --- what the shell reports ------------------------------------------------------

    def gauges(self) -> dict[str, float]:
        """Current values: ``nri_connected``, ``nri_backoff_seconds``, buffered bytes."""
        return {
            "nri_connected": 1.0 if self.connected else 0.0,
            "nri_backoff_seconds": self._backoff.current,
            "nri_buffered_bytes": float(self._session.buffered if self._session else 0),
        }

    def all_counters(self) -> dict[str, float]:
        """Cumulative counters over every connection so far, names prefixed ``nri_``.

        ``requests.<Method>``, ``errors.<CODE>``, ``event.<EVENT>``, ``disconnects.<why>``,
        ``connect_attempts``, ``connect_failures``, ``registrations``, bytes in and out…
        """
        total = Counter(self.counters)
        if self._session is not None:
            total.update(self._session.counters)
            total.update(self._session.service.counters)
        return {f"nri_{name}": float(value) for name, value in total.items()}

    def take_latencies(self) -> list[tuple[str, float]]:
        """Return and forget ``(method, seconds)`` answer latencies (read → written)."""
        out = list(self._latencies)
        self._latencies.clear()
        return out

    # --- internals -------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self.counters["connect_attempts"] += 1
        try:
            sock = self._connect(self.config.socket_path)
        except OSError as err:
            self.counters["connect_failures"] += 1
            self._schedule_reconnect(now, f"cannot connect to {self.config.socket_path}: {err}")
            return
        self._sock = sock
        self._session = PluginSession(
            PluginService(self._handler, self._mask), self.config.name, self.config.index
        )
        self._setup_deadline = now + self.config.setup_timeout
        self._session.start()
        self._flush(now, self._session)

    def _process(self, now: float, session: PluginSession, data: bytes) -> None:
        received_at = self._clock()
        was_synchronized = session.synchronized
        try:
            session.receive(data)
        except (FrameTooLarge, SessionFailed) as err:
            # Answers to the requests before the bad bytes still go out: the runtime
            # is waiting for them whatever happens to this connection next.
            self._flush(now, session)
            if self._session is session:
                reason = err.reason if isinstance(err, SessionFailed) else "frame_too_large"
                self._drop(now, reason, err)
            return
        self._flush(now, session)
        answered_at = self._clock()
        for method in session.take_answered():
            self._latencies.append((method, answered_at - received_at))
        if session.synchronized and not was_synchronized and self._session is session:
            self.counters["registrations"] += 1
            self._backoff.reset()
            self._failing = False
            _log.info(
                "registered with the NRI runtime as %s-%s", self.config.index, self.config.name
            )

    def _flush(self, now: float, session: PluginSession) -> None:
        self._pending += session.take_output()
        deadline = float("inf")
        while self._pending and self._sock is not None:
            try:
                sent = self._sock.send(self._pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as err:
                self._drop(now, "write_error", err)
                return
            self.counters["bytes_sent"] += sent
            del self._pending[:sent]
            if not self._pending:
                return
            deadline = min(deadline, self._clock() + self.config.write_timeout)
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._drop(now, "write_timeout")
                return
            poller = select.poll()
            poller.register(self._sock, select.POLLOUT)
            poller.poll(remaining * 1000)

    def _drop(self, now: float, reason: str, err: BaseException | None = None) -> None:
        was_connected = self.connected
        self.counters[f"disconnects.{reason}"] += 1
        self._retire()
        detail = f"{reason}: {err}" if err is not None else reason
        if was_connected:
            # A healthy connection ending (e.g. containerd restarting) is worth a
            # warning; the retries that follow log at debug (nri_connected tells).
            self._failing = False
            self._schedule_reconnect(now, f"NRI connection lost ({detail})")
        else:
            self._schedule_reconnect(now, f"NRI connection failed ({detail})")

    def _retire(self) -> None:
        if self._session is not None:
            # Keep the session's counts: the exported counters must never go back.
            self.counters.update(self._session.counters)
            self.counters.update(self._session.service.counters)
        if self._sock is not None:
            self._sock.close()
        self._sock, self._session = None, None
        self._pending.clear()
        self._setup_deadline = float("inf")

    def _schedule_reconnect(self, now: float, why: str) -> None:
        delay = self._backoff.next_delay()
        self._reconnect_at = now + delay
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        _log.log(level, "%s; retrying in %.1f s", why, delay)
