"""Fault isolation in the actor shell: a hook that raises costs its input, not the actor.

Real ZeroMQ sockets, a fake monotonic clock; the cores are small stand-ins whose
hooks fail on purpose (a core bug is what is simulated, not an I/O error).
"""

from __future__ import annotations

import logging
import time

import pytest

from resctrl_pipeline import codec
from resctrl_pipeline.actor import Actor, ActorSettings
from resctrl_pipeline.core import Core, Outputs, Stats, Timer
from resctrl_pipeline.hookfaults import HookFaults
from resctrl_pipeline.messages import ActorStats, GroupSnapshot, GroupState, Message, PodUp
from tests.support import poll_until
from tests.test_actor import FakeClock, puller, pusher, recv_all


def _settings(runtime_dir: str, clock: FakeClock, max_errors: int = 3) -> ActorSettings:
    return ActorSettings(runtime_dir=runtime_dir, channel_capacity=64, snapshot_interval=1e6,
                         stats_interval=1.0, clock=clock, install_signal_handlers=False,
                         max_consecutive_hook_errors=max_errors)  # fmt: skip


class FlakyReconciler(Core):
    """PodUp → GroupState; a pod named ``bad*`` trips a bug half-way through (its state
    is recorded, its delta never returned), as a real core bug would."""

    name = "reconciler"

    def __init__(self) -> None:
        self.states: dict[str, GroupState] = {}
        self.timer_fails = 0

    def timers(self) -> list[Timer]:
        return [Timer("retry", 10.0)]

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        assert isinstance(msg, PodUp)
        state = GroupState(msg.uid, f"/g/{msg.uid}", 0, 0)
        self.states[msg.uid] = state
        if msg.name.startswith("bad"):
            raise KeyError(msg.name)
        return [("groups", state)]

    def on_timer(self, name: str, now: float) -> Outputs:
        if self.timer_fails:
            self.timer_fails -= 1
            raise RuntimeError("retry pass broke")
        return []

    def snapshot(self, edge: str) -> Message | None:
        return GroupSnapshot(tuple(self.states[u] for u in sorted(self.states)))


def _heartbeat(actor: Actor) -> ActorStats:
    return actor.stats()


