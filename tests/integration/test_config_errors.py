"""A configuration error stops ``up`` at once with its message and exit 2: found by
``up`` before it spawns, or by an actor at its start."""

from __future__ import annotations

import logging
import os
import time

import pytest

from resctrl_pipeline.config import load, resolve
from resctrl_pipeline.supervise.supervisor import Supervisor
from tests.integration.pipeline import RunningPipeline

pytestmark = pytest.mark.slow


def test_up_refuses_a_cgroup_root_without_cgroups_before_spawning(short_tmp: str) -> None:
    bogus = os.path.join(short_tmp, "no-cgroups-here")
    os.mkdir(bogus)
    t0 = time.monotonic()
    p = RunningPipeline(os.path.join(short_tmp, "run"), ["--cgroup-root", bogus],
                        os.path.join(short_tmp, "up.log"))  # fmt: skip
    try:
        assert p.proc.wait(30) == 2
        took = time.monotonic() - t0
    finally:
        p.kill()
    log = p.log()
    assert f"cgroup.root = {bogus!r}" in log and "no cgroup v2 root nor v1 hierarchy" in log
    assert "started" not in log  # nothing was spawned
    assert not os.path.exists(os.path.join(short_tmp, "run", "pids.json"))
    print(f"\nup exited 2 after {took:.1f} s")


def test_actor_config_error_at_start_stops_up_with_its_message(
    short_tmp: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same error found by the reconciler itself (``up``'s check bypassed): no
    restart loop, the pipeline stops at once and the exit code is 2."""
    bogus = os.path.join(short_tmp, "no-cgroups-here")
    os.mkdir(bogus)
    src = load(environ={}, overrides={
        "pipeline.runtime_dir": os.path.join(short_tmp, "run"),
        "output.dir": os.path.join(short_tmp, "out"), "cgroup.root": bogus,
        "resctrl.root": os.path.join(short_tmp, "resctrl"), "http.addr": "127.0.0.1:0",
    })  # fmt: skip
    sup = Supervisor(resolve(src), src, actors=("reconciler", "writer"))
    caplog.set_level(logging.INFO, logger="resctrl_pipeline.supervise.supervisor")
    t0 = time.monotonic()
    assert sup.run() == 2
    took = time.monotonic() - t0
    text = caplog.text
    assert "reconciler found a configuration error at its start: invalid configuration: " \
           f"cgroup.root = {bogus!r}: no cgroup v2 root nor v1 hierarchy below" in text
    assert "restarting" not in text
    assert "stopped writer (exit code 0)" in text  # the others stopped in order
    assert took < 60
