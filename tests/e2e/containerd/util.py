"""Small helpers: waiting on a condition with a deadline, socket probes."""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["is_socket", "poll_until", "unix_socket_accepts"]


def poll_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Re-check ``predicate`` until it is true (return True) or ``timeout`` seconds
    pass (return False). The short waits between checks only yield the CPU: they never
    stand in for synchronisation."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def is_socket(path: Path) -> bool:
    """Whether ``path`` exists and is a unix socket (it may be stale)."""
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def unix_socket_accepts(path: Path) -> bool:
    """Whether something accepts connections on the unix socket ``path``.

    Never use this on the NRI socket: a connection that does not register holds up
    the runtime's (sequential) plugin accept loop for its registration timeout.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(1.0)
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True
