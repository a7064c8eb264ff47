"""Object storage without a network: keys, spool, back-off, the uploader's policy, wiring.

The uploader runs its real thread here against a fake store, so ordering, the spool
bound and retries are checked without S3; ``test_s3.py`` does the same against a
local S3 server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.writer import build
from resctrl_pipeline.config import Config, load, resolve
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.storage import (
    Backoff,
    KeyScheme,
    S3Location,
    S3Settings,
    S3Store,
    Spool,
    SpooledFile,
    Uploader,
    UploadError,
    region_from,
)
from resctrl_pipeline.writer import WriterCore
from tests.support import poll_until


def spool_file(directory: Path, stamp: str, size: int, token: str = "0badcafe") -> str:
    """A finalised file as the sink names it, for node ``node-1`` and the default prefix."""
    name = f"resctrl-occupancy-node-1-{stamp}-{token}.parquet"
    (directory / name).write_bytes(b"x" * size)
    return name


# --- keys and locations -----------------------------------------------------------------


def test_object_keys_flat_and_hive_partitioned() -> None:
    f = SpooledFile("resctrl-occupancy-n-20250924T145857Z-1a2b3c4d.parquet", 10, "2025-09-24")
    assert KeyScheme("a/b", "none", "n").key(f) == f"a/b/{f.name}"
    assert KeyScheme("", "none", "n").key(f) == f.name
    # The node is untrusted text: it is sanitised exactly as in file names.
    assert KeyScheme("p", "hive", "../etc/x").key(f) == f"p/node=___etc_x/date=2025-09-24/{f.name}"
    with pytest.raises(ValueError):
        KeyScheme("p", "daily", "n")


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://my-bucket", "my-bucket", ""), ("s3://my.bucket/a/b=c/", "my.bucket", "a/b=c")],
)
def test_s3_urls_split_into_bucket_and_prefix(url: str, bucket: str, prefix: str) -> None:
    assert S3Location.parse(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    "url", ["s3://b", "s3://Bucket", "s3://bkt/a/../b", "s3://bkt/a//b", "s3://bkt/a b", "/x"]
)
def test_bad_s3_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        S3Location.parse(url)
    assert err.value.key == "output.dir"


def test_region_comes_from_the_config_then_the_aws_variables() -> None:
    assert region_from("eu-west-1", {"AWS_DEFAULT_REGION": "us-west-2"}) == "eu-west-1"
    assert region_from("", {"AWS_DEFAULT_REGION": "us-west-2"}) == "us-west-2"
    assert region_from("", {}) == "us-east-1"
    with pytest.raises(ConfigError):
        region_from("", {"AWS_DEFAULT_REGION": "eu/west"})


@pytest.mark.parametrize(
    ("settings", "key"),
    [(S3Settings(endpoint="ftp://h"), "output.s3_endpoint"),
     (S3Settings(proxy="http://no-port"), "output.s3_proxy"),
     (S3Settings(ca_bundle="/nonexistent/ca.pem"), "output.s3_ca_bundle")],
)  # fmt: skip
def test_unusable_s3_settings_name_their_key(settings: S3Settings, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        S3Store(S3Location("bkt", ""), settings)
    assert err.value.key == key


def test_new_output_keys_parse_from_file_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[output]\ndir = "s3://bkt/p"\nspool_max_bytes = "64MiB"\npartitioning = "hive"\n'
        's3_path_style = true\ns3_proxy = "http://proxy.example:3128"\ns3_max_attempts = 5\n'
    )
    cfg = resolve(
        load(
            toml,
            environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-central-1"},
        )
    )
    assert (cfg.spool_max_bytes, cfg.partitioning, cfg.s3_path_style) == (64 << 20, "hive", True)
    assert (cfg.s3_endpoint, cfg.s3_region) == ("http://127.0.0.1:9000", "eu-central-1")
    assert (cfg.s3_proxy, cfg.s3_max_attempts, cfg.s3_ca_bundle) == (
        "http://proxy.example:3128", 5, "")
    assert resolve(load(toml, environ={"AWS_CA_BUNDLE": "/etc/ca.pem"})).s3_ca_bundle == (
        "/etc/ca.pem")
    for env, value in [
        ("AWS_ENDPOINT_URL", "ftp://x"),
        ("AWS_ENDPOINT_URL", "http://h/path"),
        ("AWS_REGION", "eu west"),
        ("AWS_CA_BUNDLE", "relative.pem"),
    ]:
        with pytest.raises(ConfigError):
            resolve(load(toml, environ={env: value}))
    with pytest.raises(ConfigError, match="s3_path_style"):
        resolve(load(None, environ={}, overrides={"output.s3_path_style": "maybe"}))


# --- wiring in the writer process -------------------------------------------------------


def _cfg(tmp_path: Path, **overrides: object) -> Config:
    base = {"output.spool_dir": str(tmp_path / "spool"), "node.name": "node-1"}
    return resolve(load(None, environ={}, overrides={**base, **overrides}))


def test_writer_build_wires_the_uploader_only_for_s3(tmp_path: Path) -> None:
    local = build(_cfg(tmp_path, **{"output.dir": str(tmp_path / "out")}), environ={})
    assert isinstance(local, WriterCore) and local.uploader is None
    s3 = build(
        _cfg(tmp_path, **{"output.dir": "s3://bkt/x", "output.partitioning": "hive"}),
        environ={},
    )
    assert isinstance(s3, WriterCore) and s3.uploader is not None
    assert s3.uploader.spool.directory == str(tmp_path / "spool")
    assert s3.uploader.keys == KeyScheme("x", "hive", "node-1")
    # Large files go up in parts now: 5 GiB is fine, 100 GiB is beyond 10,000 parts.
    build(_cfg(tmp_path, **{"output.dir": "s3://bkt/x", "output.max_file_bytes": "5GiB"}),
          environ={})  # fmt: skip
    with pytest.raises(ConfigError, match="max_file_bytes"):
        build(
            _cfg(tmp_path, **{"output.dir": "s3://bkt/x", "output.max_file_bytes": "100GiB"}),
            environ={},
        )
    with pytest.raises(ConfigError, match="s3:// output only"):
        build(_cfg(tmp_path, **{"output.partitioning": "hive"}), environ={})


# --- spool --------------------------------------------------------------------------------


def test_spool_lists_only_this_writers_final_files_oldest_first(tmp_path: Path) -> None:
    newer = spool_file(tmp_path, "20250924T150000Z", 5)
    older = spool_file(tmp_path, "20250923T235959Z", 7)
    (tmp_path / f".{older}.journal").write_bytes(b"j")  # the sink's file in progress
    (tmp_path / "resctrl-occupancy-node-2-20250924T150000Z-0badcafe.parquet").write_bytes(b"o")
    (tmp_path / "notes.parquet").write_bytes(b"n")
    secret = tmp_path / "secret"
    secret.write_bytes(b"s")
    # A symlink with a valid name must not smuggle another file into the bucket.
    os.symlink(secret, tmp_path / "resctrl-occupancy-node-1-20250924T160000Z-00000000.parquet")
    spool = Spool(str(tmp_path), "resctrl-occupancy-", "node-1")
    assert spool.pending() == [
        SpooledFile(older, 7, "2025-09-23"),
        SpooledFile(newer, 5, "2025-09-24"),
    ]


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    b = Backoff(initial=1.0, maximum=5.0, jitter=0.0)
    assert b.due(0.0)
    assert [b.failed(0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not b.due(4.9) and b.due(5.0)
    b.succeeded()
    assert b.due(0.0) and b.failed(10.0) == 1.0
    jittered = Backoff(initial=10.0, maximum=10.0, jitter=0.2, rng=lambda: 1.0)
    assert jittered.failed(0.0) == pytest.approx(12.0)


# --- the uploader's policy, with a fake store ---------------------------------------------


class FakeStore:
    """Records uploads; ``fail`` makes every attempt fail; ``gate`` can hold one."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.attempts = 0
        self.fail = False
        self.bug = False
        self.gate = threading.Event()
        self.gate.set()

    def put_file(self, key: str, path: str) -> int:
        self.gate.wait(10)
        self.attempts += 1
        if self.bug:
            raise RuntimeError("a bug in the store")
        if self.fail:
            raise UploadError("connection refused")
        with open(path, "rb") as f:
            self.objects[key] = f.read()
        return len(self.objects[key])

    def describe(self, key: str) -> str:
        return f"fake://{key}"


