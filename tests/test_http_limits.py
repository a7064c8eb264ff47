"""The supervisor's HTTP server cannot be pinned by its clients: a deadline per
connection, and a bound on connections served at once."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from resctrl_pipeline.supervise.health import PipelineView
from resctrl_pipeline.supervise.http import HttpEndpoints
from tests.support import poll_until

TIMEOUT = 1.0


@pytest.fixture
def http() -> Iterator[HttpEndpoints]:
    server = HttpEndpoints("127.0.0.1:0", PipelineView, max_connections=4,
                           request_timeout=TIMEOUT)  # fmt: skip
    server.start()
    yield server
    server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _closed_by_server(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (reads until EOF; 30 s at most)."""
    t0 = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - t0


def test_a_silent_client_is_cut_at_the_deadline(http: HttpEndpoints) -> None:
    sock = _connect(http.port)
    sock.sendall(b"GET /live HTTP/1.0\r\n")  # and never the end of the headers
    took = _closed_by_server(sock)
    sock.close()
    assert took < 10, took  # the socket's own 30 s would fail this


def test_a_trickling_client_is_cut_at_the_deadline(http: HttpEndpoints) -> None:
    """One byte every quarter of the deadline: each read succeeds in time, the whole
    request does not."""
    sock = _connect(http.port)
    t0 = time.monotonic()
    sent = 0
    try:
        for byte in b"GET /live HTTP/1.0\r\nX-Padding: " + b"a" * 200:
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(TIMEOUT / 4)  # the client's pace, not synchronisation
    except (BrokenPipeError, ConnectionResetError):
        pass
    took = time.monotonic() - t0
    sock.close()
    assert sent < 200 and took < TIMEOUT * 4, (sent, took)


def test_connections_beyond_the_bound_get_503_and_the_slots_come_back(
    http: HttpEndpoints,
) -> None:
    http._server.request_timeout = 30  # the idle clients hold their slots meanwhile
    held = [_connect(http.port) for _ in range(4)]
    try:
        poll_until(lambda: len(http._server._deadlines) == 4, 10, what="4 connections served")
        assert _busy(http.port)
        assert http._server.rejected == 1
    finally:
        for sock in held:
            sock.close()
    # The slots come back once the serving threads saw the clients hang up.
    poll_until(lambda: not http._server._deadlines, 10, what="the slots released")
    assert _get(http.port, "/live") == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/metrics", timeout=30) as r:
        text = r.read().decode()
    assert "resctrl_pipeline_http_connections_rejected_total 1.0" in text


def _busy(port: int) -> bool:
    sock = _connect(port)
    try:
        sock.sendall(b"GET /live HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return answer.startswith(b"HTTP/1.0 503")
