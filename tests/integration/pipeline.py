"""Running a real ``resctrl-pipeline up`` as a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from tests.support import poll_until


class RunningPipeline:
    """A ``resctrl-pipeline up`` child process with helpers to query it."""

    def __init__(self, runtime_dir: str, args: list[str], log_path: str,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.runtime_dir = runtime_dir
        self.log_path = log_path
        cmd = [sys.executable, "-m", "resctrl_pipeline.cli", "up", "--runtime-dir", runtime_dir,
               "--http-addr", "127.0.0.1:0", *args]  # fmt: skip
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed by terminate()/kill()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env)  # fmt: skip

    def pids(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.runtime_dir, "pids.json")) as f:
                doc: dict[str, Any] = json.load(f)
                return doc
        except (OSError, ValueError):
            return {}

    def wait_serving(self, actors: tuple[str, ...], timeout: float = 20.0) -> int:
        def serving() -> int:
            assert self.proc.poll() is None, self.log()
            doc = self.pids()
            if doc.get("http_port") and all(a in doc.get("actors", {}) for a in actors):
                return int(doc["http_port"])
            return 0

        return poll_until(serving, timeout, what=f"up serving with {actors}")

    def get(self, path: str) -> tuple[int, str]:
        port = self.pids()["http_port"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200
        doc: dict[str, Any] = json.loads(body)
        return doc

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
