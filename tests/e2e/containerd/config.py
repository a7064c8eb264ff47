"""containerd configuration for the harness: CRI with a local sandbox image, NRI on.

Two formats: containerd 1.7 reads ``version = 2`` (CRI settings under
``io.containerd.grpc.v1.cri``), containerd 2.x reads ``version = 3`` (split into
``io.containerd.cri.v1.images`` and ``io.containerd.cri.v1.runtime``). Both enable the
NRI plugin on :attr:`DaemonPaths.nri_socket` and set ``restrict_oom_score_adj`` (these
machines lack CAP_SYS_RESOURCE: without it runc fails with "can't get final child's
PID from pipe"). The CNI directories are set but no network is configured: the harness
only runs host-network pods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_NRI_SOCKET", "DaemonPaths", "render_config"]

DEFAULT_NRI_SOCKET: Final = "/var/run/nri/nri.sock"


@dataclass(frozen=True, slots=True)
class DaemonPaths:
    """Where the daemon keeps its state and listens.

    Attributes:
        root: persistent state (images, snapshots).
        state: runtime state (sockets, task bundles, sandbox mounts).
        address: the containerd gRPC socket (CRI is served on it).
        nri_socket: the NRI socket plugins connect to.
        cni_bin_dir, cni_conf_dir: CNI directories (unused by host-network pods).
    """

    root: Path = Path("/var/lib/containerd")
    state: Path = Path("/run/containerd")
    address: Path = Path("/run/containerd/containerd.sock")
    nri_socket: Path = Path(DEFAULT_NRI_SOCKET)
    cni_bin_dir: Path = Path("/usr/lib/cni")
    cni_conf_dir: Path = Path("/etc/cni/net.d")

    def with_nri_socket(self, path: Path) -> DaemonPaths:
        """A copy listening for NRI plugins on ``path``."""
        return replace(self, nri_socket=path)


def _q(value: object) -> str:
    # A JSON string literal is a valid TOML basic string for the paths used here.
    return json.dumps(str(value))


def render_config(
    config_version: int,
    paths: DaemonPaths,
    sandbox_image: str,
    *,
    registration_timeout: str = "5s",
    request_timeout: str = "2s",
) -> str:
    """The text of containerd's config file.

    Args:
        config_version: 2 (containerd 1.7) or 3 (containerd 2.x).
        paths: state directories and sockets.
        sandbox_image: the pinned, locally imported pause image.
        registration_timeout, request_timeout: NRI plugin timeouts (containerd's
            defaults are 5s and 2s).

    Raises:
        ValueError: an unsupported ``config_version``.
    """
    head = (
        f"version = {config_version}\n"
        f"root = {_q(paths.root)}\n"
        f"state = {_q(paths.state)}\n\n"
        f"[grpc]\n  address = {_q(paths.address)}\n\n"
        f"[ttrpc]\n  address = {_q(str(paths.address) + '.ttrpc')}\n\n"
    )
    nri_name = '"io.containerd.nri.v1.nri"'
    if config_version == 2:
        cri = '"io.containerd.grpc.v1.cri"'
        body = (
            f"[plugins.{cri}]\n"
            f"  sandbox_image = {_q(sandbox_image)}\n"
            "  restrict_oom_score_adj = true\n"
            f"  [plugins.{cri}.cni]\n"
            f"    bin_dir = {_q(paths.cni_bin_dir)}\n"
            f"    conf_dir = {_q(paths.cni_conf_dir)}\n\n"
        )
    elif config_version == 3:
        images, runtime = '"io.containerd.cri.v1.images"', '"io.containerd.cri.v1.runtime"'
        body = (
            f"[plugins.{images}.pinned_images]\n"
            f"  sandbox = {_q(sandbox_image)}\n\n"
            f"[plugins.{runtime}]\n"
            "  restrict_oom_score_adj = true\n"
            f"  [plugins.{runtime}.cni]\n"
            f"    bin_dirs = [{_q(paths.cni_bin_dir)}]\n"
            f"    conf_dir = {_q(paths.cni_conf_dir)}\n\n"
        )
    else:
        raise ValueError(f"unsupported containerd config version {config_version}")
    nri = (
        f"[plugins.{nri_name}]\n"
        "  disable = false\n"
        f"  socket_path = {_q(paths.nri_socket)}\n"
        f"  plugin_registration_timeout = {_q(registration_timeout)}\n"
        f"  plugin_request_timeout = {_q(request_timeout)}\n"
    )
    return head + body + nri
