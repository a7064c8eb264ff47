"""Container images without a registry: static C binaries in OCI image-layout tars.

Two images: a sandbox ("pause") image and a workload image whose entrypoint is
``/workload`` (``csrc/workload.c``: N threads that burn CPU over a buffer or idle,
chosen by argv or environment). Both binaries are built with ``gcc -static``; each
image is one uncompressed layer. Builds are cached by content in the harness cache and
image names carry a digest of their layer, so a changed source gives a new name and
an unchanged one is never imported twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .install import HarnessUnavailable

__all__ = [
    "IMAGE_REPO",
    "Images",
    "build_images",
    "build_static",
    "import_images",
    "oci_image_tar",
]

IMAGE_REPO: Final = "localhost/resctrl-e2e"
_CSRC: Final = Path(__file__).parent / "csrc"
_ARCH: Final = {"x86_64": "amd64", "aarch64": "arm64"}
_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True, slots=True)
class Images:
    """Image references (as CRI and ctr name them) and their OCI archives."""

    pause: str
    workload: str
    pause_tar: Path
    workload_tar: Path


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_static(source: Path, out_dir: Path, *, pthread: bool = False) -> Path:
    """Compile ``source`` with ``gcc -static -O2``; cached by source text and gcc version.

    Raises:
        HarnessUnavailable: gcc or the static libc is missing, or compilation failed.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise HarnessUnavailable("gcc is not installed (needed to build the test images)")
    gcc_version = subprocess.run(
        [gcc, "-dumpfullversion"], capture_output=True, text=True, check=False
    ).stdout.strip()
    key = hashlib.sha256(f"{gcc_version}\0{pthread}\0".encode() + source.read_bytes())
    binary = out_dir / f"{source.stem}-{key.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(binary.name + ".tmp")
    cmd = [gcc, "-static", "-O2", "-Wall", "-o", str(tmp), str(source)]
    if pthread:
        cmd.insert(1, "-pthread")
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessUnavailable(
            f"gcc -static failed for {source.name} (is libc6-dev installed?): {proc.stderr}"
        )
    tmp.rename(binary)
    return binary


def _layer(files: Mapping[str, bytes]) -> bytes:
    """A reproducible layer tar: root-owned, mtime 0, every file mode 0755."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_image_tar(
    dest: Path, repo: str, files: Mapping[str, bytes], entrypoint: Sequence[str]
) -> str:
    """Write an OCI image-layout tar holding one image made of ``files``.

    The tag is the first 12 hex digits of the layer digest, so equal content gives an
    equal name. ``index.json`` carries the ``io.containerd.image.name`` annotation that
    ``ctr images import`` names the image by. Returns the full image reference.

    Raises:
        HarnessUnavailable: this machine's architecture has no OCI name here.
    """
    arch = _ARCH.get(platform.machine())
    if arch is None:
        raise HarnessUnavailable(f"no OCI architecture name for {platform.machine()}")
    layer = _layer(files)
    layer_digest = _sha256(layer)
    ref = f"{repo}:{layer_digest[7:19]}"
    config = _json(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Entrypoint": list(entrypoint), "Env": ["PATH=/"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": {"mediaType": _CONFIG, "digest": _sha256(config), "size": len(config)},
            "layers": [{"mediaType": _LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    )
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": _MANIFEST,
                    "digest": _sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                    },
                }
            ],
        }
    )
    entries = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        **{f"blobs/sha256/{_sha256(b)[7:]}": b for b in (layer, config, manifest)},
    }
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(dest)
    return ref


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_images(cache: Path) -> Images:
    """Build both binaries and both image archives under ``cache`` (cached)."""
    bin_dir, img_dir = cache / "bin", cache / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    pause = build_static(_CSRC / "pause.c", bin_dir)
    workload = build_static(_CSRC / "workload.c", bin_dir, pthread=True)
    pause_tar, workload_tar = img_dir / f"{pause.name}.tar", img_dir / f"{workload.name}.tar"
    pause_ref = oci_image_tar(
        pause_tar, f"{IMAGE_REPO}/pause", {"pause": pause.read_bytes()}, ["/pause"]
    )
    workload_ref = oci_image_tar(
        workload_tar, f"{IMAGE_REPO}/workload", {"workload": workload.read_bytes()}, ["/workload"]
    )
    return Images(pause_ref, workload_ref, pause_tar, workload_tar)


def import_images(ctr: Path, address: str, images: Images) -> None:
    """Import every image that containerd's ``k8s.io`` namespace does not have yet.

    Raises:
        RuntimeError: ``ctr`` failed (its output is in the message).
    """
    base = [str(ctr), "--address", address, "--namespace", "k8s.io"]
    listed = _ctr([*base, "images", "list", "--quiet"]).split()
    for ref, tar in ((images.pause, images.pause_tar), (images.workload, images.workload_tar)):
        if ref not in listed:
            _ctr([*base, "images", "import", str(tar)])


def _ctr(cmd: list[str]) -> str:
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout
