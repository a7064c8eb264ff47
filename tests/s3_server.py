"""A real S3-compatible server for tests: moto's server as its own process on 127.0.0.1,
reached through a TCP gate that can refuse connections (an outage) and optionally
terminate TLS with a test CA (custom CA bundles).

Why a gate rather than stopping moto: moto keeps its buckets in memory, so a stopped
server would come back empty; closing the gate's listening socket and cutting its
connections is what an outage looks like to the writer, and the objects survive it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import poll_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``moto_server`` on a free loopback port, for the whole test module."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        binary = Path(sys.executable).with_name("moto_server")
        self._proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        poll_until(self._answers, 30, interval=0.1, what="moto_server to answer")
        self._admin = ("AKIDBOOTSTRAP", "bootstrap")  # any key works while auth is off
        self._admin = self._create_admin()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        if self._proc.poll() is not None:
            raise AssertionError(f"moto_server exited with {self._proc.returncode}")
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()

    def client(self, service: str = "s3") -> Any:
        """A boto3 client with the admin key (valid whether or not auth is on)."""
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self._admin[0], aws_secret_access_key=self._admin[1],
        )  # fmt: skip

    def set_auth(self, on: bool) -> None:
        """Turn moto's IAM authentication on (every request checked) or off."""
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0" if on else b"inf", method="POST",
            headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
        )
        with urllib.request.urlopen(req, timeout=5):
            pass

    def _create_admin(self) -> tuple[str, str]:
        """An admin user (everything allowed) for the test's own calls once auth is on;
        moto only accepts keys it issued."""
        iam = self.client("iam")
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin", PolicyName="all",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Action": "*", "Resource": "*"}]}',
        )  # fmt: skip
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        c = self.client()
        listing = c.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


class Gate:
    """A TCP forwarder 127.0.0.1:port → ``target``; :meth:`close` refuses connections
    and cuts open ones, :meth:`open` listens again on the same port.

    Args:
        target_port: where to forward (moto's port).
        tls: if given, connections are TLS-terminated here with this server context.
    """

    def __init__(self, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self._target = target_port
        self._tls = tls
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open()

    @property
    def endpoint(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def open(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self._target))
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns += [client, upstream]
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No AWS setting of the machine leaks in: no AWS_* variables, empty config files,
    no instance metadata. Yields a directory for the test's own AWS files."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "aws"
    home.mkdir()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield home


def make_test_ca(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI): its PEM, and a server
    context that presents it."""
    cert, key = directory / "ca.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return cert, ctx
