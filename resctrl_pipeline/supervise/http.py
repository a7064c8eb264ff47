"""HTTP endpoints of the supervisor: ``/live``, ``/ready``, ``/metrics``, ``/status``,
``/pods``.

``/metrics`` answers in the Prometheus text format, or in OpenMetrics when the
``Accept`` header asks for ``application/openmetrics-text``; ``/pods`` is the JSON
document of :func:`.pods.pods_document` (404 with ``http.pod_metrics = false``).

Served from a daemon thread with the standard library's threading HTTP server; the
handlers only read a :class:`PipelineView` obtained through a callable, so the
supervisor's loop never waits for a scrape.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from resctrl_pipeline.supervise.health import MetricsCollector, PipelineView, readiness
from resctrl_pipeline.supervise.pods import PodMetricsCollector, pods_document

__all__ = ["HttpEndpoints", "parse_addr"]


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets allowed) → (host, port)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class HttpEndpoints:
    """The HTTP server; ``port`` is the bound port (useful with port 0 in tests)."""

    def __init__(self, addr: str, view: Callable[[], PipelineView]) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(view))
        registry.register(PodMetricsCollector(lambda: (view().node, view().pods)))

        class Handler(BaseHTTPRequestHandler):
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
                        doc = json.dumps(pods_document(v.node, v.pods)).encode()
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
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