@pytest.fixture
def store() -> Iterator[FakeStore]:
    s = FakeStore()
    yield s
    s.gate.set()


def _uploader(spool_dir: Path, store: FakeStore, max_bytes: int = 1 << 20) -> Uploader:
    return Uploader(
        Spool(str(spool_dir), "resctrl-occupancy-", "node-1"),
        store,
        KeyScheme("pre", "none", "node-1"),
        max_spool_bytes=max_bytes,
        backoff=Backoff(initial=0.02, maximum=0.05),
        rescan_interval=0.05,
        drain_timeout=2.0,
    )


def test_uploads_in_order_and_removes_local_copies(tmp_path: Path, store: FakeStore) -> None:
    names = [spool_file(tmp_path, f"2025092{i}T000000Z", 10 + i) for i in range(3)]
    up = _uploader(tmp_path, store)
    up.start()
    poll_until(lambda: up.statistics().uploaded_files == 3, 5, what="three uploads")
    up.close()
    assert list(store.objects) == [f"pre/{n}" for n in names]
    assert sorted(os.listdir(tmp_path)) == []
    s = up.statistics()
    assert (s.uploaded_bytes, s.queued_files, s.upload_failures, s.failing) == (33, 0, 0, False)


def test_failures_keep_files_and_retry_until_the_store_works(
    tmp_path: Path, store: FakeStore
) -> None:
    store.fail = True
    name = spool_file(tmp_path, "20250924T000000Z", 10)
    up = _uploader(tmp_path, store)
    up.start()
    poll_until(lambda: up.statistics().upload_failures >= 3, 5, what="retries with back-off")
    s = up.statistics()
    assert s.failing and s.queued_files == 1 and "connection refused" in s.last_error
    assert os.listdir(tmp_path) == [name]
    store.fail = False
    poll_until(lambda: up.statistics().uploaded_files == 1, 5, what="the upload after recovery")
    assert not up.statistics().failing and os.listdir(tmp_path) == []
    up.close()


