"""The NRI runtime (containerd) restarted, stalled, and gone for a while."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.harness import PREFIX, FaultHarness
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]


def _samples_grow(h: FaultHarness, n: int) -> None:
    start = h.counter("sampler", "samples")
    poll_until(
        lambda: h.counter("sampler", "samples") >= start + n,
        20,
        interval=0.05,
        what=f"{n} more samples",
    )


def test_runtime_restarted_stalled_and_gone(harness: FaultHarness) -> None:
    h = harness
    rt = h.node.runtime
    tree = h.node.fs.tree
    h.start()
    h.wait_ready()
    pods = h.sleep_pods(4)
    h.wait_groups(pods)

    # 1. Restart (connections dropped, back at once): the listener re-registers and
    #    serves pods started afterwards.
    regs = h.counter("nri-listener", "nri_registrations")
    rt.restart(downtime=0)
    poll_until(
        lambda: h.counter("nri-listener", "nri_registrations") > regs, 20, what="re-registration"
    )
    late = h.sleep_pods(1)
    h.wait_groups(late)

    # 2. Stall (accepts, never answers): sampling goes on, /ready says why, and the
    #    listener registers again once the runtime answers.
    rt.set_stall(True)
    rt.restart(downtime=0)
    poll_until(lambda: "nri_connected" in h.node.http("/ready")[1], 20, what="/ready: NRI")
    poll_until(lambda: rt.accepted > 0 and not rt.plugins(), 10, what="a stalled connection")
    _samples_grow(h, 5 * len(pods))
    assert h.node.http("/ready")[0] == 503
    rt.set_stall(False)  # closes the stalled connection: the listener retries
    h.wait_ready()
    assert rt.ready_plugins() == 1

    # 3. Gone for a while: pods come and go meanwhile; the Synchronize after the outage
    #    is authoritative. Reconnect attempts back off (no tight loop).
    attempts = h.counter("nri-listener", "nri_connect_attempts")
    outage = 4.0
    rt.restart(downtime=outage)
    gone, stay = pods[0], pods[1:]
    h.node.stop_pod(gone)  # no event reaches the plugin: nobody is connected
    newcomer = h.node.new_pod("idle", name="during-outage")
    h.start_sleep_pod(newcomer)
    _samples_grow(h, 5 * len(stay))  # existing pods are still sampled
    poll_until(lambda: rt.ready_plugins() == 1, outage + 20, what="reconnection")
    h.wait_groups([*stay, newcomer, *late])
    poll_until(lambda: PREFIX + gone.uid not in tree.groups(), 20, what="gone pod's group removed")
    tries = h.counter("nri-listener", "nri_connect_attempts") - attempts
    # Back-off 0.5, 1, 2, 4 s: at most 5 attempts cover a 4 s outage.
    assert 1 <= tries <= 5, tries
    assert h.restarts() == dict.fromkeys(h.restarts(), 0)
    assert h.node.stop_pipeline() == 0


def test_runtime_gone_while_listener_and_reconciler_restart(harness: FaultHarness) -> None:
    """With containerd down, a restarted listener has no state and cannot get any; a
    restarted reconciler must then not tell the sampler "no pods" (an empty snapshot
    before its own first snapshot): the sampler keeps sampling the groups it knows."""
    h = harness
    rt = h.node.runtime
    h.start()
    h.wait_ready()
    pods = h.sleep_pods(3)
    rmids = h.wait_groups(pods)
    _samples_grow(h, 3 * len(pods))
    outage = 60.0  # ended early below, once checked
    rt.restart(downtime=outage)
    t0 = time.monotonic()
    poll_until(lambda: h.gauge("nri-listener", "nri_connected") == 0, 10, what="NRI lost")
    for actor in ("nri-listener", "reconciler"):
        old = h.pid(actor)
        os.kill(old, signal.SIGKILL)
        h.wait_restarted(actor, old)
    # Anti-entropy periods (--retry-interval 1s) of the new reconciler pass while the
    # runtime is still down; the sampler must go on producing rows for every pod.
    poll_until(
        lambda: h.counter("reconciler", "recheck_passes") >= 3,
        20,
        what="three passes of the new reconciler",
    )
    assert h.gauge("reconciler", "synced") == 0
    before = h.counter("sampler", "samples")
    poll_until(
        lambda: h.counter("sampler", "samples") >= before + 5 * len(pods),
        5,
        interval=0.05,
        what="rows for the known pods during the outage",
    )
    assert h.gauge("sampler", "pods") == len(pods)
    assert rt.ready_plugins() == 0 and time.monotonic() - t0 < outage, "the outage ended early"
    rt.restart(downtime=0)  # the runtime is back
    poll_until(lambda: rt.ready_plugins() == 1, 30, what="reconnection")
    h.wait_ready()
    assert {n: g.rmid for n, g in h.node.fs.tree.groups().items()} == rmids  # adopted
    assert h.node.stop_pipeline() == 0
