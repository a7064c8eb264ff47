"""A second stop signal to ``up`` while it stops means "stop now"."""

from __future__ import annotations

import os
import signal
import time

import pytest

from resctrl_pipeline.supervise.supervisor import HURRY_GRACE
from tests.integration.pipeline import RunningPipeline
from tests.support import make_resctrl_tree, poll_until

pytestmark = pytest.mark.slow


def test_second_signal_kills_an_actor_that_does_not_stop(short_tmp: str) -> None:
    resctrl = os.path.join(short_tmp, "resctrl")
    make_resctrl_tree(resctrl)
    p = RunningPipeline(
        os.path.join(short_tmp, "run"),
        ["--actors", "sampler,writer", "--resctrl-root", resctrl,
         "--output", os.path.join(short_tmp, "out"),
         "--nri-socket", os.path.join(short_tmp, "nri.sock")],
        os.path.join(short_tmp, "up.log"),
    )  # fmt: skip
    try:
        p.wait_serving(("sampler", "writer"))
        poll_until(lambda: "no heartbeat from writer yet" not in p.get("/ready")[1], 30,
                   what="the writer's first heartbeat")  # fmt: skip
        writer = p.pids()["actors"]["writer"]
        os.kill(writer, signal.SIGSTOP)  # its orderly stop would wait 20 s for it
        p.proc.send_signal(signal.SIGINT)
        poll_until(lambda: "stopped sampler (exit code 0)" in p.log(), 30,
                   what="the sampler stopped in order")  # fmt: skip
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGINT)
        assert p.proc.wait(30) == 0
        took = time.monotonic() - t0
    finally:
        p.kill()
    log = p.log()
    assert ("second stop signal: stopping now; SIGKILL in 2s to what still runs of: writer"
            in log), log  # fmt: skip
    assert "stopped writer (exit code -9)" in log, log
    assert took < HURRY_GRACE + 5, took  # not the 20 s of an orderly stop
