"""Fixtures for end-to-end tests against a real containerd with NRI.

* ``containerd`` (session): one daemon started by the harness (``tests/e2e/containerd``)
  and torn down after the session: pods removed, daemon stopped, mounts, shims and
  cgroups cleaned.
* ``cri`` (function): a CRI client; ``pods`` (function): starts pods and removes them
  after the test, whatever its outcome.

Tests that use them SKIP, with the reason, when not root, when containerd is not
installed (the reason says to run ``scripts/containerd-setup.sh``), or when it cannot
start (the reason ends with its log). With ``RESCTRL_REQUIRE_ALL=1`` (CI as root) every
such skip is a failure instead: nothing passes silently (``tests/prerequisites.py``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import suppress

import pytest

from tests.e2e.containerd.cri import CriClient, CriError, Pod
from tests.e2e.containerd.daemon import Containerd, launch
from tests.e2e.containerd.install import HarnessUnavailable
from tests.prerequisites import unavailable

#: The containerd generation the run must use ("1.7" or "2.x"), when set (.ci/run).
CONTAINERD_ENV = "RESCTRL_E2E_CONTAINERD"


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A running containerd with NRI on its default socket and the test images."""
    workdir = tmp_path_factory.mktemp("containerd")
    try:
        daemon = launch(workdir)
    except HarnessUnavailable as err:
        unavailable(f"real-containerd e2e tests: {err}")
    # CI runs this suite once per containerd generation and says which one it installed:
    # a run on the wrong one must not pass for the other.
    want = os.environ.get(CONTAINERD_ENV)
    if want and str(daemon.installation.major) != want.split(".")[0]:
        daemon.teardown()
        pytest.fail(
            f"${CONTAINERD_ENV}={want} but containerd {daemon.installation.version} is "
            "installed (scripts/containerd-setup.sh installs one)",
            pytrace=False,
        )
    try:
        yield daemon
    finally:
        problems = daemon.teardown()
        if problems:
            warnings.warn("containerd teardown: " + "; ".join(problems), stacklevel=1)


@pytest.fixture
def cri(containerd: Containerd) -> Iterator[CriClient]:
    """A CRI client for this test."""
    with containerd.client() as client:
        yield client


class PodFactory:
    """Starts harness pods (each with workload containers) and removes them at the end.

    Args:
        cri: the client to use.
        workload_image: the image of :meth:`run`'s containers.
    """

    def __init__(self, cri: CriClient, workload_image: str) -> None:
        self.cri = cri
        self.workload_image = workload_image
        self.pods: list[Pod] = []

    def run(
        self, name: str, namespace: str = "e2e", containers: Sequence[Sequence[str]] = ()
    ) -> tuple[Pod, list[str]]:
        """A pod with one started workload container per argv in ``containers``;
        returns the pod and the container ids."""
        pod = self.cri.run_pod(name, namespace)
        self.pods.append(pod)
        ids = [
            self.cri.run_container(pod, f"c{i}", self.workload_image, argv)
            for i, argv in enumerate(containers)
        ]
        return pod, ids

    def remove_all(self) -> None:
        """Remove every pod this factory started (ignoring ones already gone)."""
        for pod in self.pods:
            with suppress(CriError):
                self.cri.remove_pod(pod.id)
        self.pods.clear()


@pytest.fixture
def pods(cri: CriClient, containerd: Containerd) -> Iterator[PodFactory]:
    """Start pods for one test; they are removed after it."""
    factory = PodFactory(cri, containerd.images.workload)
    try:
        yield factory
    finally:
        if containerd.pid is not None:
            factory.remove_all()
