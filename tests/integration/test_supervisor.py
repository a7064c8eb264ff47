"""A real ``up`` on temporary directories: restarts, readiness, orderly stop."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.messages import GroupSnapshot, GroupState, MetadataSnapshot, PodLabels
from resctrl_pipeline.topology import endpoint
from tests.integration.pipeline import RunningPipeline
from tests.prerequisites import requires
from tests.support import make_group, make_resctrl_tree, poll_until

pytestmark = pytest.mark.slow


@pytest.fixture
def pipeline(short_tmp: str) -> Iterator[RunningPipeline]:
    resctrl = os.path.join(short_tmp, "resctrl")
    make_resctrl_tree(resctrl)
    make_group(os.path.join(resctrl, "mon_groups", "pod_u1"), value=1000)
    p = RunningPipeline(
        os.path.join(short_tmp, "run"),
        ["--actors", "sampler,writer", "--resctrl-root", resctrl,
         "--output", os.path.join(short_tmp, "out"),
         "--sampling-interval", "100ms", "--retry-interval", "1s",
         "--nri-socket", os.path.join(short_tmp, "nri.sock")],
        os.path.join(short_tmp, "up.log"),
    )  # fmt: skip
    yield p
    p.kill()


def feed_sampler(runtime_dir: str, resctrl: str) -> None:
    """Stand in for the listener and reconciler: one pod with a group and labels."""
    ctx = zmq.Context.instance()
    for edge, msg in (
        ("groups", GroupSnapshot((GroupState("u1", f"{resctrl}/mon_groups/pod_u1", 1, 1),))),
        ("metadata", MetadataSnapshot((PodLabels("u1", "ns", "pod"),))),
    ):
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.connect(endpoint(runtime_dir, edge))
        sock.send(codec.encode(msg))
        sock.close()


def test_up_restarts_killed_actor_and_ready_flips(pipeline: RunningPipeline,
                                                  short_tmp: str) -> None:  # fmt: skip
    pipeline.wait_serving(("sampler", "writer"))
    assert pipeline.get("/live")[0] == 200
    # Judged once both actors have reported (before that, 503 only says "no heartbeat
    # yet"): the sampler itself keeps it 503 until its first group and metadata events.
    poll_until(
        lambda: all(a["ready"] for a in pipeline.status()["actors"].values()),
        20,
        what="the first heartbeats of sampler and writer",
    )
    code, body = pipeline.get("/ready")
    assert code == 503 and "waiting for the first group and metadata event" in body, body
    assert os.stat(pipeline.runtime_dir).st_mode & 0o777 == 0o700

    resctrl = os.path.join(short_tmp, "resctrl")

    def ready() -> bool:
        feed_sampler(pipeline.runtime_dir, resctrl)
        return pipeline.get("/ready")[0] == 200

    poll_until(ready, 20, interval=0.2, what="/ready 200 after group and metadata events")
    old = pipeline.pids()["actors"]["sampler"]
    os.kill(old, signal.SIGKILL)
    poll_until(lambda: pipeline.get("/ready")[0] == 503, 10, what="/ready 503 after the kill")
    poll_until(lambda: pipeline.pids()["actors"].get("sampler") not in (None, old), 20,
               what="sampler restarted")  # fmt: skip
    status = pipeline.status()
    assert status["actors"]["sampler"]["restarts"] == 1
    code, metrics = pipeline.get("/metrics")
    assert code == 200 and 'resctrl_pipeline_actor_restarts_total{actor="sampler"} 1.0' in metrics
    poll_until(ready, 20, interval=0.2, what="/ready 200 again after the restart")
    poll_until(lambda: pipeline.status()["actors"]["writer"]["counters"].get("rows_received"),
               20, what="rows at the writer")  # fmt: skip
    assert pipeline.terminate() == 0, pipeline.log()
    out = os.path.join(short_tmp, "out")
    names = os.listdir(out)
    assert names and all(n.endswith(".parquet") for n in names), names  # nothing partial
    rows = sum(pq.read_table(os.path.join(out, n)).num_rows for n in names)
    assert rows > 0


def test_ready_stays_503_with_reason_when_resctrl_missing(short_tmp: str) -> None:
    p = RunningPipeline(
        os.path.join(short_tmp, "run"),
        ["--actors", "sampler", "--resctrl-root", os.path.join(short_tmp, "nothing-here"),
         "--output", os.path.join(short_tmp, "out")],
        os.path.join(short_tmp, "up.log"),
    )  # fmt: skip
    try:
        p.wait_serving(("sampler",))
        poll_until(lambda: "does not exist" in p.get("/ready")[1], 20,
                   what="/ready naming the missing resctrl root")  # fmt: skip
        assert p.get("/ready")[0] == 503
        assert p.terminate() == 0
        assert "resctrl monitoring unusable" in p.log()
    finally:
        p.kill()


def test_bad_config_exits_2(short_tmp: str) -> None:
    p = RunningPipeline(os.path.join(short_tmp, "run"), ["--sampling-interval", "soon"],
                        os.path.join(short_tmp, "up.log"))  # fmt: skip
    assert p.proc.wait(30) == 2
    p.kill()
    assert "sampling.interval" in p.log() and "'soon'" in p.log()


@requires("root")  # to give the directory away
def test_runtime_dir_of_another_user_is_refused(short_tmp: str) -> None:
    run = os.path.join(short_tmp, "run")
    os.mkdir(run)
    os.chown(run, 65534, 65534)
    p = RunningPipeline(run, [], os.path.join(short_tmp, "up.log"))
    assert p.proc.wait(30) == 1
    p.kill()
    assert "belongs to uid 65534" in p.log()


def _allowed_cpus(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(line.split()[1] for line in f if line.startswith("Cpus_allowed_list:"))


@pytest.mark.parametrize("cpu", ["1", "4095"])
def test_sampling_cpu_pins_the_sampler_or_says_why_not(short_tmp: str, cpu: str) -> None:
    """``sampling.cpu`` pins the sampler process only; a CPU it may not use is named in
    the log and the sampler runs unpinned (not a crash loop)."""
    if cpu == "1" and 1 not in os.sched_getaffinity(0):
        pytest.fail("this test needs CPU 1 (CI machines have 2 cores)")
    resctrl = os.path.join(short_tmp, "resctrl")
    make_resctrl_tree(resctrl)
    p = RunningPipeline(
        os.path.join(short_tmp, "run"),
        ["--actors", "sampler,writer", "--resctrl-root", resctrl,
         "--output", os.path.join(short_tmp, "out")],
        os.path.join(short_tmp, "up.log"), env={"RESCTRL_SAMPLING_CPU": cpu},
    )  # fmt: skip
    try:
        p.wait_serving(("sampler", "writer"))
        pids = p.pids()["actors"]
        unpinned = _allowed_cpus(os.getpid())
        if cpu == "1":
            # Pinned as it starts, after its pid is known: poll.
            poll_until(lambda: _allowed_cpus(pids["sampler"]) == "1", 20, what="pinned")
        else:
            poll_until(lambda: "sampling.cpu = 4095" in p.log(), 20, what="the error logged")
            assert "running unpinned" in p.log()
            assert _allowed_cpus(pids["sampler"]) == unpinned
        poll_until(lambda: "sampler" in p.get("/status")[1], 20, what="a heartbeat")
        assert _allowed_cpus(pids["writer"]) == unpinned  # only the sampler is pinned
        assert p.status()["actors"]["sampler"]["restarts"] == 0
        assert p.terminate() == 0
    finally:
        p.kill()
