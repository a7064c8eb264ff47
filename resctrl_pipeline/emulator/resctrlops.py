"""FUSE operations over a :class:`~.resctrltree.ResctrlTree` (mfusepy, ``raw_fi``).

A thin adapter: every operation resolves its path in the tree and lets the tree raise
the kernel's errno. Open files keep their resolved node, so reads of a removed group
fail with ``ENODEV`` as on kernfs, and each read at offset 0 renders the file afresh.
Errnos a test injected (:meth:`.ResctrlTree.fail_next`) are raised here, before the
tree serves the request.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
import time
from typing import Any

import mfusepy

from resctrl_pipeline.emulator.resctrlnodes import Node, NodeKind
from resctrl_pipeline.emulator.resctrltree import ResctrlTree

__all__ = ["ResctrlOperations"]


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class _Handle:
    """An open file: its node, and the content of its last read at offset 0."""

    __slots__ = ("data", "node")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.data: bytes | None = None


class ResctrlOperations:
    """mfusepy operations over a :class:`ResctrlTree`.

    mfusepy registers *every* attribute whose name is a FUSE operation (``open``,
    ``lock``, ``flush``, ``init``…), so the only public names here are the operations
    meant to be served; helpers and state use private names that match none.

    Args:
        tree: the tree to serve.
        mounted: set when the kernel has connected (the mount is usable).
    """

    use_ns = True  # times in getattr are integer nanoseconds

    def __init__(self, tree: ResctrlTree, mounted: threading.Event) -> None:
        self._tree = tree
        self._mounted = mounted
        self._handles: dict[int, _Handle] = {}
        self._next_fh = itertools.count(1)
        self._mount_ns = time.time_ns()
        self._uid, self._gid = os.getuid(), os.getgid()

    def init_with_config(self, conn_info: Any, config: Any) -> None:
        """FUSE ``init``: the kernel connected, requests may now arrive."""
        self._mounted.set()

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """FUSE ``getattr``: kernfs-like modes, size 0."""
        node = self._tree.resolve(path)
        if node.is_dir:
            mode, links = stat.S_IFDIR | 0o755, 2
        else:
            mode, links = stat.S_IFREG | (0o644 if node.writable else 0o444), 1
        when = node.created_ns or self._mount_ns
        return {
            "st_mode": mode,
            "st_nlink": links,
            "st_size": 0,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_atime": when,
            "st_mtime": when,
            "st_ctime": when,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        """FUSE ``readdir``."""
        self._tree.take_fault("readdir")
        return [".", "..", *self._tree.entries(self._tree.resolve(path))]

    def open(self, path: str, fi: Any) -> int:
        """FUSE ``open``: ``EACCES`` for writing a read-only file, even for root."""
        node = self._tree.resolve(path)
        if node.is_dir:
            raise _error(errno.EISDIR)
        if fi.flags & os.O_ACCMODE != os.O_RDONLY and not node.writable:
            raise _error(errno.EACCES)
        # Every read must reach us: the size is 0 and the value changes each time.
        fi.direct_io = 1
        fi.keep_cache = 0
        fh = next(self._next_fh)
        self._handles[fh] = _Handle(node)
        fi.fh = fh
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        """FUSE ``read``: offset 0 renders the file afresh (so ``pread(fd, n, 0)``
        sees the current value); later offsets continue that rendering."""
        handle = self._handles[fi.fh]
        if offset == 0 or handle.data is None:
            if handle.node.kind is NodeKind.TASKS:
                self._tree.take_fault("read_tasks")
            elif handle.node.kind is NodeKind.COUNTER:
                self._tree.take_fault("read_counter")
            handle.data = self._tree.content(handle.node)
        return handle.data[offset : offset + size]

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        """FUSE ``write``: each ``write()`` call is one kernel command."""
        handle = self._handles[fi.fh]
        if handle.node.kind is NodeKind.TASKS:
            self._tree.take_fault("write_tasks")
        self._tree.write(handle.node, data, writer_tid=mfusepy.fuse_get_context()[2])
        return len(data)

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        """FUSE ``truncate`` (``O_TRUNC`` from shells' ``>``): ignored, as on kernfs."""
        if not self._tree.resolve(path).writable:
            raise _error(errno.EACCES)
        return 0

    def release(self, path: str, fi: Any) -> int:
        """FUSE ``release``: forget the handle."""
        self._handles.pop(fi.fh, None)
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        """FUSE ``create``: files cannot be created (kernfs has no ``create``)."""
        raise _error(errno.EACCES)

    def unlink(self, path: str) -> int:
        """FUSE ``unlink``: files cannot be removed (kernfs has no ``unlink``)."""
        self._tree.resolve(path)
        raise _error(errno.EPERM)

    def mkdir(self, path: str, mode: int) -> int:
        """FUSE ``mkdir``: create a monitoring group."""
        self._tree.take_fault("mkdir")
        self._tree.mkdir(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        """FUSE ``rename``: move a MON group to another CTRL_MON group."""
        self._tree.rename(old, new)
        return 0

    def rmdir(self, path: str) -> int:
        """FUSE ``rmdir``: remove a monitoring group."""
        self._tree.take_fault("rmdir")
        self._tree.rmdir(path)
        return 0
