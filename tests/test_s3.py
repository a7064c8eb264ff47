"""S3 output through pyarrow's S3 filesystem against a real S3-compatible server.

moto's server runs as its own process on 127.0.0.1 (``tests/s3_server.py``); with its
IAM authentication switched on it checks every signature and policy, so a request
signed with stale or wrong credentials fails as it would on AWS. Credentials reach
the AWS SDK only the ways they do in production: environment variables, a shared
credentials file with a profile, and a container credentials endpoint (what EKS Pod
Identity and ECS use) that hands out short-lived session credentials.

Not covered here: the web-identity provider (IRSA). The SDK bundled with pyarrow
fetches those credentials from ``https://sts.<region>.amazonaws.com`` and does not
honour ``AWS_ENDPOINT_URL_STS``, so it cannot be pointed at moto (checked with the
SDK's debug log: "STS_WEB_IDENTITY provider failed to acquire a connection").
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.storage import (
    MULTIPART_PART_BYTES,
    Backoff,
    KeyScheme,
    S3Location,
    S3Settings,
    S3Store,
    Spool,
    Uploader,
    UploadError,
)
from resctrl_pipeline.topology import endpoint
from resctrl_pipeline.writer import WriterCore
from tests.s3_server import Gate, MotoServer, aws_env, make_test_ca
from tests.support import poll_until
from tests.test_sink_parquet import Ids, make_sink

pytestmark = pytest.mark.slow
__all__ = ["aws_env"]  # the fixture, imported for its use below

REPO = Path(__file__).resolve().parent.parent
PUT_ONLY = (
    '{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", '
    '"Action": "s3:PutObject", "Resource": "arn:aws:s3:::{bucket}/*"}}]}}'
)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def gate(moto: MotoServer) -> Iterator[Gate]:
    g = Gate(moto.port)
    yield g
    g.close()


@pytest.fixture
def auth(moto: MotoServer) -> Iterator[MotoServer]:
    """moto checks every request's signature and policy during the test."""
    moto.set_auth(True)
    yield moto
    moto.set_auth(False)


@pytest.fixture
def env_keys(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Static keys in the environment (moto accepts any while auth is off)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    return aws_env


def store_for(url: str, bucket: str, **settings: Any) -> S3Store:
    options: dict[str, Any] = {"region": "us-east-1", "path_style": True, "max_attempts": 1}
    return S3Store(S3Location(bucket, "occ"), S3Settings(endpoint=url, **{**options, **settings}))


def writer(
    spool: Path, store: S3Store, *, partitioning: str = "hive", max_bytes: int = 1 << 30
) -> WriterCore:
    uploader = Uploader(
        Spool(str(spool), "resctrl-occupancy-", "node-1"),
        store,
        KeyScheme("occ", partitioning, "node-1"),
        max_spool_bytes=max_bytes,
        backoff=Backoff(initial=0.05, maximum=0.2),
        rescan_interval=0.2,
        drain_timeout=10.0,
    )
    return WriterCore(make_sink(spool), uploader)


def ids_in_objects(objects: dict[str, bytes]) -> list[int]:
    ids: list[int] = []
    for body in objects.values():
        ids += pq.read_table(io.BytesIO(body)).column("llc_occupancy_bytes").to_pylist()
    return sorted(ids)


def write_files(core: WriterCore, ids: Ids, n: int, now: float) -> float:
    """``n`` files of 50 rows each, rotated by SIGUSR1; returns the time after them."""
    for _ in range(n):
        core.on_message("occupancy", ids.batch(50), now)
        core.on_signal("SIGUSR1", now)
        now += 1.0
    return now


def parquet_in(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".parquet"))


def journalled(directory: Path) -> bool:
    """True once the sink has flushed rows into a journal there."""
    return directory.is_dir() and any(n.endswith(".journal") for n in os.listdir(directory))


