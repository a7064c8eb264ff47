"""Hermetic tests of the harness pieces (no containerd, no root needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

from tests.prerequisites import requires

from . import daemon
from .burst import percentile
from .cgroups import cgroup_mounts, remove_cgroup_tree
from .config import DaemonPaths, render_config
from .cri import pod_cgroup_parent
from .cri_stubs import clean_proto
from .images import build_static, oci_image_tar
from .install import HarnessUnavailable, parse_version

CSRC = Path(__file__).parent / "csrc"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n",
         ("1.7.24~ds1", 1, 7)),
        ("containerd github.com/containerd/containerd/v2 2.1.9+unknown \n",
         ("2.1.9+unknown", 2, 1)),
        ("containerd containerd.io v1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n",
         ("1.7.27", 1, 7)),
    ],
)  # fmt: skip
def test_parse_version(text: str, want: tuple[str, int, int]) -> None:
    assert parse_version(text) == want


def test_parse_version_rejects_text_without_a_version() -> None:
    with pytest.raises(HarnessUnavailable, match="cannot parse"):
        parse_version("containerd github.com/containerd/containerd/v2 dev")


def test_clean_proto_strips_every_gogo_form() -> None:
    text = (
        'syntax = "proto3";\npackage runtime.v1;\n'
        'import "github.com/gogo/protobuf/gogoproto/gogo.proto";\n'
        "option (gogoproto.sizer_all) =  true;\n"
        'option go_package = "k8s.io/cri-api/pkg/apis/runtime/v1";\n'
        "message A { int64 x = 1 [(gogoproto.nullable) = false]; }\n"
    )
    cleaned = clean_proto(text)
    assert "gogo" not in cleaned
    assert 'option go_package = "k8s.io/cri-api/pkg/apis/runtime/v1";' in cleaned
    assert "message A { int64 x = 1; }" in cleaned


def test_clean_proto_refuses_forms_it_does_not_know() -> None:
    with pytest.raises(HarnessUnavailable):
        clean_proto("message A { option (gogoproto.x) = true; int64 y = 1; }")


def test_config_for_containerd_1_7() -> None:
    paths = DaemonPaths().with_nri_socket(Path("/run/test/nri.sock"))
    cfg = tomllib.loads(render_config(2, paths, "localhost/p:1"))
    assert cfg["version"] == 2
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/p:1"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/etc/cni/net.d"}
    nri = cfg["plugins"]["io.containerd.nri.v1.nri"]
    assert nri == {
        "disable": False,
        "socket_path": "/run/test/nri.sock",
        "plugin_registration_timeout": "5s",
        "plugin_request_timeout": "2s",
    }


def test_config_for_containerd_2() -> None:
    cfg = tomllib.loads(render_config(3, DaemonPaths(), "localhost/p:1"))
    assert cfg["version"] == 3
    plugins = cfg["plugins"]
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "localhost/p:1"
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cni"]["bin_dirs"] == ["/usr/lib/cni"]
    assert plugins["io.containerd.nri.v1.nri"]["socket_path"] == "/var/run/nri/nri.sock"
    assert cfg["grpc"]["address"] == "/run/containerd/containerd.sock"


def test_config_rejects_unknown_versions() -> None:
    with pytest.raises(ValueError):
        render_config(1, DaemonPaths(), "x")


def test_oci_image_tar_is_a_consistent_reproducible_layout(tmp_path: Path) -> None:
    ref = oci_image_tar(tmp_path / "a.tar", "localhost/t/img", {"bin": b"\x7fELF..."}, ["/bin"])
    again = oci_image_tar(tmp_path / "b.tar", "localhost/t/img", {"bin": b"\x7fELF..."}, ["/bin"])
    other = oci_image_tar(tmp_path / "c.tar", "localhost/t/img", {"bin": b"changed"}, ["/bin"])
    assert ref == again != other
    assert ref.startswith("localhost/t/img:")
    with tarfile.open(tmp_path / "a.tar") as tar:
        blobs = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    for name, data in blobs.items():
        if name.startswith("blobs/sha256/"):
            assert name.rsplit("/", 1)[1] == hashlib.sha256(data).hexdigest()
    assert json.loads(blobs["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(blobs["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == ref
    manifest = json.loads(blobs[f"blobs/sha256/{entry['digest'][7:]}"])
    assert entry["size"] == len(blobs[f"blobs/sha256/{entry['digest'][7:]}"])
    config = json.loads(blobs[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    (layer_desc,) = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    assert config["config"]["Entrypoint"] == ["/bin"]
    layer = blobs[f"blobs/sha256/{layer_desc['digest'][7:]}"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        (member,) = tar.getmembers()
    assert (member.name, member.mode, member.uid, member.mtime) == ("bin", 0o755, 0, 0)


@pytest.mark.parametrize(
    "rel",
    ["/etc", "/kubepods/../etc", "/kubepods/..", "/kubepods/.x", "kubepods", "/kubepods/a/b/c"],
)
def test_remove_cgroup_tree_refuses_paths_it_did_not_make(rel: str) -> None:
    with pytest.raises(ValueError):
        remove_cgroup_tree(rel)


def test_pod_cgroup_parent_accepts_only_uuids() -> None:
    uid = "6a240171-7180-4a12-ac18-b3e8684a511b"
    assert pod_cgroup_parent(uid) == f"/kubepods/besteffort/pod{uid}"
    for bad in ("../x", "6a240171/7180", uid.upper()):
        with pytest.raises(ValueError):
            pod_cgroup_parent(bad)
    with pytest.raises(ValueError):
        pod_cgroup_parent(uid, "guaranteed/../x")


def test_cgroup_mounts_reads_v1_and_v2_with_escapes(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids\n"
        "31 25 0:27 / /sys/fs/cgroup/un\\040ified rw - cgroup2 cgroup2 rw\n"
        "32 25 0:28 / /proc rw - proc proc rw\n"
    )
    assert cgroup_mounts(info) == [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/un ified")]


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([3.0], 0.99) == 3.0


def test_launch_refuses_to_run_without_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HarnessUnavailable, match="needs root"):
        daemon.launch(tmp_path)


@pytest.mark.slow
@requires("gcc")
def test_workload_runs_the_requested_threads_and_stops_on_sigterm(tmp_path: Path) -> None:
    binary = build_static(CSRC / "workload.c", tmp_path, pthread=True)
    proc = subprocess.Popen(
        [str(binary), "--threads", "3", "--mode", "burn", "--kib", "64"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once every thread was created
        assert line == f"workload: pid {proc.pid} threads 3 mode burn\n"
        assert len(list(Path(f"/proc/{proc.pid}/task").iterdir())) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
    bad = subprocess.run([str(binary), "--mode", "spin"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "mode must be burn or idle" in bad.stderr
