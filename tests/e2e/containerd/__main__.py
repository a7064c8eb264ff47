"""Measure the harness: containerd start, one pod lifecycle, a burst of pods.

Usage (root, after scripts/containerd-setup.sh):
    .venv/bin/python -m tests.e2e.containerd [--pods 50] [--workers 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .burst import run_burst
from .daemon import launch
from .install import HarnessUnavailable


def main(argv: list[str] | None = None) -> int:
    """Print the timings; exit 1 (with the reason) when the harness cannot run."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.containerd")
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rp-containerd-") as tmp:
        began = time.monotonic()
        try:
            daemon = launch(Path(tmp))
        except HarnessUnavailable as err:
            print(f"cannot run: {err}", file=sys.stderr)
            return 1
        try:
            print(
                f"containerd {daemon.installation.version}: launch (stubs, images, start, "
                f"import) {time.monotonic() - began:.2f} s, daemon start "
                f"{daemon.start_seconds[-1]:.2f} s"
            )
            print(f"restart: {daemon.restart():.2f} s")
            with daemon.client() as cri:
                began = time.monotonic()
                pod = cri.run_pod("lifecycle")
                cid = cri.run_container(pod, "work", daemon.images.workload)
                cri.stop_container(cid)
                cri.remove_container(cid)
                cri.remove_pod(pod.id)
                print(
                    f"one pod lifecycle (run, create, start, stop, remove): "
                    f"{time.monotonic() - began:.2f} s"
                )
            print(run_burst(daemon, args.pods, args.workers).summary())
        finally:
            problems = daemon.teardown()
            if problems:
                print("teardown: " + "; ".join(problems), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
