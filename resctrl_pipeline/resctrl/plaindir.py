"""The resctrl seam on an ordinary directory, for benchmarks and fixture trees."""

from __future__ import annotations

import errno
import os
import shutil

from resctrl_pipeline.resctrl.ops import OsResctrlOps

__all__ = ["PlainDirResctrlOps"]


class PlainDirResctrlOps(OsResctrlOps):
    """:class:`OsResctrlOps` on an ordinary directory (benchmarks, fixture trees).

    Emulates what a plain directory cannot: mkdir creates ``tasks``, rmdir works on a
    populated group, a written id is appended as a line instead of overwriting, and a
    write through the descriptor of a removed group fails with ENODEV as on kernfs.
    """

    _TASKS_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_APPEND

    def mkdir(self, name: str) -> None:
        super().mkdir(name)
        with open(os.path.join(self._dir(name), "tasks"), "x", encoding="ascii"):
            pass

    def rmdir(self, name: str) -> None:
        self._forget_tasks_fd(name)
        shutil.rmtree(self._dir(name))

    @staticmethod
    def _tid_bytes(tid: int) -> bytes:
        return f"{tid}\n".encode()

    def _open_tasks(self, name: str) -> int:
        fd = super()._open_tasks(name)
        if os.fstat(fd).st_nlink == 0:  # removed behind our back: what kernfs says
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), name)
        return fd
