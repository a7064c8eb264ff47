"""Whole reads of small kernel pseudo-files (cgroupfs, resctrl) with bare system calls.

Hand-written rather than ``open()``: the reconciler reads two such files per container
on every re-check pass (a cgroup's thread list, a group's ``tasks``), and Python's
buffered file objects cost about 12 µs per open on top of the system calls (the pass
at 500 containers spent a quarter of its time there). Reading until end of file
matters on kernfs: a seq_file hands out a large list in page-sized pieces.
"""

from __future__ import annotations

import os

__all__ = ["read_all"]

_CHUNK = 65536


def read_all(path: str) -> bytes:
    """The whole content of ``path``.

    Raises:
        OSError: as ``open``/``read`` raise it (the caller classifies the errno).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
