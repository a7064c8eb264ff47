"""Upload throughput of one large file through ``S3Store`` to ``moto_server`` on loopback.

Usage: ``.venv/bin/python -m bench.s3_upload [RUNS] [SIZE_MIB]`` (default 2 runs of
1024 MiB). Not part of ``scripts/bench.py all``: moto keeps the object in memory and
a run takes minutes on a busy machine. Results are recorded by hand in
``docs/benchmarks.md`` ("S3 upload").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from resctrl_pipeline.storage import S3Location, S3Settings, S3Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv: list[str]) -> int:
    """Upload a random file ``runs`` times; print MiB/s and the load average."""
    runs = int(argv[0]) if argv else 2
    size_mib = int(argv[1]) if len(argv) > 1 else 1024
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true"
    )
    port = _free_port()
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{endpoint}/moto-api/")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT"))
        store = S3Store(S3Location("bench", ""), S3Settings(endpoint=endpoint, path_style=True))
        with tempfile.NamedTemporaryFile(prefix="s3-upload-") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
            f.flush()
            for i in range(runs):
                load = os.getloadavg()[0]
                started = time.monotonic()
                size = store.put_file(f"run-{i}", f.name)
                seconds = time.monotonic() - started
                print(f"{size / 2**20:.0f} MiB in {seconds:.2f}s = {size / seconds / 2**20:.1f} "
                      f"MiB/s (load {load:.2f} → {os.getloadavg()[0]:.2f})")  # fmt: skip
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
