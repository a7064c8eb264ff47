"""``/ready`` of a real ``up`` follows the sampler's rule: ready only after a group
event (from the reconciler) AND a metadata event (from the listener) arrived, with
resctrl usable. Each half alone keeps it 503, for as long as the other is missing,
with a reason that names what is missing.

The sampler and writer run as real processes on a plain-directory resctrl tree (usable
monitoring); the test stands in for the listener and reconciler on the sampler's real
ZeroMQ edges. Every verdict is judged only after the sampler's heartbeats show that it
processed the event (never racing the first heartbeats).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.messages import GroupSnapshot, GroupState, MetadataSnapshot, PodLabels
from resctrl_pipeline.topology import endpoint
from tests.integration.pipeline import RunningPipeline
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
        # A quiet heartbeat period of 1 s (a sixth of it): an idle sampler's verdicts
        # come once a second instead of every 5 s.
        env={"RESCTRL_LIVENESS_TIMEOUT": "6s"},
    )  # fmt: skip
    try:
        p.wait_serving(("sampler", "writer"))
        yield p
        # An orderly stop: the actors are gone before the directory is removed.
        assert p.terminate() == 0, p.log()[-3000:]
    finally:
        p.kill()


def send(p: RunningPipeline, edge: str, msg: object) -> None:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.connect(endpoint(p.runtime_dir, edge))
    sock.send(codec.encode(msg))
    sock.close()


def groups(p: RunningPipeline) -> None:
    resctrl = os.path.join(os.path.dirname(p.runtime_dir), "resctrl")
    send(p, "groups", GroupSnapshot((GroupState("u1", f"{resctrl}/mon_groups/pod_u1", 1, 1),)))


def metadata(p: RunningPipeline) -> None:
    send(p, "metadata", MetadataSnapshot((PodLabels("u1", "ns", "pod"),)))


def sampler(p: RunningPipeline) -> dict[str, Any]:
    doc: dict[str, Any] = p.status()["actors"]["sampler"]
    return doc


def both_reported(p: RunningPipeline) -> bool:
    """Sampler and writer each sent a heartbeat (their readiness flags are known)."""
    actors = p.status()["actors"]
    return all(actors[a]["ready"] for a in ("sampler", "writer"))


def stays_503(p: RunningPipeline, missing: str, heartbeats: int = 3) -> None:
    """/ready is 503 naming ``missing``, across ``heartbeats`` further sampler heartbeats
    (each one re-evaluates the verdict), with resctrl usable all along."""
    # Heartbeats are told apart by their own count (a sampler without groups does not
    # tick, so its tick count cannot tell them apart).
    start = sampler(p)["counters"].get("sent_stats", 0)
    seen: set[float] = set()

    def judged() -> bool:
        code, body = p.get("/ready")
        assert code == 503, f"/ready {code} while no {missing} event arrived: {body}"
        assert f"waiting for the first {missing} event" in body, body
        s = sampler(p)
        assert s["ready"]["resctrl"] is True, s
        seen.add(s["counters"].get("sent_stats", 0))
        return len(seen - {start}) >= heartbeats

    poll_until(judged, 30, interval=0.2, what=f"{heartbeats} heartbeats without {missing}")


def test_groups_without_metadata_stay_503_until_metadata_arrives(
    pipeline: RunningPipeline,
) -> None:
    poll_until(lambda: both_reported(pipeline), 20, what="first heartbeats")
    code, body = pipeline.get("/ready")
    assert code == 503 and "waiting for the first group and metadata event" in body, body

    def group_seen() -> bool:
        groups(pipeline)
        return sampler(pipeline)["gauges"].get("pods") == 1

    poll_until(group_seen, 20, interval=0.2, what="the sampler holding the pod's group")
    stays_503(pipeline, "metadata")

    def ready() -> bool:
        metadata(pipeline)
        return pipeline.get("/ready")[0] == 200

    poll_until(ready, 20, interval=0.2, what="/ready 200 once metadata arrived too")


def test_metadata_without_groups_stays_503_until_a_group_event_arrives(
    pipeline: RunningPipeline,
) -> None:
    poll_until(lambda: both_reported(pipeline), 20, what="first heartbeats")

    def metadata_seen() -> bool:
        metadata(pipeline)
        return "waiting for the first group event" in str(sampler(pipeline)["info"])

    poll_until(metadata_seen, 20, interval=0.2, what="the sampler holding the metadata")
    stays_503(pipeline, "group")

    def ready() -> bool:
        groups(pipeline)
        return pipeline.get("/ready")[0] == 200

    poll_until(ready, 20, interval=0.2, what="/ready 200 once a group event arrived too")


def test_the_writer_process_allocates_with_the_c_librarys_malloc(
    pipeline: RunningPipeline,
) -> None:
    """pyarrow's default allocator cost an idle-between-flushes writer twice the CPU and
    15 MiB more (docs/benchmarks.md); the writer process picks malloc, and says so."""
    poll_until(lambda: both_reported(pipeline), 20, what="first heartbeats")
    info = pipeline.status()["actors"]["writer"]["info"]
    assert info.get("arrow_memory_pool") == "system", info
