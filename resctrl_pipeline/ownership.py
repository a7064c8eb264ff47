"""Exclusive ownership of a directory by one running ``up``, through ``flock(2)``.

Two pipelines on one runtime directory would take over each other's sockets and
``pids.json``; two on one output directory would have the second writer's recovery
finalise the first writer's file in progress. ``up`` therefore holds an exclusive
``flock`` on each directory itself for as long as it runs (no lock file: nothing
is added to the output), and a second instance refuses at once, naming the directory
and the holder's pid (from ``/proc/locks``). The kernel drops the lock when the holder
exits, however it exits, so a crash leaves nothing to clean up; the descriptor is
close-on-exec, so the actors do not hold it.
"""

from __future__ import annotations

import errno
import fcntl
import os

from resctrl_pipeline.errors import PipelineError

__all__ = ["DirectoryLock", "OwnershipError", "holder"]


class OwnershipError(PipelineError):
    """Another running instance holds the directory, or it cannot be locked."""


class DirectoryLock:
    """An exclusive lock on ``directory`` (created if missing) held until :meth:`release`.

    Args:
        directory: the directory to own.
        what: how to name it in messages (``runtime dir``, ``output dir``).

    Raises:
        OwnershipError: another process holds it (the message names the directory and
            the holder's pid), or the directory cannot be used.
    """

    def __init__(self, directory: str, what: str) -> None:
        self.directory = directory
        try:
            os.makedirs(directory, exist_ok=True)
            self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except (FileExistsError, NotADirectoryError) as err:
            raise OwnershipError(f"{what} {directory} is not a directory") from err
        except OSError as err:
            raise OwnershipError(f"cannot use {what} {directory}: {err.strerror}") from err
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            st = os.fstat(self._fd)
            os.close(self._fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OwnershipError(f"{what} {directory} is in use by another resctrl-pipeline "
                                     f"(pid {holder(st)}); stop it or choose another "
                                     "directory") from err  # fmt: skip
            raise OwnershipError(f"cannot lock {what} {directory}: {err.strerror}") from err

    def release(self) -> None:
        """Give the directory up (safe to call twice)."""
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = -1


def holder(st: os.stat_result, locks_file: str = "/proc/locks") -> str:
    """The pid holding a ``flock`` on the file of ``st``, from ``/proc/locks``, or ``unknown``.

    A line reads ``1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF``: the pid, then the
    device as hexadecimal major:minor and the inode.
    """
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open(locks_file, encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "FLOCK" in fields and dev in fields:
                    at = fields.index(dev)
                    if fields[at - 1].isdigit():
                        return fields[at - 1]
    except OSError:
        pass
    return "unknown"
