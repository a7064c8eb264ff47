"""S3 output against a real S3-compatible server: moto's server on 127.0.0.1.

The server runs in this process (moto's WSGI app under werkzeug) so that it can be
stopped — its listening socket closed, connections refused — and started again on
the same port with its buckets intact, which is an outage of the store as the writer
sees it. Network traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
import zmq
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from moto.core import enable_iam_authentication
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from resctrl_pipeline import codec
from resctrl_pipeline.storage import (
    Backoff,
    Credentials,
    KeyScheme,
    S3Location,
    S3Store,
    Spool,
    Uploader,
    UploadError,
)
from resctrl_pipeline.storage.sigv4 import encode_path, sign
from resctrl_pipeline.topology import endpoint
from resctrl_pipeline.writer import WriterCore
from tests.support import poll_until
from tests.test_sink_parquet import Ids, make_sink

REPO = Path(__file__).resolve().parent.parent
KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


class LocalS3:
    """moto's S3 on 127.0.0.1: a free port at the first start, the same one after."""

    def __init__(self) -> None:
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app = DomainDispatcherApplication(create_backend_app)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket: connections are refused."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(10)
        self._server = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        c = self.client()
        listing = c.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalS3]:
    s = LocalS3()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def s3(server: LocalS3) -> Iterator[LocalS3]:
    server.start()
    yield server
    server.start()  # a test that stopped it leaves it running for the next


def store_for(
    s3: LocalS3, bucket: str, *, secret: str = SECRET, timeout: float = 5.0, url: str | None = None
) -> S3Store:
    return S3Store(
        S3Location(bucket, "occ"),
        endpoint=url or s3.endpoint,
        region="us-east-1",
        path_style=True,
        credentials=Credentials(KEY_ID, secret),
        timeout=timeout,
    )


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
        drain_timeout=5.0,
    )
    return WriterCore(make_sink(spool), 0.1, uploader)


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


