"""A user's mistakes get one line on stderr and the right exit code, never a traceback.

Exit codes: 2 bad configuration or usage, 1 anything else (docs/usage.md).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resctrl_pipeline", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def closed_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there now
    yield port


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield int(s.getsockname()[1])
    s.close()


def test_bad_values_and_files_are_configuration_errors(tmp_path: Path) -> None:
    one_line(cli("up", "--sampling-interval", "soon"), 2,
             "sampling.interval = 'soon': expected a duration")  # fmt: skip
    one_line(cli("config", "--config", str(tmp_path / "nope.toml")), 2, "cannot read")
    (tmp_path / "bad.toml").write_text("[sampling\n")
    one_line(cli("status", "--config", str(tmp_path / "bad.toml")), 2, "not valid TOML")
    one_line(cli("top", "--interval", "soon"), 2, "--interval 'soon'")
    one_line(cli("demo", "--duration", "soon"), 2, "--duration 'soon'")
    one_line(cli("up", "--node-name", "worker 3"), 2, "node.name = 'worker 3'")


def test_an_http_address_in_use_is_named(tmp_path: Path, busy_port: int) -> None:
    result = cli("up", "--runtime-dir", str(tmp_path / "run"), "--output", str(tmp_path / "out"),
                 "--http-addr", f"127.0.0.1:{busy_port}", "--actors", "writer")  # fmt: skip
    one_line(result, 1, f"cannot serve HTTP on 127.0.0.1:{busy_port}: Address already in use")


def test_commands_without_a_pipeline_say_where_they_looked(tmp_path: Path,
                                                           closed_port: int) -> None:  # fmt: skip
    for command in ("status", "rotate", "top"):
        one_line(cli(command, "--runtime-dir", str(tmp_path)), 1,
                 f"no running pipeline in {tmp_path} (no pids.json)")  # fmt: skip
    one_line(cli("status", "--http-addr", f"127.0.0.1:{closed_port}"), 1,
             f"cannot reach the pipeline at http://127.0.0.1:{closed_port}/status")  # fmt: skip
    one_line(cli("top", "--once", "--http-addr", f"127.0.0.1:{closed_port}"), 1,
             "cannot reach the pipeline")  # fmt: skip


def test_a_pids_file_of_a_stopped_pipeline_is_called_stale(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "pids.json").write_text(json.dumps(
        {"supervisor": gone.pid, "http_addr": "127.0.0.1:1", "http_port": 1, "actors": {}}))
    for command in ("status", "rotate", "top"):
        one_line(cli(command, "--runtime-dir", str(tmp_path)), 1,
                 f"the supervisor (pid {gone.pid}) named in {tmp_path / 'pids.json'} is not "
                 "running: the record is stale")  # fmt: skip
    assert os.path.exists(tmp_path / "pids.json")  # reported, not removed


def test_unusable_directories_are_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    one_line(cli("up", "--runtime-dir", str(tmp_path / "file"), "--output", str(tmp_path / "o"),
                 "--http-addr", "127.0.0.1:0"), 1,
             f"runtime dir {tmp_path / 'file'} is not a directory")  # fmt: skip
    one_line(cli("up", "--runtime-dir", str(tmp_path / "run"), "--output",
                 str(tmp_path / "file" / "out"), "--http-addr", "127.0.0.1:0"), 1,
             f"output dir {tmp_path / 'file' / 'out'} is not a directory")  # fmt: skip


def test_rotate_by_address_of_a_pipeline_elsewhere_says_to_run_it_there() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is no process here, as one in another container
    body = json.dumps({"ready": True, "actors": {"writer": {
        "pid": gone.pid, "running": True, "started_at": 1.0}}}).encode()  # fmt: skip

    class Status(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        one_line(cli("rotate", "--http-addr", f"127.0.0.1:{port}"), 1,
                 f"(pid {gone.pid}) is not a process here (another machine or container?): "
                 "run rotate where the pipeline runs")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def test_top_says_why_the_pipeline_has_no_per_pod_data(short_tmp: str) -> None:
    from tests.integration.pipeline import RunningPipeline
    from tests.support import make_resctrl_tree

    tmp_path = Path(short_tmp)  # socket paths must stay short
    make_resctrl_tree(str(tmp_path / "resctrl"))
    p = RunningPipeline(str(tmp_path / "run"), ["--actors", "writer", "--output",
                        str(tmp_path / "out"), "--resctrl-root", str(tmp_path / "resctrl")],
                        str(tmp_path / "up.log"), env={"RESCTRL_POD_METRICS": "false"})  # fmt: skip
    try:
        p.wait_serving(("writer",))
        why = "/pods answered 404: per-pod metrics are off (http.pod_metrics = false)"
        one_line(cli("top", "--once", "--runtime-dir", str(tmp_path / "run")), 1, why)
    finally:
        p.kill()
