"""The containerd daemon the harness runs: start, wait, restart, stop, clean up.

:func:`launch` does the whole set-up (stubs, images, config, start, image import,
removal of pods a crashed earlier run left) and returns a running :class:`Containerd`;
:meth:`Containerd.teardown` undoes everything: harness pods removed through CRI, the
daemon stopped by its PID, leftover containers, shims and mounts of *this* daemon
removed, and the pod cgroups the harness created deleted.

The daemon runs in its own session with stdin from /dev/null and its output appended
to a log file (a daemon inheriting the test runner's stdout pipe would hang it).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Final

from .cgroups import cgroup_mounts, remove_cgroup_tree
from .config import DaemonPaths, render_config
from .cri import CriClient, CriError, pod_cgroup_parent
from .cri_stubs import CriModules, load_cri_modules
from .images import Images, build_images, import_images
from .install import HarnessUnavailable, Installation, find_installation
from .util import is_socket, poll_until, unix_socket_accepts

__all__ = ["NRI_SOCKET_ENV", "Containerd", "StartFailed", "launch"]

NRI_SOCKET_ENV: Final = "RESCTRL_E2E_NRI_SOCKET"
"""Overrides the NRI socket path the harness configures (default /var/run/nri/nri.sock)."""


class StartFailed(HarnessUnavailable):
    """containerd did not come up; the message holds the end of its log."""


class Containerd:
    """One containerd process configured by the harness.

    Args:
        installation: binaries and cache.
        cri: the generated CRI modules.
        images: the sandbox and workload images (imported by :meth:`import_images`).
        workdir: where the config and the log go (created if missing).
        paths: state directories and sockets.
        log_level: containerd's ``--log-level``.

    Attributes:
        start_seconds: how long each start took, from spawn to CRI RuntimeReady.
    """

    def __init__(
        self,
        installation: Installation,
        cri: CriModules,
        images: Images,
        workdir: Path,
        paths: DaemonPaths | None = None,
        log_level: str = "info",
    ) -> None:
        self.installation = installation
        self.cri_modules = cri
        self.images = images
        self.paths = paths or DaemonPaths()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "containerd.toml"
        self.log_path = workdir / "containerd.log"
        self.config_path.write_text(
            render_config(installation.config_version, self.paths, images.pause)
        )
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._pod_parents: set[str] = set()
        self._kubepods_existed = any((m / "kubepods").is_dir() for m in cgroup_mounts())
        self._nri_dir_existed = self.paths.nri_socket.parent.is_dir()
        self.start_seconds: list[float] = []

    # --- process -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The daemon's PID while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 30.0) -> float:
        """Start the daemon and wait until both sockets exist and CRI is RuntimeReady.

        Returns the seconds it took.

        Raises:
            StartFailed: another containerd already listens on the address, or this
                one exited or did not get ready within ``timeout`` (log tail attached).
        """
        if self.pid is not None:
            raise RuntimeError("containerd is already running")
        if unix_socket_accepts(self.paths.address):
            raise StartFailed(
                f"a containerd not started by the tests already listens on {self.paths.address};"
                " stop it first (the harness never takes over a running daemon)"
            )
        # Left behind by an earlier daemon; connect() on it would only be refused.
        if is_socket(self.paths.nri_socket):
            self.paths.nri_socket.unlink()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open while the daemon runs)
        self._log.write(f"=== harness: starting containerd at {time.ctime()}\n".encode())
        self._log.flush()
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [
                str(self.installation.containerd),
                "--config",
                str(self.config_path),
                "--log-level",
                self._log_level,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        client = CriClient(self.cri_modules, self.paths.address, timeout=2.0)
        try:

            def ready() -> bool:
                if self._proc is None or self._proc.poll() is not None:
                    return True  # stop waiting; reported below
                return (
                    is_socket(self.paths.nri_socket)
                    and unix_socket_accepts(self.paths.address)
                    and client.runtime_ready()
                )

            came_up = poll_until(ready, timeout, interval=0.01)
        finally:
            client.close()
        code = self._proc.poll()
        if code is not None or not came_up:
            why = f"exited with status {code}" if code is not None else f"not ready in {timeout} s"
            self._kill()
            raise StartFailed(
                f"containerd {self.installation.version} {why}; log {self.log_path}:\n"
                + self.log_tail(15)
            )
        elapsed = time.monotonic() - started
        self.start_seconds.append(elapsed)
        return elapsed

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the daemon and wait for it (SIGKILL after ``timeout``). Pods and
        their shims keep running, as with a real containerd restart."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 30.0) -> float:
        """Stop and start again; return the start's seconds."""
        self.stop()
        return self.start(timeout)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the daemon's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- clients and images ---------------------------------------------------------

    def client(self, timeout: float = 30.0) -> CriClient:
        """A new CRI client; pods it starts are remembered for cgroup clean-up."""
        return CriClient(
            self.cri_modules, self.paths.address, timeout, on_pod=self._pod_parents.add
        )

    def import_images(self) -> None:
        """Import the harness images (if missing) and wait until CRI lists them.

        Raises:
            RuntimeError: the import failed or CRI did not see the images in time.
        """
        import_images(self.installation.ctr, str(self.paths.address), self.images)
        refs = (self.images.pause, self.images.workload)
        with self.client() as cri:
            if not poll_until(lambda: all(cri.image_present(r) for r in refs), 10.0, 0.02):
                raise RuntimeError(f"CRI does not list the imported images {refs}")

    # --- teardown -------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Remove everything the harness made; return what could not be removed.

        Never raises: each step is attempted whatever happened before it.
        """
        problems: list[str] = []
        if self.pid is not None:
            try:
                with self.client() as cri:
                    for item in cri.remove_harness_pods():
                        with suppress(ValueError):  # a uid the harness would not make
                            self._pod_parents.add(pod_cgroup_parent(item.metadata.uid))
            except CriError as err:
                problems.append(f"removing pods through CRI: {err}")
        self.stop()
        problems += self._reap_leftovers()
        problems += self._unmount_leftovers()
        for parent in sorted(self._pod_parents):
            with suppress(ValueError):
                problems += [f"cgroup busy: {p}" for p in remove_cgroup_tree(parent)]
        if not self._kubepods_existed:
            problems += [f"cgroup busy: {p}" for p in remove_cgroup_tree("/kubepods")]
        if is_socket(self.paths.nri_socket):
            self.paths.nri_socket.unlink()
        if not self._nri_dir_existed:
            with suppress(OSError):
                self.paths.nri_socket.parent.rmdir()  # only if empty
        return problems

    def _shim_pids(self) -> Iterator[int]:
        """PIDs of runc shims serving *this* daemon (their -address is ours)."""
        address = str(self.paths.address)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not argv or not os.path.basename(argv[0]).startswith(b"containerd-shim"):
                continue
            args = [a.decode(errors="replace") for a in argv]
            if any(a == "-address" and b == address for a, b in itertools.pairwise(args)):
                yield int(entry.name)

    def _reap_leftovers(self) -> list[str]:
        """Force-delete containers still known to runc and kill our leftover shims."""
        problems = []
        runc_root = self.paths.state / "runc" / "k8s.io"
        if runc_root.is_dir():
            base = [str(self.installation.runc), "--root", str(runc_root)]
            out = subprocess.run(
                [*base, "list", "--format", "json"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            for item in json.loads(out or "null") or []:
                cid = str(item.get("id", ""))
                if cid.isalnum():
                    subprocess.run(
                        [*base, "delete", "--force", cid],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        check=False,
                    )
                    problems.append(f"container {cid} was left running (force-deleted)")
        shims = list(self._shim_pids())
        for pid in shims:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if shims:
            problems.append(f"killed leftover shims {shims}")
            poll_until(lambda: not list(self._shim_pids()), 5.0, 0.01)
        return problems

    def _unmount_leftovers(self) -> list[str]:
        """Lazily unmount whatever is still mounted below the state and root dirs."""
        roots = [str(self.paths.state) + "/", str(self.paths.root) + "/"]
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split(" ")[4].replace("\\040", " ")
            if any(point.startswith(r) for r in roots):
                points.append(point)
        problems = []
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            proc = subprocess.run(
                ["umount", "--lazy", point],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                problems.append(f"umount {point}: {proc.stderr.strip()}")
        return problems


def nri_socket_from_env() -> Path:
    """The NRI socket to configure: ``$RESCTRL_E2E_NRI_SOCKET`` or the default.

    Raises:
        HarnessUnavailable: the variable is not an absolute path.
    """
    raw = os.environ.get(NRI_SOCKET_ENV)
    if not raw:
        return DaemonPaths().nri_socket
    if not os.path.isabs(raw):
        raise HarnessUnavailable(f"{NRI_SOCKET_ENV}={raw!r} must be an absolute path")
    return Path(raw)


def launch(workdir: Path, nri_socket: Path | None = None, log_level: str = "info") -> Containerd:
    """Set everything up and return a running daemon with the images imported and no
    harness pods left from earlier runs.

    Raises:
        HarnessUnavailable: not root, not installed, stubs or images cannot be built,
            or the daemon does not start (the message says which and what to do).
    """
    if os.geteuid() != 0:
        raise HarnessUnavailable("needs root (runs containerd, creates cgroups and mounts)")
    installation = find_installation()
    cri = load_cri_modules(installation.cri_proto, installation.cache)
    images = build_images(installation.cache)
    paths = DaemonPaths().with_nri_socket(nri_socket or nri_socket_from_env())
    daemon = Containerd(installation, cri, images, workdir, paths, log_level)
    daemon.start()
    try:
        daemon.import_images()
        with daemon.client() as client:
            client.remove_harness_pods()
    except (RuntimeError, CriError) as err:
        daemon.teardown()
        raise StartFailed(f"containerd started but is unusable: {err}") from err
    return daemon