# --- signing ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////token"])
def test_signature_equals_botocores(token: str | None) -> None:
    now = datetime(2025, 9, 24, 14, 58, 57, tzinfo=UTC)
    body = b"parquet bytes"
    digest = hashlib.sha256(body).hexdigest()
    path = encode_path("/bkt/occ/node=n 1/date=2025-09-24/f+é~.parquet")
    mine = sign(
        method="PUT",
        path=path,
        headers={"Host": "s3.example:9000", "Content-Length": "13"},
        payload_sha256=digest,
        credentials=Credentials(KEY_ID, SECRET, token),
        region="eu-west-1",
        now=now,
    )
    headers = {k: v for k, v in mine.items() if k != "Authorization"}
    request = AWSRequest(
        method="PUT", url=f"http://s3.example:9000{path}", data=body, headers=headers
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = S3SigV4Auth(BotoCredentials(KEY_ID, SECRET, token), "s3", "eu-west-1")
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    assert mine["Authorization"].endswith(f"Signature={expected}")
    assert (token is not None) == ("x-amz-security-token" in mine)


def test_the_server_verifies_our_signature_and_refuses_a_wrong_one(
    s3: LocalS3, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    iam = boto3.client(
        "iam",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    user = f"writer-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="put",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        f'"Action": "s3:PutObject", "Resource": "arn:aws:s3:::{bucket}/*"}}]}}',
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    path = tmp_path / "f.parquet"
    path.write_bytes(b"content with a signed sha256")

    def put(secret: str, key_name: str) -> int:
        store = S3Store(
            S3Location(bucket, ""),
            endpoint=s3.endpoint,
            region="us-east-1",
            path_style=True,
            credentials=Credentials(key["AccessKeyId"], secret),
        )
        return store.put_file(key_name, str(path))

    with enable_iam_authentication():
        assert put(key["SecretAccessKey"], "node=a b/ok.parquet") == path.stat().st_size
        with pytest.raises(UploadError, match="HTTP 403 SignatureDoesNotMatch"):
            put(key["SecretAccessKey"] + "x", "node=a b/forged.parquet")
    assert s3.objects(bucket) == {"node=a b/ok.parquet": path.read_bytes()}


# --- the writer with uploads ----------------------------------------------------------------


def test_every_file_arrives_across_an_outage_of_the_store(s3: LocalS3, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    core = writer(tmp_path, store_for(s3, bucket))
    ids = Ids()
    core.on_start(0.0)
    now = write_files(core, ids, 3, 1.0)
    poll_until(lambda: core.statistics().counters["uploaded_files"] == 3, 10, what="3 uploads")

    s3.stop()
    now = write_files(core, ids, 4, now)
    poll_until(lambda: core.statistics().counters["upload_failures"] >= 2, 10, what="retries")
    stats = core.statistics()
    assert stats.gauges["upload_failing"] == 1 and "connection refused" in stats.info["upload"]
    assert stats.ready == {"output": True}  # files wait safely: still ready
    assert len(parquet_in(tmp_path)) == 4  # finalised and kept in the spool

    s3.start()
    for _ in range(3):  # and the writer keeps going while the backlog drains
        core.on_timer("sink", now)
        now = write_files(core, ids, 1, now)
    poll_until(lambda: core.statistics().counters["uploaded_files"] == 10, 10, what="the backlog")
    core.on_stop(now)

    objects = s3.objects(bucket)
    assert ids_in_objects(objects) == list(range(ids.next))  # every row, no duplicate
    assert all(k.startswith("occ/node=node-1/date=2023-11-14/") for k in objects)
    assert parquet_in(tmp_path) == []
    stats = core.statistics()
    assert stats.gauges["upload_failing"] == 0 and stats.gauges["upload_queued_files"] == 0
    assert "upload" not in stats.info


def test_a_full_spool_drops_the_oldest_files_during_an_outage(s3: LocalS3, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    probe = writer(tmp_path / "probe", store_for(s3, bucket))  # the size of one such file
    probe.on_start(0.0)
    write_files(probe, Ids(), 1, 0.0)
    poll_until(lambda: probe.statistics().counters["uploaded_files"] == 1, 10)
    probe.on_stop(1.0)
    size = probe.statistics().counters["bytes_written"]

    bucket = s3.new_bucket()
    s3.stop()
    core = writer(tmp_path / "spool", store_for(s3, bucket), max_bytes=int(size * 3.5))
    ids = Ids()
    core.on_start(0.0)
    now = write_files(core, ids, 6, 1.0)
    core.on_timer("sink", now)
    poll_until(lambda: core.statistics().counters["spool_dropped_files"] == 3, 10, what="drops")
    assert len(parquet_in(tmp_path / "spool")) == 3

    s3.start()
    poll_until(lambda: core.statistics().counters["uploaded_files"] == 3, 10, what="uploads")
    core.on_stop(now)
    # The three newest files (rows 150-299) arrived; the oldest three were dropped.
    assert ids_in_objects(s3.objects(bucket)) == list(range(150, 300))
    c = core.statistics().counters
    assert c["files_written"] == 6  # every finalised byte was either uploaded or dropped:
    assert c["uploaded_bytes"] + c["spool_dropped_bytes"] == c["bytes_written"]


def test_a_hanging_store_never_blocks_the_writer(tmp_path: Path) -> None:
    blackhole = socket.create_server(("127.0.0.1", 0), backlog=8)  # accepts, never answers
    try:
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        store = S3Store(
            S3Location("bkt", "occ"),
            endpoint=url,
            region="us-east-1",
            path_style=True,
            credentials=Credentials(KEY_ID, SECRET),
            timeout=1.0,
        )
        core = writer(tmp_path, store)
        core.on_start(0.0)
        ids, now, slowest = Ids(), 1.0, 0.0
        for _ in range(20):
            started = time.monotonic()
            now = write_files(core, ids, 1, now)
            core.on_timer("sink", now)
            core.statistics()
            slowest = max(slowest, time.monotonic() - started)
        poll_until(lambda: core.statistics().counters["upload_failures"] >= 1, 10, what="timeout")
        assert "timed out after 1s" in core.statistics().info["upload"]
        # Each round finalises a Parquet file (fsyncs included) while an upload hangs
        # for a whole second: no round may wait for it.
        assert slowest < 0.5, f"a writer round took {slowest:.3f}s"
        assert len(parquet_in(tmp_path)) == 20
    finally:
        blackhole.close()


@pytest.mark.slow
def test_writer_process_uploads_with_credentials_from_the_environment(
    s3: LocalS3, tmp_path: Path, short_tmp: str
) -> None:
    bucket = s3.new_bucket()
    spool = tmp_path / "spool"
    config = tmp_path / "writer.toml"
    config.write_text(
        f'[pipeline]\nruntime_dir = "{short_tmp}"\n'
        f'[output]\ndir = "s3://{bucket}/metrics/occ"\nspool_dir = "{spool}"\n'
        f's3_endpoint = "{s3.endpoint}"\ns3_path_style = true\nflush_interval = "200ms"\n'
        '[node]\nname = "node-w"\n'
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(endpoint(short_tmp, "occupancy"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.writer", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ids = Ids()
    try:
        push.send(codec.encode(ids.batch(10), src="test", seq=1, ts=time.time()))
        poll_until(lambda: journalled(spool), 15, what="a flush")
        proc.send_signal(signal.SIGUSR1)
        poll_until(lambda: len(s3.objects(bucket)) == 1, 15, what="upload after SIGUSR1")
        push.send(codec.encode(ids.batch(10), src="test", seq=2, ts=time.time()))
        poll_until(lambda: journalled(spool), 15, what="a flush")
        proc.send_signal(signal.SIGTERM)  # finalise, then drain the upload before exiting
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        push.close(0)
    assert proc.returncode == 0, stderr.decode(errors="replace")
    objects = s3.objects(bucket)
    assert ids_in_objects(objects) == list(range(20)) and len(objects) == 2
    assert all(k.startswith("metrics/occ/resctrl-occupancy-node-w-") for k in objects)
    assert parquet_in(spool) == []