def test_an_unexpected_error_does_not_end_the_uploads(tmp_path: Path, store: FakeStore) -> None:
    store.bug = True
    name = spool_file(tmp_path, "20250924T000000Z", 10)
    up = _uploader(tmp_path, store)
    up.start()
    poll_until(lambda: up.statistics().upload_failures >= 1, 5, what="the failed pass")
    assert up.statistics().failing and os.listdir(tmp_path) == [name]
    store.bug = False
    poll_until(lambda: up.statistics().uploaded_files == 1, 5, what="the next pass")
    up.close()


def test_spool_bound_drops_the_oldest_and_keeps_the_newest(
    tmp_path: Path, store: FakeStore
) -> None:
    store.fail = True
    names = [spool_file(tmp_path, f"2025092{i}T000000Z", 100) for i in range(5)]
    up = _uploader(tmp_path, store, max_bytes=250)
    up.start()
    poll_until(lambda: up.statistics().spool_dropped_files == 3, 5, what="the bound")
    assert sorted(os.listdir(tmp_path)) == names[3:]
    s = up.statistics()
    assert (s.spool_dropped_bytes, s.queued_files, s.queued_bytes) == (300, 2, 200)
    # A single file above the bound is still kept: the newest is never dropped.
    store.fail = False
    poll_until(lambda: up.statistics().uploaded_files == 2, 5, what="the uploads")
    big = spool_file(tmp_path, "20250930T000000Z", 1000)
    up.wake()
    poll_until(lambda: f"pre/{big}" in store.objects, 5, what="the oversized file's upload")
    assert up.statistics().spool_dropped_files == 3
    up.close()


def test_close_drains_what_is_left_within_its_timeout(tmp_path: Path, store: FakeStore) -> None:
    first = spool_file(tmp_path, "20250924T000000Z", 10)
    up = Uploader(
        Spool(str(tmp_path), "resctrl-occupancy-", "node-1"),
        store,
        KeyScheme("", "none", "node-1"),
        max_spool_bytes=1 << 20,
        rescan_interval=600,
    )
    up.start()  # the first pass takes what is there at start
    poll_until(lambda: first in store.objects, 5, what="the first pass")
    last = spool_file(tmp_path, "20250924T010000Z", 10)
    up.close()  # no wake() and no rescan for 600 s: only the drain can upload it
    assert last in store.objects and os.listdir(tmp_path) == []


def test_close_gives_up_on_a_hanging_upload_and_keeps_the_file(
    tmp_path: Path, store: FakeStore
) -> None:
    store.gate.clear()  # the store never answers
    name = spool_file(tmp_path, "20250924T000000Z", 10)
    up = Uploader(
        Spool(str(tmp_path), "resctrl-occupancy-", "node-1"),
        store,
        KeyScheme("", "none", "node-1"),
        max_spool_bytes=1 << 20,
        drain_timeout=0.2,
    )
    up.start()
    poll_until(lambda: up.statistics().queued_files == 1, 5, what="the hanging upload")
    up.close()  # returns after drain_timeout although the upload still hangs
    assert os.listdir(tmp_path) == [name] and store.objects == {}


# --- addressing ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_sink_does_not_import_object_storage() -> None:
    """Layering: storage builds on the sink's file names, never the other way round."""
    import subprocess
    import sys

    code = (
        "import sys, resctrl_pipeline.sink, resctrl_pipeline.sink.parquet; "
        "print(sorted(m for m in sys.modules if m.startswith('resctrl_pipeline.storage')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
