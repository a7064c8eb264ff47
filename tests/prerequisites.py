"""What a test needs from the machine, and the one switch that decides what a missing
prerequisite does to the run.

Outside CI a test whose prerequisite is missing SKIPS with the reason, and the run ends
with a count of the skips by reason (``tests/conftest.py``). With
``RESCTRL_REQUIRE_ALL=1`` (``.ci/run`` sets it when it runs as root) it FAILS with the
same reason instead, and so does any other skip: a CI machine that lost FUSE, root or
containerd cannot go green by skipping.

Three ways to say what a test needs:

* ``@requires("fuse")`` (or ``pytestmark = requires("fuse")``): checked before the
  test's set-up, for prerequisites known up front (names in :data:`CHECKS`);
* ``need("root")`` inside a fixture or test, where the need depends on the path taken;
* ``unavailable(reason)`` for one found while setting up (a mount refused, a daemon
  that would not start).

:func:`missing` gives the reason without deciding anything, for modules that import
FUSE-backed code only when it can load.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from typing import NoReturn

import pytest

from resctrl_pipeline.demo import missing_prerequisites

REQUIRE_ENV = "RESCTRL_REQUIRE_ALL"
#: Marks the reason of a skip or failure caused by a missing prerequisite (the run's
#: summary counts them by what follows).
PREFIX = "prerequisite missing: "


def require_all() -> bool:
    """Whether skips are failures in this run (``$RESCTRL_REQUIRE_ALL`` is 1)."""
    return os.environ.get(REQUIRE_ENV) == "1"


def _root() -> str:
    return "" if os.geteuid() == 0 else "needs root"


def _fuse() -> str:
    # The emulated resctrl and NRI runtime mount FUSE filesystems: root, /dev/fuse,
    # fusermount3, libfuse3 and mfusepy (the demo's own check says how to get each).
    if os.geteuid() != 0:
        return "needs root and FUSE: not root"
    problems = missing_prerequisites()
    return "needs root and FUSE: " + "; ".join(problems) if problems else ""


def _gcc() -> str:
    return "" if shutil.which("gcc") else "gcc is not installed (apt-get install gcc libc6-dev)"


def kustomize_command() -> list[str] | None:
    """The command that renders a kustomization: ``kustomize build``, else kubectl's
    built-in ``kubectl kustomize``; None when neither is installed."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def _kustomize() -> str:
    if kustomize_command() is None:
        return "neither kustomize nor kubectl (which has kustomize built in) is installed"
    return ""


def _prometheus() -> str:
    # The metrics tests run a real Prometheus server and lint with its promtool.
    if shutil.which("prometheus") and shutil.which("promtool"):
        return ""
    return "prometheus/promtool not installed (scripts/setup.sh --dev as root installs them)"


#: Every prerequisite ``requires``/``need`` accept, with its check ("" = present).
CHECKS: dict[str, Callable[[], str]] = {
    "root": _root,
    "fuse": _fuse,
    "gcc": _gcc,
    "kustomize": _kustomize,
    "prometheus": _prometheus,
}


@functools.cache
def missing(name: str) -> str:
    """Why prerequisite ``name`` is missing here, or "" when it is present."""
    return CHECKS[name]()


def requires(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or a module, as ``pytestmark``) as needing ``names``; the conftest
    skips it, or fails it under ``$RESCTRL_REQUIRE_ALL``, before its set-up."""
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown prerequisite(s) {unknown}; known: {sorted(CHECKS)}")
    return pytest.mark.requires(*names)


def need(*names: str) -> None:
    """Skip (or fail) the running test unless every prerequisite in ``names`` is present."""
    for name in names:
        why = missing(name)
        if why:
            unavailable(why)


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it when ``$RESCTRL_REQUIRE_ALL`` is 1."""
    if require_all():
        pytest.fail(f"{PREFIX}{reason} ({REQUIRE_ENV}=1 makes this a failure)", pytrace=False)
    pytest.skip(PREFIX + reason)
