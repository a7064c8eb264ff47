"""What is installed: the containerd binaries, their version, and the harness cache.

The installation itself is ``scripts/containerd-setup.sh``; this module only looks.
Everything that is missing raises :class:`HarnessUnavailable` whose message is a skip
reason a person can act on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE",
    "SETUP_HINT",
    "HarnessUnavailable",
    "Installation",
    "cache_dir",
    "find_installation",
]

CACHE_ENV: Final = "RESCTRL_E2E_CACHE"
"""Environment variable naming the cache directory (shared with the setup script)."""

DEFAULT_CACHE: Final = Path("/var/cache/resctrl-pipeline/e2e")

SETUP_HINT: Final = "run `scripts/containerd-setup.sh 1.7` (or `2.x`) as root first"

_PROTO_IN_CACHE: Final = Path("cri-api/api.proto")
_VERSION = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)\S*")


class HarnessUnavailable(Exception):
    """The real-containerd harness cannot run here; ``str(err)`` says why and what to do."""


@dataclass(frozen=True, slots=True)
class Installation:
    """The binaries and files the harness uses.

    Attributes:
        containerd, ctr, runc: absolute paths of the executables.
        version: containerd's own version string (``1.7.24~ds1``, ``2.1.9+unknown``).
        major, minor: parsed from ``version``.
        cache: the harness cache directory (stubs, images, compiled binaries).
        cri_proto: the CRI ``api.proto`` the setup script extracted.
    """

    containerd: Path
    ctr: Path
    runc: Path
    version: str
    major: int
    minor: int
    cache: Path
    cri_proto: Path

    @property
    def generation(self) -> str:
        """``"1.7"`` or ``"2.x"``: which configuration format and NRI generation."""
        return "1.7" if self.major == 1 else "2.x"

    @property
    def config_version(self) -> int:
        """The ``version`` of containerd's config file: 2 for 1.7, 3 for 2.x."""
        return 2 if self.major == 1 else 3


def cache_dir() -> Path:
    """The cache directory: ``$RESCTRL_E2E_CACHE`` or :data:`DEFAULT_CACHE`.

    Raises:
        HarnessUnavailable: the variable is set to something that is not absolute.
    """
    raw = os.environ.get(CACHE_ENV)
    if not raw:
        return DEFAULT_CACHE
    path = Path(raw)
    if not path.is_absolute():
        raise HarnessUnavailable(f"{CACHE_ENV}={raw!r} must be an absolute path")
    return path


def _which(name: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise HarnessUnavailable(f"`{name}` is not installed: {SETUP_HINT}")
    return Path(found)


def parse_version(text: str) -> tuple[str, int, int]:
    """Parse ``containerd --version`` output into (version string, major, minor).

    Raises:
        HarnessUnavailable: no version number in ``text``.
    """
    tokens = text.split()
    # "containerd github.com/containerd/containerd[/v2] 1.7.24~ds1 <revision>"
    for token in tokens[1:]:
        match = _VERSION.fullmatch(token)
        if match:
            return token.lstrip("v"), int(match.group(1)), int(match.group(2))
    raise HarnessUnavailable(f"cannot parse a version from `containerd --version`: {text!r}")


def find_installation() -> Installation:
    """Locate containerd ≥ 1.7, ctr, runc, the CNI plugins and the cached CRI proto.

    Raises:
        HarnessUnavailable: anything missing or too old, with the fix in the message.
    """
    containerd, ctr, runc = _which("containerd"), _which("ctr"), _which("runc")
    try:
        out = subprocess.run(
            [str(containerd), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise HarnessUnavailable(f"`{containerd} --version` failed: {err}") from err
    version, major, minor = parse_version(out)
    if (major, minor) < (1, 7):
        raise HarnessUnavailable(
            f"containerd {version} has no NRI (1.7 or later needed): {SETUP_HINT}"
        )
    cache = cache_dir()
    proto = cache / _PROTO_IN_CACHE
    if not proto.is_file():
        raise HarnessUnavailable(f"the CRI api.proto is not in {proto}: {SETUP_HINT}")
    return Installation(containerd, ctr, runc, version, major, minor, cache, proto)
