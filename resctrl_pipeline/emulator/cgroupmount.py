"""A read-only FUSE view of a cgroup tree whose thread-list reads can be made to fail.

:class:`~.cgroupfs.EmulatedCgroups` keeps its tree in plain files, and a plain file
cannot answer a read with ENODEV the way kernfs does for a cgroup removed between
``open`` and ``read``. :class:`CgroupMount` serves that tree (any directory) through
FUSE, unchanged and read-only, and raises injected errnos on reads of the files a
test names (``cgroup.threads``, ``tasks``). The pipeline is pointed at the mount as
its ``cgroup.root``; the emulation keeps writing to the directory underneath.

The mount machinery (thread, signals, unmount) is :class:`.resctrlfs.EmulatedResctrl`'s;
only the operations differ.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl
from resctrl_pipeline.emulator.resctrltree import ResctrlTree

__all__ = ["CgroupMount"]


class _Faults:
    """Injected errnos per file name, consumed by reads at offset 0 (thread-safe)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._pending: dict[str, list[int]] = {}

    def add(self, name: str, code: int, times: int) -> None:
        with self._mutex:
            self._pending.setdefault(name, []).extend([code] * times)

    def take(self, relpath: str) -> None:
        """Raise the next errno injected for ``relpath`` itself, else for its name."""
        if not self._pending:
            return
        with self._mutex:
            for key in (relpath, os.path.basename(relpath)):
                codes = self._pending.get(key)
                if codes:
                    code = codes.pop(0)
                    if not codes:
                        del self._pending[key]
                    break
            else:
                return
        raise OSError(code, os.strerror(code))

    def pending(self) -> dict[str, list[int]]:
        with self._mutex:
            return {name: list(codes) for name, codes in self._pending.items()}


class _MirrorOperations:
    """mfusepy operations serving ``source`` read-only (public names = operations)."""

    use_ns = True

    def __init__(self, source: str, mounted: threading.Event, faults: _Faults) -> None:
        self._source = source
        self._mounted = mounted
        self._faults = faults

    def _real(self, path: str) -> str:
        # FUSE hands absolute, normalised paths below the mount: no ".." to escape by.
        return os.path.join(self._source, path.lstrip("/"))

    def init_with_config(self, conn_info: Any, config: Any) -> None:
        """FUSE ``init``: the mount is usable."""
        self._mounted.set()

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """FUSE ``getattr``: the source's, with link counts as they are."""
        st = os.lstat(self._real(path))
        return {
            "st_mode": st.st_mode, "st_nlink": st.st_nlink, "st_size": st.st_size,
            "st_uid": st.st_uid, "st_gid": st.st_gid, "st_atime": st.st_atime_ns,
            "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns,
        }  # fmt: skip

    def readdir(self, path: str, fh: int) -> list[str]:
        """FUSE ``readdir``."""
        return [".", "..", *os.listdir(self._real(path))]

    def open(self, path: str, fi: Any) -> int:
        """FUSE ``open``: read-only (``EROFS`` for writing)."""
        if fi.flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        fi.direct_io = 1  # every read reaches us (injected faults, fresh contents)
        fi.keep_cache = 0
        fi.fh = os.open(self._real(path), os.O_RDONLY | os.O_CLOEXEC)
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        """FUSE ``read``: an injected errno for this file name first, if any."""
        if offset == 0:
            self._faults.take(path.lstrip("/"))
        return os.pread(fi.fh, size, offset)

    def release(self, path: str, fi: Any) -> int:
        """FUSE ``release``."""
        os.close(fi.fh)
        return 0


class CgroupMount(EmulatedResctrl):
    """``source`` served read-only at ``mountpoint``, with read faults on demand.

    Args:
        source: the directory to serve (e.g. ``EmulatedCgroups.root``).
        mountpoint: where to mount it (created when missing).
    """

    def __init__(self, source: str | os.PathLike[str], mountpoint: str | os.PathLike[str]):
        # The tree is unused here; the base class keeps one for its own API.
        self._setup(ResctrlTree(), mountpoint, allow_other=False)
        self.source = os.path.abspath(os.fspath(source))
        self._faults = _Faults()

    def _operations(self) -> object:
        return _MirrorOperations(self.source, self._mounted, self._faults)

    def fail_next(self, name: str, code: int, times: int = 1) -> None:
        """Make the next ``times`` reads (at offset 0) of files named ``name`` (a file
        name such as ``cgroup.threads``, or a path relative to the mount) fail with
        ``code``. A fault for the path is taken before one for the name.

        Raises:
            ValueError: ``code`` is not an errno, or ``times`` < 1.
        """
        if code not in errno.errorcode or times < 1:
            raise ValueError(f"cannot inject errno {code} {times} times")
        self._faults.add(name, code, times)

    def pending_faults(self) -> dict[str, list[int]]:
        """Injected errnos not raised yet, per file name."""
        return self._faults.pending()
