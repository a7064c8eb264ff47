"""A re-check pass over thousands of containers, run by the real actor shell in steps:
the shell's heartbeat keeps coming while the pass runs (issue 11, deliverable 1).

The in-memory kernel takes 1 ms of the fake clock per ``tasks`` read, as a busy
kernel could: the pass then lasts seconds of that clock, and heartbeats due in those
seconds must go out between its steps instead of after it.
"""

from __future__ import annotations

from pathlib import Path

from resctrl_pipeline.actor import Actor, ActorSettings
from resctrl_pipeline.messages import ActorStats, LifecycleSnapshot
from resctrl_pipeline.reconcile.reconciler import STEP_CONTAINERS
from tests.memory_resctrl import MemoryResctrlOps
from tests.test_actor import FakeClock, puller, recv_all
from tests.test_reconcile import ROOT, Node

PODS = 2000
READ_SECONDS = 0.001  # per tasks read, on the fake clock


class SlowKernel(MemoryResctrlOps):
    """The in-memory kernel, each ``tasks`` read taking ``READ_SECONDS`` of ``clock``."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(ROOT, num_rmids=PODS + 8)
        self.clock = clock

    def read_tasks(self, name: str) -> str:
        self.clock.now += READ_SECONDS
        return super().read_tasks(name)


def test_a_recheck_pass_over_thousands_of_containers_does_not_block_heartbeats(
    tmp_path: Path, short_tmp: str
) -> None:
    clock = FakeClock()
    node = Node(tmp_path, SlowKernel(clock))
    core = node.core(retry_interval=100.0)
    pods, containers = [], []
    for i in range(PODS):
        pods.append(node.start_pod(f"p{i}"))
        containers.append(node.start_container(f"p{i}", f"c{i}", [10_000 + i]))
    core.handle(LifecycleSnapshot(tuple(pods), tuple(containers)), now=clock.now)
    assert sum(s.reconciled_containers for s in core.snapshot().states) == PODS

    stats = puller(short_tmp, "stats")  # bound first: a PUSH without a peer drops
    settings = ActorSettings(runtime_dir=short_tmp, channel_capacity=64,
                             snapshot_interval=1e6, stats_interval=0.25, clock=clock,
                             install_signal_handlers=False)  # fmt: skip
    actor = Actor(core, settings)
    try:
        clock.now += 100.0  # the retry timer is due
        started = clock.now
        turns = 0
        actor.step(0)
        while core.more_work():
            actor.step(0)
            turns += 1
        took = clock.now - started
        beats = [m for m in recv_all(stats) if isinstance(m, ActorStats)]
    finally:
        stats.close()
        actor.close()
    assert took >= PODS * READ_SECONDS * 0.99  # the pass did read every group
    # One heartbeat per quarter second of the pass, give or take the edges; a pass in
    # one hook call gave one before and one after it.
    assert len(beats) >= took / 0.25 - 2, (len(beats), took)
    assert turns >= PODS // STEP_CONTAINERS - 1  # cut into steps
    counters = core.statistics().counters
    assert counters["recheck_passes"] == 1 and "recheck_passes_overlapped" not in counters
    assert sum(s.reconciled_containers for s in core.snapshot().states) == PODS
