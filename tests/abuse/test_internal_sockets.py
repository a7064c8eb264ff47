"""A foreign process on the internal sockets: malformed, oversized, deeply nested and
wrongly typed msgpack is counted (``decode_errors``) and skipped, the actors keep
running; the runtime directory and its sockets are private; a socket path that belongs
to someone else is refused, not replaced."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile

import msgpack
import pytest
import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.messages import GroupState, OccupancyBatch, PodUp
from resctrl_pipeline.topology import EDGES, endpoint
from tests.abuse.conftest import Witness
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]


def _env(kind: object, body: object, v: object = 1) -> bytes:
    data: bytes = msgpack.packb(
        {"v": v, "kind": kind, "src": "x", "seq": 1, "ts": 0.0, "body": body}, use_bin_type=True
    )
    return data


#: Messages every decoder must refuse (each is one decode error).
UNDECODABLE: list[tuple[str, bytes]] = [
    ("not msgpack", b"\xc1\xc1\xc1garbage"),
    ("empty", b""),
    ("truncated", _env("PodUp", {"uid": "u"})[:-3]),
    ("not a map", msgpack.packb([1, 2, 3])),
    ("wrong version", _env("PodUp", {"uid": "u", "namespace": "", "name": ""}, v=99)),
    ("unknown kind", _env("Bogus", {})),
    ("kind not a string", _env(12, {})),
    ("body not a map", _env("PodUp", [1, 2])),
    ("missing field", _env("PodDown", {})),
    ("wrong field type", _env("PodDown", {"uid": 5})),
    (
        "bool for int",
        _env(
            "GroupState",
            {
                "pod_uid": "u",
                "group_path": None,
                "total_containers": True,
                "reconciled_containers": 0,
            },
        ),
    ),
    ("nested 100k deep", b"\x91" * 100_000 + b"\xc0"),
    ("2 MiB string", _env("PodDown", {"uid": "x" * (2 << 20)})),
    ("4G-entry array announced", b"\xdd\xff\xff\xff\xff"),
    ("4G-entry map announced", b"\xdf\xff\xff\xff\xff"),
    ("4 GiB string announced", b"\xdb\xff\xff\xff\xff" + b"x" * 16),
    ("ext type", msgpack.packb(msgpack.ExtType(5, b"boom"))),
    ("non-string map key", msgpack.packb({1: 2})),
    ("ragged columns", _env("OccupancyBatch", {"columns": {"a": [1], "b": []}})),
]


def _push(runtime_dir: str, edge: str, messages: list[bytes]) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(endpoint(runtime_dir, edge))
    for data in messages:
        sock.send(data)
    sock.close()  # lingers until delivered


def test_foreign_msgpack_is_counted_and_skipped(pipeline: Witness) -> None:
    h = pipeline.h
    rd = h.node.runtime_dir
    consumers = {e.name: e.consumer for e in EDGES.values() if e.consumer != "supervisor"}
    before = {a: h.counter(a, "decode_errors") for a in set(consumers.values())}
    expected = dict.fromkeys(before, 0)
    bad = [data for _, data in UNDECODABLE]
    for edge, actor in consumers.items():
        _push(rd, edge, bad)
        expected[actor] += len(bad)
    # Decodable messages of the wrong kind for the edge, or with rows the writer cannot
    # store: skipped and counted by the core, not decode errors.
    _push(rd, "lifecycle", [codec.encode(GroupState("u", None, 0, 0))])
    _push(
        rd,
        "occupancy",
        [
            codec.encode(PodUp("u", "ns", "n")),
            codec.encode(OccupancyBatch({"llc_occupancy_bytes": ["x"]})),
        ],
    )
    _push(rd, "stats", bad)  # the supervisor's own socket

    def counted() -> bool:
        return all(h.counter(a, "decode_errors") - before[a] >= n for a, n in expected.items())

    poll_until(counted, 20, what="every malformed message counted")
    for actor, n in expected.items():
        assert h.counter(actor, "decode_errors") - before[actor] == n, actor
    poll_until(
        lambda: (
            h.counter("reconciler", "unknown_messages") >= 1
            and h.counter("writer", "unexpected_messages") >= 1
            and any(
                h.counter("writer", k)
                for k in ("rejected_batches_missing_column", "rejected_batches_bad_value")
            )
        ),
        20,
        what="wrong kinds and bad rows counted",
    )
    # Oversized: libzmq drops the sender's connection (ZMQ_MAXMSGSIZE) before any of it
    # is decoded or queued; the actor never sees it.
    _push(rd, "occupancy", [b"\0" * (codec.MAX_MESSAGE_BYTES + 1)])
    assert h.node.status() is not None  # the supervisor still answers
    pipeline.check()
    print(
        f"\nmalformed messages: {len(bad)} kinds x {len(consumers) + 1} sockets, "
        f"decode_errors {expected}"
    )


def test_runtime_dir_and_sockets_are_private(pipeline: Witness) -> None:
    rd = pipeline.h.node.runtime_dir
    st = os.lstat(rd)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()
    names = sorted(os.listdir(rd))
    for edge in EDGES:
        assert f"{edge}.sock" in names
    for name in names:
        est = os.lstat(os.path.join(rd, name))
        assert est.st_uid == os.getuid(), name
        assert stat.S_IMODE(est.st_mode) & 0o077 == 0, (name, oct(est.st_mode))
        if name.endswith(".sock"):
            assert stat.S_ISSOCK(est.st_mode), name


def _up(runtime_dir: str, work: str) -> subprocess.CompletedProcess[str]:
    """``up`` with only the writer (it binds occupancy.sock), against nothing real."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "resctrl_pipeline.cli",
            "up",
            "--runtime-dir",
            runtime_dir,
            "--http-addr",
            "127.0.0.1:0",
            "--output",
            os.path.join(work, "out"),
            "--resctrl-root",
            os.path.join(work, "nothing"),
            "--actors",
            "writer",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("edge", ["occupancy", "stats"])
@pytest.mark.parametrize("kind", ["socket", "file"])
def test_socket_path_of_someone_else_is_refused(edge: str, kind: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rp-a-", dir="/tmp") as work:
        rd = os.path.join(work, "run")
        os.makedirs(rd, mode=0o700)
        path = endpoint(rd, edge)[len("ipc://") :]
        if kind == "socket":
            foreign = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            foreign.bind(path)
            foreign.close()
        else:
            with open(path, "w") as f:
                f.write("not a socket\n")
        os.chown(path, 65534, 65534)  # nobody's
        done = _up(rd, work)
        assert done.returncode == 1, done.stderr[-3000:]
        assert path in done.stderr and "refus" in done.stderr, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert os.lstat(path).st_uid == 65534  # left alone, not replaced


def test_runtime_dir_of_someone_else_is_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="rp-a-", dir="/tmp") as work:
        rd = os.path.join(work, "run")
        os.makedirs(rd, mode=0o700)
        os.chown(rd, 65534, 65534)
        done = _up(rd, work)
        assert done.returncode == 1
        assert "belongs to uid 65534" in done.stderr
        link = os.path.join(work, "link")
        os.symlink(work, link)
        done = _up(link, work)
        assert done.returncode == 1 and "not a directory" in done.stderr
