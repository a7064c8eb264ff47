"""An emulated cgroup tree: plain directories whose thread lists mirror real processes.

For machines where real cgroups cannot be created, and for ``demo``: a directory that
plays the cgroup mount root (``cgroup.root``) with the files the pipeline reads, kept
in step with ``/proc`` by :meth:`EmulatedCgroups.refresh` (or a background refresher).

Layouts, as :func:`resctrl_pipeline.cgroups.detect_layout` recognises them:

* v2: ``<root>/cgroup.controllers``; each cgroup has ``cgroup.procs`` and
  ``cgroup.threads``;
* v1: one hierarchy per controller, ``<root>/<controller>/tasks``; each cgroup has
  ``cgroup.procs`` and ``tasks``, in every hierarchy.

A cgroup's members are the processes attached to it plus all their descendants (as
on the kernel, where children inherit their parent's cgroup), except descendants
attached elsewhere. Parent cgroups list nothing: only leaves hold processes here.
Paths are relative to the layout's base, e.g. ``kubepods/besteffort/pod<uid>/<id>``
or ``kubepods.slice/kubepods-besteffort.slice/…/cri-containerd-<id>.scope``;
:func:`resctrl_pipeline.cgroups.container_relpath` turns NRI's ``cgroups_path`` into one.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Literal

from resctrl_pipeline.emulator.threads import child_pids, thread_ids

__all__ = ["EmulatedCgroups"]


class EmulatedCgroups:
    """A cgroup tree of plain files under ``root``.

    Thread-safe: every method takes the same lock, the refresher included.

    Args:
        root: the directory that plays the cgroup mount root (created when missing).
        version: 2 for the unified layout, 1 for per-controller hierarchies.
        hierarchies: v1 controller hierarchies to create (ignored for v2).
        proc: the proc filesystem the thread lists are read from.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        version: Literal[1, 2] = 2,
        hierarchies: tuple[str, ...] = ("pids", "cpu,cpuacct"),
        proc: str = "/proc",
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.version = version
        self._proc = proc
        self._mutex = threading.Lock()
        self._attached: dict[str, set[int]] = {}  # relpath → attached pids
        self._refresher: threading.Thread | None = None
        self._stopping = threading.Event()
        if version == 2:
            self._bases = [self.root]
            self._files = ("cgroup.procs", "cgroup.threads")
        else:
            self._bases = [os.path.join(self.root, h) for h in hierarchies]
            self._files = ("cgroup.procs", "tasks")
        for base in self._bases:
            self._make_dir(base)
        if version == 2:
            self._write(self.root, "cgroup.controllers", "cpu memory pids\n")

    def directories(self, relpath: str) -> list[str]:
        """The directories of a cgroup: one per v1 hierarchy, one on v2."""
        return [os.path.join(base, relpath.strip("/")) for base in self._bases]

    def create(self, relpath: str) -> None:
        """Create a cgroup and its missing ancestors, each with empty lists."""
        with self._mutex:
            self._create(relpath.strip("/"))

    def attach(self, relpath: str, pids: Iterable[int]) -> None:
        """Put processes (and their descendants) into a cgroup, creating it if needed.

        A process is in one cgroup at a time: attaching it elsewhere moves it.
        """
        rel = relpath.strip("/")
        with self._mutex:
            self._create(rel)
            for pid in pids:
                for members in self._attached.values():
                    members.discard(pid)
                self._attached.setdefault(rel, set()).add(pid)
            self._refresh()

    def remove(self, relpath: str) -> None:
        """Delete a cgroup and everything below it (its processes are forgotten)."""
        rel = relpath.strip("/")
        with self._mutex:
            for key in [k for k in self._attached if k == rel or k.startswith(rel + "/")]:
                del self._attached[key]
            for directory in self.directories(rel):
                shutil.rmtree(directory, ignore_errors=True)

    def refresh(self) -> None:
        """Rewrite every attached cgroup's lists from ``/proc``; exited processes are
        dropped. Files change by atomic rename, so a reader never sees half a list."""
        with self._mutex:
            self._refresh()

    def start(self, interval: float = 0.5) -> None:
        """Refresh every ``interval`` seconds from a daemon thread until :meth:`stop`."""
        if self._refresher is not None:
            raise RuntimeError("refresher already running")
        self._stopping.clear()
        self._refresher = threading.Thread(
            target=self._refresh_loop, args=(interval,), name="cgroupfs-refresh", daemon=True
        )
        self._refresher.start()

    def stop(self) -> None:
        """Stop the background refresher (no-op when not running)."""
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            self._stopping.set()
            refresher.join()

    def __enter__(self) -> EmulatedCgroups:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _refresh_loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            self.refresh()

    def _create(self, rel: str) -> None:
        parts = [p for p in rel.split("/") if p]
        if ".." in parts:
            raise ValueError(f"cgroup path must stay below the root: {rel!r}")
        for base in self._bases:
            for depth in range(1, len(parts) + 1):
                self._make_dir(os.path.join(base, *parts[:depth]))

    def _make_dir(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        for name in self._files:
            if not os.path.exists(os.path.join(directory, name)):
                self._write(directory, name, "")

    def _refresh(self) -> None:
        claimed = {pid for members in self._attached.values() for pid in members}
        for rel, attached in self._attached.items():
            attached -= {pid for pid in attached if not thread_ids(pid, self._proc)}
            procs = self._descendants(attached, claimed)
            tids = sorted(t for pid in procs for t in thread_ids(pid, self._proc))
            lists = ("".join(f"{p}\n" for p in sorted(procs)), "".join(f"{t}\n" for t in tids))
            for directory in self.directories(rel):
                if os.path.isdir(directory):
                    for name, text in zip(self._files, lists, strict=True):
                        self._write(directory, name, text)

    def _descendants(self, attached: set[int], claimed: set[int]) -> set[int]:
        """``attached`` plus every descendant that is not attached elsewhere."""
        found = set(attached)
        work = list(attached)
        while work:
            pid = work.pop()
            for tid in thread_ids(pid, self._proc):
                for child in child_pids(tid, self._proc):
                    if child not in found and child not in claimed:
                        found.add(child)
                        work.append(child)
        return found

    @staticmethod
    def _write(directory: str, name: str, text: str) -> None:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="ascii") as f:
                if f.read() == text:
                    return
        except FileNotFoundError:
            pass
        tmp = os.path.join(directory, f".{name}.tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)
        os.replace(tmp, path)
