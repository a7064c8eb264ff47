"""HTTP endpoints of the supervisor: ``/live``, ``/ready``, ``/metrics``, ``/status``,
``/pods``.

``/metrics`` answers in the Prometheus text format, or in OpenMetrics when the
``Accept`` header asks for ``application/openmetrics-text``; ``/pods`` is the JSON
document of :func:`.pods.pods_document` (404 with ``http.pod_metrics = false``).

Served from a daemon thread with the standard library's threading HTTP server; the
handlers only read a :class:`PipelineView` obtained through a callable, so the
supervisor's loop never waits for a scrape.

No client can pin the server: at most :data:`MAX_CONNECTIONS` connections are served
at once (one more is answered ``503`` and closed at once, counted in
``resctrl_pipeline_http_connections_rejected_total``), and a connection is cut after
:data:`REQUEST_TIMEOUT` seconds whatever it does (HTTP/1.0, one request per
connection: a client that sends or reads a byte at a time is cut all the same).
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from resctrl_pipeline.supervise.health import MetricsCollector, PipelineView, readiness
from resctrl_pipeline.supervise.pods import PodMetricsCollector, pods_document

__all__ = ["MAX_CONNECTIONS", "REQUEST_TIMEOUT", "HttpEndpoints", "parse_addr"]

#: Connections served at once (probes, a scraper, ``status``/``top``: a handful).
MAX_CONNECTIONS = 16
#: Seconds a connection may take from accept to close, request and answer included.
REQUEST_TIMEOUT = 5.0
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n"


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets allowed) → (host, port)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


#: Seconds the accept loop waits for a connection before it looks for a stop request
#: on its own; :meth:`HttpEndpoints.stop` does not wait for it (it connects once).
_ACCEPT_POLL = 30.0


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on connections and a deadline per connection.

    Hand-written because the standard library's server has neither: a thread per
    connection without limit, and sockets that wait for a client forever. One
    watchdog thread shuts down every connection past its deadline, which unblocks
    the thread serving it; with no connection open it sleeps until one comes (an idle
    agent has no timer waking it for nothing).
    """

    daemon_threads = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int, request_timeout: float) -> None:  # fmt: skip
        # Set before binding: a failed bind calls server_close(), which uses them.
        self.request_timeout = request_timeout
        self.rejected = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = False
        super().__init__(addr, handler)
        self._watchdog = threading.Thread(target=self._watch, name="http-deadlines", daemon=True)
        self._watchdog.start()

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            with contextlib.suppress(OSError):
                request.setblocking(False)  # never wait for this client
                request.send(_BUSY)
            self.shutdown_request(request)
            return
        with self._changed:
            self._deadlines[request] = time.monotonic() + self.request_timeout
            self._changed.notify()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: socket.socket) -> None:
        with self._lock:
            if self._deadlines.pop(request, None) is not None:
                self._slots.release()

    def _watch(self) -> None:
        while True:
            with self._changed:
                if self._closing:
                    return
                now = time.monotonic()
                late = [s for s, deadline in self._deadlines.items() if now >= deadline]
                for sock in late:
                    # Cut off once; its serving thread then ends and forgets it.
                    self._deadlines[sock] = math.inf
                if not late:
                    # Until the next deadline, or a new connection (or close) notifies.
                    soonest = min(self._deadlines.values(), default=math.inf)
                    self._changed.wait(None if soonest == math.inf else soonest - now)
                    continue
            for sock in late:
                with contextlib.suppress(OSError):  # already closed by its thread
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client cut off (deadline, reset) is not worth a traceback in the log;
        # anything else is a bug and keeps the standard report.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def server_close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        super().server_close()


class _HttpCounters:
    """prometheus_client collector of the server's own counters."""

    def __init__(self, rejected: Callable[[], int]) -> None:
        self._rejected = rejected

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(
            "resctrl_pipeline_http_connections_rejected",
            f"HTTP connections refused (503) because {MAX_CONNECTIONS} were being served.",
        )
        fam.add_metric([], float(self._rejected()))
        yield fam


class HttpEndpoints:
    """The HTTP server; ``port`` is the bound port (useful with port 0 in tests).

    Args:
        max_connections, request_timeout: see :data:`MAX_CONNECTIONS` and
            :data:`REQUEST_TIMEOUT` (tests pass small values).
    """

    def __init__(self, addr: str, view: Callable[[], PipelineView],
                 max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:  # fmt: skip
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(view))
        registry.register(PodMetricsCollector(lambda: (view().node, view().current_pods())))
        registry.register(_HttpCounters(lambda: self._server.rejected))

        class Handler(BaseHTTPRequestHandler):
            # Each read and write; the watchdog bounds the whole connection.
            timeout = request_timeout

            def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/live":
                    self._reply(200, b"ok\n")
                elif path == "/ready":
                    ok, reasons = readiness(view())
                    text = (
                        "ready\n" if ok else "not ready:\n" + "".join(f"- {r}\n" for r in reasons)
                    )
                    self._reply(200 if ok else 503, text.encode())
                elif path == "/metrics":
                    # OpenMetrics when the scraper's Accept header asks for it.
                    encode, ctype = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, encode(registry), ctype)
                elif path == "/pods":
                    v = view()
                    if v.pod_metrics:
                        doc = json.dumps(pods_document(v.node, v.current_pods())).encode()
                        self._reply(200, doc + b"\n", "application/json")
                    else:
                        self._reply(404, b"per-pod metrics are off (http.pod_metrics = false)\n")
                elif path == "/status":
                    body = json.dumps(view().as_json(), indent=2, sort_keys=True).encode()
                    self._reply(200, body + b"\n", "application/json")
                else:
                    self._reply(404, b"not found: try /live /ready /metrics /status /pods\n")

            def log_message(self, format: str, *args: object) -> None:
                # Scrapes every few seconds would flood the log.
                return

        host, port = parse_addr(addr)
        self._server = _BoundedServer((host, port), Handler, max_connections, request_timeout)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # No periodic wake-up of the accept loop: stop() ends its wait itself.
            kwargs={"poll_interval": _ACCEPT_POLL},
            name="http",
            daemon=True,
        )

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket.

        The accept loop notices a stop request only when its wait ends, and it waits
        without a short timeout (an idle agent should not wake twice a second), so
        this connects to the server once (again every 50 ms until it has stopped).
        """
        if self._thread.is_alive():
            stopping = threading.Thread(target=self._server.shutdown, daemon=True)
            stopping.start()
            while stopping.is_alive():
                self._knock()
                stopping.join(0.05)
        self._server.server_close()

    def _knock(self) -> None:
        """Connect to the listening socket and hang up (wakes the accept loop)."""
        host, port = self._server.server_address[:2]
        with contextlib.suppress(OSError):
            socket.create_connection((str(host), int(port)), timeout=0.5).close()
