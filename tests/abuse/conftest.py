"""One running pipeline per abuse module, shared by its tests.

Every abuse test throws hostile input at the running ``up`` and then checks, through
:meth:`Witness.check`, that nothing crashed or restarted and that the witness pods
(started before any abuse) are still sampled.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.harness import FaultHarness
from tests.prerequisites import need
from tests.support import poll_until


@dataclass
class Witness:
    """The shared pipeline and its witness pods."""

    h: FaultHarness
    pods: list[Any]
    pids: dict[str, int]

    def check(self) -> None:
        """No actor crashed or was restarted; every witness pod is still sampled."""
        h = self.h
        assert h.node.up is not None and h.node.up.poll() is None, h.log_text()[-4000:]
        text = h.log_text()
        crash = text[text.find("Traceback") :][:6000] if "Traceback" in text else ""
        crash += "\n".join(line for line in text.splitlines() if "exited with" in line)
        assert {a: h.pid(a) for a in self.pids} == self.pids, f"an actor restarted\n{crash}"
        assert not crash, crash
        mark = time.time_ns()
        want = {p.uid for p in self.pods}
        poll_until(
            lambda: (
                want
                <= {r["pod_uid"] for r in h.rotate_and_rows() if int(r["start_timestamp"]) > mark}
            ),
            30,
            what="rows of the witness pods",
        )


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Witness]:
    """``up`` against an emulated node, ready, with two witness pods monitored."""
    need("fuse")
    work = tempfile.mkdtemp(prefix="rp-a-", dir="/tmp")
    h = FaultHarness(work)
    try:
        h.start()
        h.wait_ready()
        pods = h.sleep_pods(2, namespace="witness")
        h.wait_groups(pods)
        yield Witness(
            h, pods, {a: h.pid(a) for a in ("nri-listener", "reconciler", "sampler", "writer")}
        )
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)
