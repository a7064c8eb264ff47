"""An emulated resctrl filesystem mounted over FUSE (mfusepy + libfuse3).

:class:`EmulatedResctrl` mounts a :class:`~.resctrltree.ResctrlTree` and serves it
from a daemon thread of the calling process; other processes then use it with plain
``os`` calls, as they would ``/sys/fs/resctrl``. To serve it from a separate process
instead, run this module::

    python -m resctrl_pipeline.emulator.resctrlfs --mount DIR [--hardware abmc+classes]
        [--domains 0,3] [--snc 2] [--num-rmids 32] [--limbo-seconds 1] [--no-mbm]
        [--llc-mib 32] [--exit-with-parent]

It prints ``mounted DIR`` once the mount is usable and unmounts on SIGTERM, SIGINT or
SIGHUP (exit status 0).

Mount choices (docs: resctrl-emulation.md): foreground, multi-threaded; ``raw_fi``
with ``direct_io`` and no ``keep_cache`` on every open (files report size 0, and
values change between reads); attribute, entry and negative timeouts 0 (groups come
and go); ``auto_unmount`` (a killed server leaves no dead mount behind).

Caveats:

* :meth:`EmulatedResctrl.start` from the main thread gives SIGHUP, SIGINT and SIGTERM,
  if still at their default, a Python handler that ends the process as the default
  would: libfuse would otherwise take them over and only stop serving.
* No thread of this process may do ``os`` calls on the mount while holding the tree's
  lock (the tree never does).
* :meth:`EmulatedResctrl.stop` unmounts with ``fusermount3 -u``, lazily (``-z``) when
  files are still open; the server thread then ends once they are closed. It also
  ends libfuse's auto-unmount helper, which libfuse 3.14 leaves running otherwise.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from types import FrameType, TracebackType

import mfusepy

from resctrl_pipeline.emulator.hardware import Hardware, parse_hardware
from resctrl_pipeline.emulator.occupancy import CacheParams
from resctrl_pipeline.emulator.resctrlops import ResctrlOperations
from resctrl_pipeline.emulator.resctrltree import ResctrlTree
from resctrl_pipeline.emulator.topology import Topology

__all__ = ["EmulatedResctrl", "main"]

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


def _default_action(signum: int, frame: FrameType | None) -> None:
    """Do what the default disposition would: terminate by the same signal."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _keep_signals_from_libfuse() -> None:
    """Give SIGHUP/SIGINT/SIGTERM a Python handler before libfuse starts.

    libfuse installs its own handlers for those still at ``SIG_DFL``; they would turn
    the signal into "stop serving" for the whole process instead of ending it. The
    handler installed here ends the process as the default would. Only the main
    thread can install handlers; elsewhere libfuse may take them (warned).
    """
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_DFL:
            continue
        if threading.current_thread() is threading.main_thread():
            signal.signal(signum, _default_action)
        else:
            log.warning("%s is at SIG_DFL and libfuse will take it over", signum)


def _find_unmount_helper(mountpoint: str) -> int | None:
    """PID of the ``fusermount3 … auto_unmount … -- mountpoint`` child that libfuse
    leaves running to unmount if this process dies; None if there is none."""
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children", "rb") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            continue
        for pid in children:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            if os.path.basename(argv[0]) == b"fusermount3" and argv[-1] == os.fsencode(mountpoint):
                return pid
    return None


def _end_unmount_helper(pid: int) -> None:
    """End and reap the auto-unmount helper of a mount that is already gone.

    libfuse 3.14 never closes its end of the helper's socket, so the helper would wait
    until this process exits and then unmount whatever fuse.resctrl mount is at that
    path by then, possibly a later one. The helper blocks every signal but SIGKILL.
    """
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # already gone, or reaped elsewhere


def _unmount(path: str, lazy: bool) -> bool:
    """``fusermount3 -u [-z] path``; True on success."""
    cmd = ["fusermount3", "-u", *(["-z"] if lazy else []), path]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.debug("%s: %s", " ".join(cmd), done.stderr.strip())
    return done.returncode == 0


