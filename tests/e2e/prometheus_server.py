"""A real Prometheus server (Debian's ``prometheus``) for the metrics tests.

Started on a free loopback port with a private TSDB and a configuration that scrapes
one target every second; queried through its HTTP API like any PromQL client.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.support import poll_until

__all__ = ["PrometheusServer", "free_port"]

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: resctrl-pipeline
    static_configs:
      - targets: ["{target}"]
"""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusServer:
    """``prometheus`` scraping ``target`` (host:port) every second, from ``work``."""

    def __init__(self, work: str, target: str) -> None:
        self.work = work
        os.makedirs(work, exist_ok=True)
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(CONFIG.format(target=target))
        self.port = free_port()
        self.log_path = os.path.join(work, "prometheus.log")
        binary = shutil.which("prometheus") or "prometheus"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()
        except (OSError, urllib.error.URLError):
            return 0, b""

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            return self._get("/-/ready")[0] == 200

        poll_until(ready, timeout, interval=0.2, what="prometheus /-/ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query; the ``result`` list (vector) or [scalar]."""
        code, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        doc = json.loads(body or b"{}")
        assert code == 200 and doc.get("status") == "success", f"{expr}: {code} {body[:500]!r}"
        data = doc["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
