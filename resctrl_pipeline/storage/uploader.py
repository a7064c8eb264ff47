"""The uploader: a background thread that moves spooled files to object storage.

The writer's poll loop must never wait for the network, and the sink stays
synchronous, so uploads run in one thread of the writer process. The loop and the
thread share only an :class:`threading.Event` (``wake``) and counters under a lock
that is never held during I/O; the thread finds its work by listing the spool.

Per pass the thread

1. lists the spool (oldest first);
2. enforces ``output.spool_max_bytes``: while the waiting files exceed it, the oldest
   is deleted without upload (counted as ``spool_dropped_*``, one warning each). The
   newest file is always kept. Why the oldest: during a long outage the recent data
   is the more useful, the sink keeps writing normally (no second kind of outage for
   it), and a rotated file is dropped whole rather than rows going missing mid-file;
3. uploads the files in order, deleting each once stored. The first failure ends the
   pass; the next attempt waits for a capped exponential back-off with jitter (so the
   writers of many nodes do not hit a recovering store in step).

A failure never loses a file: it stays in the spool until it is uploaded or the bound
deletes it, across restarts too (the spool is scanned again at start).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from resctrl_pipeline.storage.s3 import UploadError
from resctrl_pipeline.storage.spool import KeyScheme, Spool, SpooledFile

__all__ = ["Backoff", "ObjectStore", "UploadStatistics", "Uploader"]

log = logging.getLogger(__name__)


class ObjectStore(Protocol):
    """Where files go: :class:`~.s3.S3Store` in production, fakes in tests."""

    def put_file(self, key: str, path: str) -> int:
        """Store the file at ``path`` as ``key``; returns its size.

        Raises:
            FileNotFoundError: the file vanished.
            UploadError: the upload failed (retried later).
        """
        ...

    def describe(self, key: str) -> str:
        """Where ``key`` goes, for log lines (e.g. ``s3://bucket/key``)."""
        ...


class Backoff:
    """Capped exponential back-off with jitter (pure; time passed in).

    After the n-th consecutive failure the next attempt is due ``initial * 2**(n-1)``
    seconds later, at most ``maximum``, each delay stretched or shrunk by up to
    ``jitter`` (a fraction). A success resets it.
    """

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 60.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= maximum or not 0 <= jitter < 1:
            raise ValueError("need 0 < initial <= maximum and 0 <= jitter < 1")
        self._initial = initial
        self._maximum = maximum
        self._jitter = jitter
        self._rng = rng
        self.failures = 0
        self.next_at: float | None = None

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the delay until the next attempt."""
        self.failures += 1
        delay = min(self._maximum, self._initial * 2.0 ** min(self.failures - 1, 62))
        delay *= 1 + self._jitter * (2 * self._rng() - 1)
        self.next_at = now + delay
        return delay

    def succeeded(self) -> None:
        """Forget the failures: the next attempt may happen at once."""
        self.failures = 0
        self.next_at = None

    def due(self, now: float) -> bool:
        """True if an attempt may happen at ``now``."""
        return self.next_at is None or now >= self.next_at


@dataclass(frozen=True, slots=True)
class UploadStatistics:
    """Counters (cumulative) and gauges (at the last pass) of the uploader.

    Counters: ``uploaded_files``, ``uploaded_bytes``, ``upload_failures`` (failed
    attempts, retries included), ``spool_dropped_files``, ``spool_dropped_bytes``
    (deleted unuploaded to respect ``output.spool_max_bytes``). Gauges:
    ``upload_queued_files``, ``upload_queued_bytes`` (waiting in the spool),
    ``upload_failing`` (1 from a failed attempt until the next success).
    """

    uploaded_files: int
    uploaded_bytes: int
    upload_failures: int
    spool_dropped_files: int
    spool_dropped_bytes: int
    queued_files: int
    queued_bytes: int
    failing: bool
    last_error: str

    def counters(self) -> dict[str, float]:
        """For ``ActorStats.counters``."""
        return {
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "upload_failures": self.upload_failures,
            "spool_dropped_files": self.spool_dropped_files,
            "spool_dropped_bytes": self.spool_dropped_bytes,
        }

    def gauges(self) -> dict[str, float]:
        """For ``ActorStats.gauges``."""
        return {
            "upload_queued_files": self.queued_files,
            "upload_queued_bytes": self.queued_bytes,
            "upload_failing": int(self.failing),
        }


class Uploader:
    """Uploads the spool's files in a background thread; see the module docstring.

    Call :meth:`start` once (after the sink's start-up recovery, so recovered files
    are found too), :meth:`wake` when the sink may have finalised a file,
    :meth:`statistics` for heartbeats and :meth:`close` on stop. These four never wait
    for the network.

    Args:
        spool: the files to upload.
        store: where they go.
        keys: object key per file.
        max_spool_bytes: ``output.spool_max_bytes``.
        backoff: retry schedule after failures.
        rescan_interval: seconds between listings of the spool when nothing wakes the
            thread (files that arrive without :meth:`wake`, e.g. copied in by hand).
        drain_timeout: at :meth:`close`, how long to keep uploading what is left; the
            rest stays in the spool for the next start.
        clock: monotonic clock.
    """

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        keys: KeyScheme,
        *,
        max_spool_bytes: int,
        backoff: Backoff | None = None,
        rescan_interval: float = 30.0,
        drain_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self.store = store
        self.keys = keys
        self._max_bytes = max_spool_bytes
        self._backoff = backoff or Backoff()
        self._rescan = rescan_interval
        self._drain_timeout = drain_timeout
        self._clock = clock
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        # Set once by close(); read by the thread.
        self._drain_until: float | None = None
        # Guarded by _lock:
        self._uploaded_files = 0
        self._uploaded_bytes = 0
        self._failures = 0
        self._dropped_files = 0
        self._dropped_bytes = 0
        self._queued: list[SpooledFile] = []
        self._failing = False
        self._last_error = ""

    # --- called from the writer's loop ------------------------------------------------

    def start(self) -> None:
        """Start the thread; its first pass, at once, uploads what earlier runs left."""
        self._wake.set()
        self._thread.start()

    def wake(self) -> None:
        """Ask for a pass now (a file was finalised). Returns at once."""
        self._wake.set()

    def close(self) -> None:
        """Upload what is left for up to ``drain_timeout`` seconds, then return.

        A failing store ends the drain early. An upload still running at the deadline
        is abandoned (the thread is a daemon): its file stays in the spool and is
        uploaded again after the next start — same key, so no duplicate.
        """
        if not self._thread.is_alive():
            return
        self._drain_until = self._clock() + self._drain_timeout
        self._wake.set()
        self._thread.join(self._drain_timeout)
        if self._thread.is_alive():
            log.warning(
                "Stopping with an upload still in progress after %gs; %d file(s) stay in "
                "the spool %s for the next start",
                self._drain_timeout, self.statistics().queued_files, self.spool.directory,
            )  # fmt: skip

    def statistics(self) -> UploadStatistics:
        """A consistent snapshot of the counters and gauges."""
        with self._lock:
            return UploadStatistics(
                uploaded_files=self._uploaded_files,
                uploaded_bytes=self._uploaded_bytes,
                upload_failures=self._failures,
                spool_dropped_files=self._dropped_files,
                spool_dropped_bytes=self._dropped_bytes,
                queued_files=len(self._queued),
                queued_bytes=sum(f.size for f in self._queued),
                failing=self._failing,
                last_error=self._last_error,
            )

    # --- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._sleep())
            self._wake.clear()
            draining = self._drain_until is not None
            try:
                self._pass(force=draining)
            except Exception:
                # A bug or an unexpected OSError must not end the thread silently: the
                # spool would then fill up unnoticed. Log it and retry after a back-off.
                log.exception("Upload pass failed unexpectedly")
                with self._lock:
                    self._failures += 1
                    self._failing = True
                    self._last_error = "unexpected error, see the writer's log"
                self._backoff.failed(self._clock())
            if draining:
                return

    def _pass(self, *, force: bool) -> None:
        try:
            files = self.spool.pending()
        except OSError as err:
            log.error("Cannot list the spool %s: %s", self.spool.directory, err)
            return
        files = self._enforce_bound(files)
        with self._lock:
            self._queued = files
        if force or self._backoff.due(self._clock()):
            self._upload(files)

    def _sleep(self) -> float:
        if self._drain_until is not None:
            return 0.0
        if self._backoff.next_at is None:
            return self._rescan
        return max(0.0, min(self._rescan, self._backoff.next_at - self._clock()))

    def _enforce_bound(self, files: list[SpooledFile]) -> list[SpooledFile]:
        total = sum(f.size for f in files)
        kept = list(files)
        while total > self._max_bytes and len(kept) > 1:
            oldest = kept.pop(0)
            self.spool.remove(oldest)
            total -= oldest.size
            with self._lock:
                self._dropped_files += 1
                self._dropped_bytes += oldest.size
            log.warning(
                "Spool %s holds more than output.spool_max_bytes (%d bytes): deleted the "
                "oldest file %s (%d bytes) without uploading it",
                self.spool.directory, self._max_bytes, oldest.name, oldest.size,
            )  # fmt: skip
        return kept

    def _upload(self, files: list[SpooledFile]) -> None:
        for file in files:
            until = self._drain_until
            if until is not None and self._clock() >= until:
                return
            key = self.keys.key(file)
            started = self._clock()
            try:
                size = self.store.put_file(key, self.spool.path(file))
            except FileNotFoundError:
                continue  # removed meanwhile: nothing left to upload
            except UploadError as err:
                self._failed(file, key, err)
                return
            self.spool.remove(file)
            self._stored(file, key, size, self._clock() - started)

    def _failed(self, file: SpooledFile, key: str, err: UploadError) -> None:
        first = self._backoff.failures == 0
        delay = self._backoff.failed(self._clock())
        with self._lock:
            self._failures += 1
            self._failing = True
            self._last_error = f"{self.store.describe(key)}: {err.reason}"
            queued = len(self._queued)
        # One warning when uploads start failing, then debug until they work again.
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "Upload of %s to %s failed: %s; %d file(s) kept in the spool, retrying in %.1fs",
            file.name, self.store.describe(key), err.reason, queued, delay,
        )  # fmt: skip

    def _stored(self, file: SpooledFile, key: str, size: int, seconds: float) -> None:
        failures = self._backoff.failures
        self._backoff.succeeded()
        with self._lock:
            self._uploaded_files += 1
            self._uploaded_bytes += size
            self._queued = [f for f in self._queued if f.name != file.name]
            self._failing = False
            self._last_error = ""
        if failures:
            log.warning("Uploads work again after %d failed attempt(s)", failures)
        log.info("Uploaded %s to %s (%d bytes in %.2fs)", file.name,
                 self.store.describe(key), size, seconds)  # fmt: skip