class EmulatedResctrl:
    """An emulated resctrl filesystem at ``mountpoint``, served from a daemon thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The tree is
    :attr:`tree`, for the test-side API (pin counters, RMID limit, limbo, groups).

    Args:
        mountpoint: directory to mount on (created when missing).
        hardware: the hardware profile (:mod:`.hardware`), as a spec such as
            ``"abmc+classes"`` or built; default ``classic``.
        domains: L3 cache ids (``mon_L3_XX``), not necessarily contiguous.
        snc: sub-NUMA nodes per L3 domain, 0 for none (the ``snc`` profile's
            count wins when it is set).
        num_rmids: RMIDs including the default group's.
        mbm: whether ``mbm_total_bytes`` and ``mbm_local_bytes`` exist.
        limbo_seconds: how long a released RMID stays unusable.
        llc_bytes: LLC size of one L3 domain.
        allow_other: let other users than the server's use the mount.
    """

    def __init__(
        self,
        mountpoint: str | os.PathLike[str],
        *,
        hardware: Hardware | str = "classic",
        domains: tuple[int, ...] = (0, 1),
        snc: int = 0,
        num_rmids: int = 64,
        mbm: bool = True,
        limbo_seconds: float = 1.0,
        llc_bytes: int = 32 * _MIB,
        allow_other: bool = False,
    ) -> None:
        hw = parse_hardware(hardware) if isinstance(hardware, str) else hardware
        if snc and not hw.snc:
            hw = replace(hw, snc=snc)  # the profile then says what the topology does
        snc = hw.snc
        packages = hw.packages if hw.aet else ()
        topology = Topology(domains=domains, snc=snc, mbm=mbm, packages=packages)
        cache = CacheParams(leaf_bytes=llc_bytes // max(snc, 1))
        tree = ResctrlTree(
            topology, hardware=hw, num_rmids=num_rmids, limbo_seconds=limbo_seconds, cache=cache
        )
        self._setup(tree, mountpoint, allow_other)

    @classmethod
    def serving(
        cls, tree: ResctrlTree, mountpoint: str | os.PathLike[str], allow_other: bool = False
    ) -> EmulatedResctrl:
        """A mount of an already built tree (e.g. with an injected clock)."""
        self = cls.__new__(cls)
        self._setup(tree, mountpoint, allow_other)
        return self

    def _setup(
        self, tree: ResctrlTree, mountpoint: str | os.PathLike[str], allow_other: bool
    ) -> None:
        self.tree = tree
        self.mountpoint = os.path.abspath(os.fspath(mountpoint))
        self._allow_other = allow_other
        self._mounted = threading.Event()
        self._thread: threading.Thread | None = None
        self._helper: int | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> EmulatedResctrl:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Mount and return once the mount is usable.

        Raises:
            RuntimeError: already started, or the server failed before mounting
                (no ``/dev/fuse``, no ``fusermount3``, mountpoint busy…).
            TimeoutError: not mounted within ``timeout`` seconds (then unmounted).
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.mountpoint}: already started")
        os.makedirs(self.mountpoint, exist_ok=True)
        _keep_signals_from_libfuse()
        self._mounted.clear()
        self._failure = None
        ops = self._operations()
        self._thread = threading.Thread(
            target=self._serve, args=(ops,), name=f"resctrl-fuse {self.mountpoint}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._mounted.wait(0.02):
            if not self._thread.is_alive():
                self._thread = None
                raise RuntimeError(f"FUSE server for {self.mountpoint} ended: {self._failure}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.mountpoint} not mounted after {timeout} s")
        self._helper = _find_unmount_helper(self.mountpoint)

    def _operations(self) -> object:
        """The mfusepy operations object to serve (a subclass may serve another)."""
        return ResctrlOperations(self.tree, self._mounted)

    def stop(self, timeout: float = 10.0) -> None:
        """Unmount and wait for the server thread; a no-op when not started.

        Falls back to a lazy unmount when files on the mount are still open; the
        server thread then ends once they are closed (it is a daemon thread).
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread.is_alive() and not _unmount(self.mountpoint, lazy=False):
            log.warning("%s busy, unmounting lazily", self.mountpoint)
            _unmount(self.mountpoint, lazy=True)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("FUSE server for %s still running after unmount", self.mountpoint)
        helper, self._helper = self._helper, None
        if helper is not None:
            _end_unmount_helper(helper)

    @property
    def mounted(self) -> bool:
        """True while the server is connected."""
        return self._thread is not None and self._thread.is_alive() and self._mounted.is_set()

    def _serve(self, ops: object) -> None:
        try:
            mfusepy.FUSE(
                ops,
                self.mountpoint,
                raw_fi=True,
                foreground=True,
                fsname="resctrl",
                subtype="resctrl",
                auto_unmount=True,
                allow_other=self._allow_other,
                attr_timeout=0,
                entry_timeout=0,
                negative_timeout=0,
                # libfuse 3.14 warns "Ignoring invalid max threads value 4294967295" when
                # max_idle_threads is left unset (-1 = unlimited); 10 is its documented default.
                max_idle_threads=10,
            )
        except BaseException as err:  # reported by start(); the thread must not die loudly
            self._failure = err
        finally:
            self._mounted.clear()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m resctrl_pipeline.emulator.resctrlfs",
        description="Serve an emulated resctrl filesystem over FUSE until a signal.",
    )
    parser.add_argument("--mount", required=True, help="mountpoint (created when missing)")
    parser.add_argument(
        "--hardware", default="classic", help="profile, e.g. abmc+classes (docs/emulator.md)"
    )
    parser.add_argument("--domains", default="0,1", help="L3 cache ids, e.g. 0,3")
    parser.add_argument("--snc", type=int, default=0, help="SNC nodes per L3 domain")
    parser.add_argument("--num-rmids", type=int, default=64)
    parser.add_argument("--limbo-seconds", type=float, default=1.0)
    parser.add_argument("--no-mbm", action="store_true", help="llc_occupancy only")
    parser.add_argument("--llc-mib", type=int, default=32, help="LLC size per L3 domain")
    parser.add_argument("--allow-other", action="store_true")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="unmount and exit when the parent dies"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT/SIGHUP, then unmount; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    # Installed before mounting, so libfuse leaves these signals alone (pitfall 2).
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    if args.exit_with_parent:
        _die_with_parent(signal.SIGTERM)
    try:
        hardware = parse_hardware(args.hardware)
    except ValueError as err:
        print(f"error: --hardware: {err}", file=sys.stderr)
        return 2
    fs = EmulatedResctrl(
        args.mount,
        hardware=hardware,
        domains=tuple(int(d) for d in args.domains.split(",")),
        snc=args.snc,
        num_rmids=args.num_rmids,
        mbm=not args.no_mbm,
        limbo_seconds=args.limbo_seconds,
        llc_bytes=args.llc_mib * _MIB,
        allow_other=args.allow_other,
    )
    try:
        fs.start()
    except (RuntimeError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"mounted {fs.mountpoint}", flush=True)
    # A timed wait, so the signal handler gets to run between waits.
    while not stop.wait(0.5):
        pass
    fs.stop()
    return 0


def _die_with_parent(signum: int) -> None:
    """Ask the kernel to send ``signum`` when the parent thread exits (prctl)."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


if __name__ == "__main__":
    sys.exit(main())