def user_with_put(moto: MotoServer, bucket: str) -> tuple[str, str]:
    iam = moto.client("iam")
    user = f"writer-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = PUT_ONLY.format(bucket=bucket)
    iam.put_user_policy(UserName=user, PolicyName="put", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


# --- credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["environment", "profile"])
def test_static_keys_are_found_and_checked_by_the_server(
    moto: MotoServer, aws_env: Path, auth: MotoServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, source: str,
) -> None:  # fmt: skip
    bucket = moto.new_bucket()
    key_id, secret = user_with_put(moto, bucket)

    def use(secret_key: str) -> None:
        if source == "environment":
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        else:
            (aws_env / "credentials").write_text(
                f"[uploader]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret_key}\n"
            )
            monkeypatch.setenv("AWS_PROFILE", "uploader")

    path = tmp_path / "f.parquet"
    path.write_bytes(b"content")
    use(secret)
    assert store_for(moto.endpoint, bucket).put_file("occ/ok.parquet", str(path)) == 7
    use(secret + "x")
    with pytest.raises(UploadError, match="SIGNATURE_DOES_NOT_MATCH during PutObject") as err:
        store_for(moto.endpoint, bucket).put_file("occ/forged.parquet", str(path))
    assert "\n" not in err.value.reason and len(err.value.reason) <= 200
    monkeypatch.delenv("AWS_PROFILE", raising=False)  # boto3, which checks, would read it
    assert moto.objects(bucket) == {"occ/ok.parquet": b"content"}


class CredentialsEndpoint:
    """The container credentials endpoint of EKS Pod Identity / ECS, on 127.0.0.1.

    Each request (which must carry the token from the token file) gets fresh session
    credentials from moto's STS for the current role, declared to expire in
    ``lifetime`` seconds, so the SDK has to come back for new ones.
    """

    def __init__(self, moto: MotoServer, token: str, lifetime: float) -> None:
        self.role = ""
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((outer.role, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != token:
                    self.send_error(401)
                    return
                creds = moto.client("sts").assume_role(
                    RoleArn=outer.role, RoleSessionName="writer"
                )["Credentials"]
                expires = datetime.now(UTC) + timedelta(seconds=lifetime)
                body = json.dumps({
                    "AccessKeyId": creds["AccessKeyId"],
                    "SecretAccessKey": creds["SecretAccessKey"],
                    "Token": creds["SessionToken"],
                    "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1/credentials"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def role_with_put(moto: MotoServer, bucket: str) -> str:
    iam = moto.client("iam")
    name = f"role-{uuid.uuid4().hex[:8]}"
    trust = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": '
        '{"AWS": "arn:aws:iam::123456789012:user/admin"}, "Action": "sts:AssumeRole"}]}'
    )
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    policy = PUT_ONLY.format(bucket=bucket)
    iam.put_role_policy(RoleName=name, PolicyName="put", PolicyDocument=policy)
    return str(arn)


def test_expiring_session_credentials_are_refreshed_without_a_restart(
    moto: MotoServer, aws_env: Path, auth: MotoServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    bucket = moto.new_bucket()
    first, second = role_with_put(moto, bucket), role_with_put(moto, bucket)
    (aws_env / "token").write_text("pod-identity-token")
    endpoint_ = CredentialsEndpoint(moto, "pod-identity-token", lifetime=7.0)
    try:
        endpoint_.role = first
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint_.url)
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(aws_env / "token"))
        core = writer(tmp_path, store_for(moto.endpoint, bucket))
        ids = Ids()
        core.on_start(0.0)
        now = write_files(core, ids, 2, 1.0)
        poll_until(lambda: core.statistics().counters["uploaded_files"] == 2, 20, what="uploads")

        # The first session "expires": its role loses the permission, so a request
        # signed with it is refused. Only credentials fetched anew work from now on.
        endpoint_.role = second
        moto.client("iam").delete_role_policy(RoleName=first.rsplit("/", 1)[1], PolicyName="put")
        for _ in range(3):
            now = write_files(core, ids, 1, now)
            core.on_deadline(now)
        poll_until(lambda: core.statistics().counters["uploaded_files"] == 5, 30, what="uploads")
        core.on_stop(now)
    finally:
        endpoint_.close()
    assert ids_in_objects(moto.objects(bucket)) == list(range(ids.next))
    roles = [role for role, _ in endpoint_.requests]
    assert roles[0] == first and second in roles  # asked again, without a restart
    assert {auth for _, auth in endpoint_.requests} == {"pod-identity-token"}


# --- uploads ------------------------------------------------------------------------------


def test_large_files_go_up_in_parts_and_small_ones_in_one_put(
    moto: MotoServer, env_keys: Path, tmp_path: Path
) -> None:
    bucket = moto.new_bucket()
    store = store_for(moto.endpoint, bucket)
    big = tmp_path / "big.parquet"
    big.write_bytes(os.urandom(2 * MULTIPART_PART_BYTES + 12345))
    small = tmp_path / "small.parquet"
    small.write_bytes(b"small")
    assert store.put_file("occ/big.parquet", str(big)) == big.stat().st_size
    assert store.put_file("occ/small.parquet", str(small)) == 5
    s3 = moto.client()
    # S3 gives a multipart object the ETag "<md5 of the part md5s>-<number of parts>".
    assert s3.head_object(Bucket=bucket, Key="occ/big.parquet")["ETag"].endswith('-3"')
    assert "-" not in s3.head_object(Bucket=bucket, Key="occ/small.parquet")["ETag"]
    objects = moto.objects(bucket)
    assert objects["occ/big.parquet"] == big.read_bytes()
    assert objects["occ/small.parquet"] == b"small"
    head = s3.head_object(Bucket=bucket, Key="occ/small.parquet")
    assert head["ContentType"] == "application/vnd.apache.parquet"


def test_every_file_arrives_across_an_outage_of_the_store(
    moto: MotoServer, gate: Gate, env_keys: Path, tmp_path: Path
) -> None:
    bucket = moto.new_bucket()
    core = writer(tmp_path, store_for(gate.endpoint, bucket))
    ids = Ids()
    core.on_start(0.0)
    now = write_files(core, ids, 3, 1.0)
    poll_until(lambda: core.statistics().counters["uploaded_files"] == 3, 20, what="3 uploads")

    gate.close()
    now = write_files(core, ids, 4, now)
    poll_until(lambda: core.statistics().counters["upload_failures"] >= 2, 30, what="retries")
    stats = core.statistics()
    assert stats.gauges["upload_failing"] == 1 and "NETWORK_CONNECTION" in stats.info["upload"]
    assert stats.ready == {"output": True}  # files wait safely: still ready
    assert len(parquet_in(tmp_path)) == 4  # finalised and kept in the spool

    gate.open()
    for _ in range(3):  # and the writer keeps going while the backlog drains
        core.on_deadline(now)
        now = write_files(core, ids, 1, now)
    poll_until(lambda: core.statistics().counters["uploaded_files"] == 10, 30, what="the backlog")
    core.on_stop(now)

    objects = moto.objects(bucket)
    assert ids_in_objects(objects) == list(range(ids.next))  # every row, no duplicate
    assert all(k.startswith("occ/node=node-1/date=2023-11-14/") for k in objects)
    assert parquet_in(tmp_path) == []
    stats = core.statistics()
    assert stats.gauges["upload_failing"] == 0 and stats.gauges["upload_queued_files"] == 0
    assert "upload" not in stats.info


def test_a_full_spool_drops_the_oldest_files_during_an_outage(
    moto: MotoServer, gate: Gate, env_keys: Path, tmp_path: Path
) -> None:
    bucket = moto.new_bucket()
    probe = writer(tmp_path / "probe", store_for(gate.endpoint, bucket))  # one file's size
    probe.on_start(0.0)
    write_files(probe, Ids(), 1, 0.0)
    poll_until(lambda: probe.statistics().counters["uploaded_files"] == 1, 20)
    probe.on_stop(1.0)
    size = probe.statistics().counters["bytes_written"]

    bucket = moto.new_bucket()
    gate.close()
    core = writer(tmp_path / "spool", store_for(gate.endpoint, bucket), max_bytes=int(size * 3.5))
    ids = Ids()
    core.on_start(0.0)
    now = write_files(core, ids, 6, 1.0)
    core.on_deadline(now)
    poll_until(lambda: core.statistics().counters["spool_dropped_files"] == 3, 20, what="drops")
    assert len(parquet_in(tmp_path / "spool")) == 3

    gate.open()
    poll_until(lambda: core.statistics().counters["uploaded_files"] == 3, 30, what="uploads")
    core.on_stop(now)
    # The three newest files (rows 150-299) arrived; the oldest three were dropped.
    assert ids_in_objects(moto.objects(bucket)) == list(range(150, 300))
    c = core.statistics().counters
    assert c["files_written"] == 6  # every finalised byte was either uploaded or dropped:
    assert c["uploaded_bytes"] + c["spool_dropped_bytes"] == c["bytes_written"]


def test_a_hanging_store_never_blocks_the_writer(env_keys: Path, tmp_path: Path) -> None:
    blackhole = socket.create_server(("127.0.0.1", 0), backlog=8)  # accepts, never answers
    try:
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        core = writer(tmp_path, store_for(url, "bkt", request_timeout=2.0))
        core.on_start(0.0)
        ids, now, slowest = Ids(), 1.0, 0.0
        for _ in range(20):
            started = time.monotonic()
            now = write_files(core, ids, 1, now)
            core.on_deadline(now)
            core.statistics()
            slowest = max(slowest, time.monotonic() - started)
        # Each round finalises a Parquet file (fsyncs included) while an upload hangs:
        # no round may wait for it.
        assert slowest < 0.5, f"a writer round took {slowest:.3f}s"
        assert len(parquet_in(tmp_path)) == 20
        # The SDK gives up on a silent peer after its request timeout; the spool retries.
        poll_until(lambda: core.statistics().counters["upload_failures"] >= 1, 30, what="timeout")
        assert "Timeout was reached" in core.statistics().info["upload"]
    finally:
        blackhole.close()


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that records each request line and answers 503."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                outer.lines.append(f"{self.command} {self.path}")
                self.send_error(503)

            do_PUT = do_POST = do_GET = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize(
    ("path_style", "url"),
    [(True, "http://s3.store.test:9000/bkt/occ/f.parquet"),
     (False, "http://bkt.s3.store.test:9000/occ/f.parquet")],
)  # fmt: skip
def test_requests_go_through_the_proxy_path_style_or_virtual_hosted(
    env_keys: Path, tmp_path: Path, path_style: bool, url: str
) -> None:
    proxy = RecordingProxy()
    try:
        store = store_for(
            "http://s3.store.test:9000", "bkt", path_style=path_style, proxy=proxy.url
        )
        (tmp_path / "f").write_bytes(b"abc")
        with pytest.raises(UploadError):  # the store's name does not even resolve
            store.put_file("occ/f.parquet", str(tmp_path / "f"))
    finally:
        proxy.close()
    assert proxy.lines == [f"PUT {url}"]


def test_a_private_ca_is_trusted_only_through_the_configured_bundle(
    moto: MotoServer, env_keys: Path, tmp_path: Path
) -> None:
    ca, context = make_test_ca(tmp_path)
    tls = Gate(moto.port, tls=context)
    try:
        bucket = moto.new_bucket()
        (tmp_path / "f").write_bytes(b"over tls")
        with pytest.raises(UploadError, match=r"curlCode: 60"):
            store_for(tls.endpoint, bucket).put_file("occ/untrusted.parquet", str(tmp_path / "f"))
        store = store_for(tls.endpoint, bucket, ca_bundle=str(ca))
        assert store.put_file("occ/trusted.parquet", str(tmp_path / "f")) == 8
    finally:
        tls.close()
    assert moto.objects(bucket) == {"occ/trusted.parquet": b"over tls"}


def test_writer_process_uploads_with_credentials_from_the_environment(
    moto: MotoServer, auth: MotoServer, tmp_path: Path, short_tmp: str
) -> None:
    bucket = moto.new_bucket()
    key_id, secret = user_with_put(moto, bucket)
    spool = tmp_path / "spool"
    config = tmp_path / "writer.toml"
    config.write_text(
        f'[pipeline]\nruntime_dir = "{short_tmp}"\n'
        f'[output]\ndir = "s3://{bucket}/metrics/occ"\nspool_dir = "{spool}"\n'
        f's3_endpoint = "{moto.endpoint}"\ns3_path_style = true\nflush_interval = "200ms"\n'
        '[node]\nname = "node-w"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    })  # fmt: skip
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(endpoint(short_tmp, "occupancy"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.writer", "--config", str(config)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    ids = Ids()
    try:
        push.send(codec.encode(ids.batch(10), src="test", seq=1, ts=time.time()))
        poll_until(lambda: journalled(spool), 15, what="a flush")
        proc.send_signal(signal.SIGUSR1)
        poll_until(lambda: len(moto.objects(bucket)) == 1, 20, what="upload after SIGUSR1")
        push.send(codec.encode(ids.batch(10), src="test", seq=2, ts=time.time()))
        poll_until(lambda: journalled(spool), 15, what="a flush")
        proc.send_signal(signal.SIGTERM)  # finalise, then drain the upload before exiting
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        push.close(0)
    assert proc.returncode == 0, stderr.decode(errors="replace")
    objects = moto.objects(bucket)
    assert ids_in_objects(objects) == list(range(20)) and len(objects) == 2
    assert all(k.startswith("metrics/occ/resctrl-occupancy-node-w-") for k in objects)
    assert parquet_in(spool) == []
