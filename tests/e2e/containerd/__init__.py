"""A real containerd with NRI for end-to-end tests.

Install once with ``scripts/containerd-setup.sh [1.7|2.x]`` (root, Debian). Then:

* :func:`~.daemon.launch` builds the CRI stubs and the test images (cached), writes a
  config with NRI on, starts containerd, imports the images and returns a
  :class:`~.daemon.Containerd`; :meth:`~.daemon.Containerd.teardown` removes everything
  again.
* :class:`~.cri.CriClient` runs host-network pods with kubelet-like cgroup parents and
  workload containers (``csrc/workload.c``: N threads, burning or idle).
* :mod:`.nri_probe` points our NRI plugin stack at the daemon; :mod:`.burst` measures
  the listener's answer latency under a burst of pods.

``python -m tests.e2e.containerd`` prints the harness timings (start, one pod
lifecycle, a 50-pod burst).
"""

from .cri import HARNESS_LABEL, CriClient, CriError, Pod
from .daemon import Containerd, StartFailed, launch
from .install import HarnessUnavailable, Installation

__all__ = [
    "HARNESS_LABEL",
    "Containerd",
    "CriClient",
    "CriError",
    "HarnessUnavailable",
    "Installation",
    "Pod",
    "StartFailed",
    "launch",
]