def test_a_failing_message_is_dropped_counted_and_the_state_resent(
    short_tmp: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    core = FlakyReconciler()
    actor = Actor(core, _settings(short_tmp, clock))
    lifecycle, sink = pusher(short_tmp, "lifecycle"), puller(short_tmp, "groups")
    try:
        with caplog.at_level(logging.ERROR, logger="resctrl_pipeline.actor"):
            for uid, name in (("a", "ok"), ("b", "bad1"), ("c", "ok"), ("d", "bad2")):
                lifecycle.send(codec.encode(PodUp(uid, "ns", name)))
            poll_until(lambda: actor.step(0.05) or len(core.states) == 4, what="four pods")
            actor.step(0)
        got = recv_all(sink)
        # The failing inputs cost nothing else: "a" went out as a delta, then full
        # snapshots (standing in for the later deltas) carry the state that the
        # failing calls left behind.
        assert got[0] == GroupState("a", "/g/a", 0, 0)
        snaps = [m for m in got[1:] if isinstance(m, GroupSnapshot)]
        assert snaps and {s.pod_uid for s in snaps[0].states} >= {"a", "b", "c"}
        assert {s.pod_uid for s in snaps[-1].states} == {"a", "b", "c", "d"}
        counters = _heartbeat(actor).counters
        assert counters["hook_errors_on_message"] == 2
        # Logged sparingly: the traceback once, the second failure is summed up later.
        with_traceback = [r for r in caplog.records if r.exc_info]
        assert len(with_traceback) == 1 and "on_message(lifecycle)" in with_traceback[0].message
        assert "KeyError" in caplog.text
        assert not actor._stop  # two failures with a success between: carry on
    finally:
        lifecycle.close()
        sink.close()
        actor.close()


def test_only_consecutive_failures_end_the_actor_with_exit_1(short_tmp: str) -> None:
    clock = FakeClock()
    core = FlakyReconciler()
    core.timer_fails = 2  # two broken passes, then a good one: the actor survives
    actor = Actor(core, _settings(short_tmp, clock, max_errors=3))
    for _ in range(3):
        clock.now += 10.0
        actor.step(0)
    assert not actor._stop and core.timer_fails == 0
    core.timer_fails = 3  # now three in a row
    for _ in range(3):
        clock.now += 10.0
        actor.step(0)
    assert actor.run() == 1  # already stopping: ends at once
    assert actor.stats().counters["hook_errors_on_timer"] == 5


class BrokenStatistics(FlakyReconciler):
    def statistics(self) -> Stats:
        raise ZeroDivisionError("gauge")


def test_a_heartbeat_goes_out_when_statistics_fail(short_tmp: str) -> None:
    clock = FakeClock()
    sink = puller(short_tmp, "stats")  # bound first: a PUSH without a peer drops
    actor = Actor(BrokenStatistics(), _settings(short_tmp, clock, max_errors=100))
    try:
        clock.now += 1.0
        actor.step(0)
        beats = [m for m in recv_all(sink) if isinstance(m, ActorStats)]
        assert beats and beats[-1].actor == "reconciler"
        assert beats[-1].counters["hook_errors_statistics"] >= 1
    finally:
        sink.close()
        actor.close()


class SlowJob(Core):
    """A long job in ``steps`` steps, each advancing the clock by ``step_seconds`` (the
    time real work would take); started by its timer."""

    name = "reconciler"

    def __init__(self, clock: FakeClock, steps: int, step_seconds: float) -> None:
        self.clock = clock
        self.left = 0
        self.steps = steps
        self.step_seconds = step_seconds

    def timers(self) -> list[Timer]:
        return [Timer("retry", 100.0)]

    def on_timer(self, name: str, now: float) -> Outputs:
        self.left = self.steps
        return []

    def more_work(self) -> bool:
        return self.left > 0

    def on_continue(self, now: float) -> Outputs:
        self.left -= 1
        self.clock.now += self.step_seconds
        return []


def test_a_stepped_job_runs_without_waiting_and_heartbeats_go_on(short_tmp: str) -> None:
    clock = FakeClock()
    core = SlowJob(clock, steps=50, step_seconds=0.1)  # 5 s of work
    sink = puller(short_tmp, "stats")
    actor = Actor(core, _settings(short_tmp, clock))
    try:
        clock.now += 100.0
        steps = 0
        # Each loop turn does one step. A shell that did not know there is work left
        # would wait for its next deadline (seconds away) on each turn: fail instead.
        guard = time.monotonic() + 20
        while core.more_work() or steps == 0:
            actor.step(max_wait=5.0)
            steps += 1
            assert time.monotonic() < guard, "the shell waited instead of going on"
        beats = [m for m in recv_all(sink) if isinstance(m, ActorStats)]
        assert core.left == 0
        assert len(beats) >= 4  # one per second of work, not one after all of it
    finally:
        sink.close()
        actor.close()


def test_hook_faults_rate_limit_and_reset() -> None:
    faults = HookFaults(max_consecutive=3, log_period=10.0)
    err = ValueError("x")
    assert not faults.failed("on_message", "lifecycle", err, 0.0)
    assert not faults.failed("on_message", "lifecycle", err, 1.0)
    faults.succeeded("on_message", "lifecycle")
    assert not faults.failed("on_message", "lifecycle", err, 2.0)
    assert not faults.failed("on_message", "metadata", err, 2.0)  # another input: own run
    assert not faults.failed("on_message", "lifecycle", err, 3.0)
    assert faults.failed("on_message", "lifecycle", err, 4.0)
    assert faults.counters() == {"hook_errors_on_message": 6.0}
    with pytest.raises(ValueError, match="at least 1"):
        HookFaults(0)
