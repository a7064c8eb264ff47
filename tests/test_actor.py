"""The actor shell over real ZeroMQ sockets: the L2 cases, backpressure, recovery."""

from __future__ import annotations

import logging
import os
import time

import pytest
import zmq

from resctrl_pipeline import codec
from resctrl_pipeline.actor import Actor, ActorSettings, TimerSchedule
from resctrl_pipeline.core import Core, Outputs, Timer
from resctrl_pipeline.messages import (
    GroupSnapshot,
    GroupState,
    Message,
    OccupancyBatch,
    PodLabels,
    PodUp,
)
from resctrl_pipeline.sampling import Sampler
from resctrl_pipeline.topology import endpoint
from tests.support import poll_until
from tests.test_sampling import FakeLlcReader


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(runtime_dir: str, clock: FakeClock | None = None, capacity: int = 8) -> ActorSettings:
    return ActorSettings(runtime_dir=runtime_dir, channel_capacity=capacity,
                         snapshot_interval=5.0, stats_interval=1.0,
                         clock=clock or FakeClock(), install_signal_handlers=False)  # fmt: skip


def pusher(runtime_dir: str, edge: str) -> zmq.Socket[bytes]:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint(runtime_dir, edge))
    return sock


def puller(runtime_dir: str, edge: str) -> zmq.Socket[bytes]:
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint(runtime_dir, edge))
    return sock


def recv_all(sock: zmq.Socket[bytes], timeout_ms: int = 200) -> list[Message]:
    out = []
    while sock.poll(timeout_ms):
        out.append(codec.decode(sock.recv()).body)
        timeout_ms = 50
    return out


def test_timer_schedule_no_drift_and_missed_ticks_skipped() -> None:
    sched = TimerSchedule([Timer("t", 1.0)], now=0.0)
    assert sched.due(0.5) == []
    assert sched.due(1.2) == ["t"]
    assert sched.next_deadline() == 2.0  # from the schedule, not from 1.2
    assert sched.due(5.5) == ["t"]  # one firing after a stall, not four
    assert sched.missed["t"] == 3
    assert sched.next_deadline() == 6.0
    # An idle timer neither fires nor wakes, and its skipped ticks are not missed.
    assert sched.due(9.5, idle=frozenset({"t"})) == []
    assert sched.next_deadline(idle=frozenset({"t"})) is None
    assert sched.missed["t"] == 3
    assert sched.next_deadline() == 10.0  # back on its own grid once no longer idle
    assert sched.due(10.0) == ["t"] and sched.missed["t"] == 3


def test_l2_1_ticks_and_shutdown(short_tmp: str) -> None:
    clock = FakeClock()
    core = Sampler(FakeLlcReader(), sampling_interval=0.01, health_interval=0.01, with_mbm=False)
    core.on_message("groups", GroupState("u1", "/g1", 1, 1), clock.now)  # one pod to read
    actor = Actor(core, settings(short_tmp, clock))
    for _ in range(5):
        clock.now += 0.01
        actor.step(0)
    assert core.ticks == 5
    assert not core.ready()  # no metadata yet
    actor.stop()
    assert actor.run() == 0  # returns at once: already stopped, sockets closed
    assert actor.stats().counters["missed_ticks_sample"] == 0


def test_the_sampler_sleeps_without_pods_and_ticks_on_schedule_when_one_comes(
    short_tmp: str,
) -> None:
    clock = FakeClock()
    core = Sampler(FakeLlcReader({"/g1": 5}), sampling_interval=1.0, with_mbm=False)
    actor = Actor(core, settings(short_tmp, clock))
    groups = pusher(short_tmp, "groups")
    try:
        for _ in range(10):  # 10 s without a pod: no tick, and none of them "missed"
            clock.now += 1.0
            actor.step(0)
        assert core.ticks == 0
        clock.now += 0.5
        groups.send(codec.encode(GroupState("u1", "/g1", 1, 1)))
        poll_until(lambda: actor.step(0) or "u1" in core.pods, what="group event")
        assert core.ticks == 0  # not at once: at the next tick of the schedule
        for _ in range(3):
            clock.now += 1.0
            actor.step(0)
        assert core.ticks == 3 and core.samples == 3
        assert actor.stats().counters["missed_ticks_sample"] == 0
    finally:
        groups.close()
        actor.close()


def test_l2_2_ready_gating_with_injected_events(short_tmp: str) -> None:
    core = Sampler(FakeLlcReader(), with_mbm=False)
    actor = Actor(core, settings(short_tmp))
    groups, meta = pusher(short_tmp, "groups"), pusher(short_tmp, "metadata")
    try:
        groups.send(codec.encode(GroupState("u1", "/g1", 1, 1)))
        poll_until(lambda: actor.step(0.05) or "u1" in core.pods, what="group event")
        assert not core.ready()
        meta.send(codec.encode(PodLabels("u1", "ns", "p")))
        poll_until(lambda: actor.step(0.05) or core.ready(), what="metadata event")
        assert core.labels["u1"] == ("ns", "p")
    finally:
        groups.close()
        meta.close()
        actor.close()


def test_malformed_input_is_counted_and_skipped(short_tmp: str) -> None:
    core = Sampler(FakeLlcReader(), with_mbm=False)
    actor = Actor(core, settings(short_tmp))
    groups = pusher(short_tmp, "groups")
    try:
        groups.send(b"\xc1 not msgpack")
        groups.send(codec.encode(PodUp("wrong", "edge", "kind")))  # ignored by the sampler
        groups.send(codec.encode(GroupState("u1", "/g1", 1, 1)))
        poll_until(lambda: actor.step(0.05) or "u1" in core.pods, what="valid message")
        assert actor.stats().counters["decode_errors"] == 1
    finally:
        groups.close()
        actor.close()


def _sampling_actor(runtime_dir: str, clock: FakeClock, capacity: int) -> tuple[Sampler, Actor]:
    core = Sampler(FakeLlcReader({"/g1": 42}), sampling_interval=0.1, health_interval=100,
                   with_mbm=False)  # fmt: skip
    core.handle_resctrl_event(GroupState("u1", "/g1", 1, 1))
    return core, Actor(core, settings(runtime_dir, clock, capacity))


def test_l0b_6_backpressure_capacity_one(short_tmp: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    core, actor = _sampling_actor(short_tmp, clock, capacity=1)
    try:
        with caplog.at_level(logging.WARNING, logger="resctrl_pipeline.actor"):
            for _ in range(2):  # two samples, nobody reading
                clock.now += 0.1
                actor.step(0)
        assert core.batches == 2
        assert actor.stats().counters["dropped_occupancy"] == 1
        assert "Dropped 1 occupancy batches in the last second" in caplog.text
        sink = puller(short_tmp, "occupancy")
        got = recv_all(sink)
        sink.close()
        assert len(got) == 1 and isinstance(got[0], OccupancyBatch)
        assert got[0].columns["llc_occupancy_bytes"] == [42]
    finally:
        actor.close()


def test_l2_3_no_crash_when_output_full_and_drop_log_rate_limited(
    short_tmp: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    core, actor = _sampling_actor(short_tmp, clock, capacity=1)
    try:
        with caplog.at_level(logging.WARNING, logger="resctrl_pipeline.actor"):
            for _ in range(30):  # 3 s of ticks at 100 ms with the output full
                clock.now += 0.1
                actor.step(0)
        assert core.ticks == 30
        drops = actor.stats().counters["dropped_occupancy"]
        assert drops == 29
        lines = [r.getMessage() for r in caplog.records if "Dropped" in r.getMessage()]
        assert 2 <= len(lines) <= 4  # about one per second, not one per drop
        assert sum(int(line.split()[1]) for line in lines) <= drops
    finally:
        actor.close()


class GroupsCore(Core):
    """A stand-in reconciler: each lifecycle PodUp becomes a GroupState delta."""

    name = "reconciler"

    def __init__(self) -> None:
        self.states: dict[str, GroupState] = {}

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        if isinstance(msg, PodUp):
            state = GroupState(msg.uid, f"/g/{msg.uid}", 0, 0)
            self.states[msg.uid] = state
            return [("groups", state)]
        return []

    def snapshot(self, edge: str) -> Message | None:
        return GroupSnapshot(tuple(self.states.values()))


def test_dropped_state_is_recovered_by_a_snapshot(short_tmp: str) -> None:
    clock = FakeClock()
    core = GroupsCore()
    actor = Actor(core, settings(short_tmp, clock, capacity=1))
    lifecycle = pusher(short_tmp, "lifecycle")
    try:
        for uid in ("a", "b", "c"):
            lifecycle.send(codec.encode(PodUp(uid, "ns", uid)))
        poll_until(lambda: actor.step(0.05) or len(core.states) == 3, what="three pods")
        assert actor.stats().counters["dropped_groups"] == 2
        sink = puller(short_tmp, "groups")
        first = recv_all(sink)
        assert first == [GroupState("a", "/g/a", 0, 0)]
        actor.step(0)  # the dirty edge is retried now that the consumer drains
        snap = recv_all(sink)
        sink.close()
        assert snap == [GroupSnapshot(tuple(core.states.values()))]
        assert {s.pod_uid for s in snap[0].states} == {"a", "b", "c"}  # type: ignore[union-attr]
    finally:
        lifecycle.close()
        actor.close()


def test_periodic_snapshot_for_a_restarted_consumer(short_tmp: str) -> None:
    clock = FakeClock()
    core = GroupsCore()
    core.states["x"] = GroupState("x", "/g/x", 0, 0)
    actor = Actor(core, settings(short_tmp, clock))
    sink = puller(short_tmp, "groups")
    try:
        clock.now += 5.0  # snapshot_interval
        actor.step(0)
        assert recv_all(sink) == [GroupSnapshot((GroupState("x", "/g/x", 0, 0),))]
    finally:
        sink.close()
        actor.close()


def test_stats_heartbeat_reaches_the_supervisor_edge(short_tmp: str) -> None:
    clock = FakeClock()
    core = Sampler(FakeLlcReader(), with_mbm=False)
    actor = Actor(core, settings(short_tmp, clock))
    sink = puller(short_tmp, "stats")
    try:
        clock.now += 1.0
        actor.step(0)
        got = recv_all(sink)
        assert got and got[-1].actor == "sampler" and got[-1].pid == os.getpid()  # type: ignore[union-attr]
        assert got[-1].ready == {"sampler": False, "resctrl": True}  # type: ignore[union-attr]
    finally:
        sink.close()
        actor.close()


def test_ipc_sockets_are_private_and_foreign_paths_refused(short_tmp: str) -> None:
    core = Sampler(FakeLlcReader(), with_mbm=False)
    actor = Actor(core, settings(short_tmp))
    path = endpoint(short_tmp, "groups")[len("ipc://") :]
    assert os.stat(path).st_mode & 0o777 == 0o600
    actor.close()
    os.unlink(path)
    with open(path, "w") as f:  # a regular file where our socket should be
        f.write("not a socket")
    with pytest.raises(PermissionError):
        Actor(Sampler(FakeLlcReader(), with_mbm=False), settings(short_tmp))


class CountingWriter(Core):
    """A stand-in writer that counts batches and what it had seen when stopped."""

    name = "writer"

    def __init__(self) -> None:
        self.count = 0
        self.count_at_stop = -1

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        self.count += 1
        return []

    def on_stop(self, now: float) -> Outputs:
        self.count_at_stop = self.count
        return []


def test_stop_drains_queued_input_before_on_stop(short_tmp: str) -> None:
    # inproc: a send is in the consumer's queue as soon as it returns (no I/O thread).
    settings_ = ActorSettings(
        runtime_dir=short_tmp, channel_capacity=5000, clock=FakeClock(),
        endpoints={"occupancy": "inproc://occupancy-drain"}, install_signal_handlers=False,
    )  # fmt: skip
    core = CountingWriter()
    actor = Actor(core, settings_)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect("inproc://occupancy-drain")
    data = codec.encode(OccupancyBatch({"pod_uid": ["u"]}))
    for _ in range(3000):  # more than one bounded drain round (1,024)
        push.send(data)
    push.close()
    actor.stop()
    assert actor.run() == 0
    assert core.count == 3000
    assert core.count_at_stop == 3000


class DeadlineCore(Core):
    """A core with no timers whose work is due at a deadline it moves itself."""

    name = "sampler"

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.calls: list[float] = []

    def next_deadline(self) -> float | None:
        return self.deadline

    def on_deadline(self, now: float) -> Outputs:
        self.calls.append(now)
        self.deadline = None  # done until something moves it again
        return []


def test_the_shell_wakes_for_a_cores_own_deadline(short_tmp: str) -> None:
    core = DeadlineCore(time.monotonic() + 0.05)
    quiet = ActorSettings(runtime_dir=short_tmp, channel_capacity=8, snapshot_interval=600.0,
                          stats_interval=600.0, install_signal_handlers=False)  # fmt: skip
    actor = Actor(core, quiet)
    try:
        # One step waits for the deadline (not for the 600 s heartbeat) and calls it.
        actor.step(max_wait=5.0)
        assert len(core.calls) == 1
        # Without a deadline nothing is called, however often the loop turns.
        for _ in range(3):
            actor.step(max_wait=0.0)
        assert len(core.calls) == 1
    finally:
        actor.close()


def test_a_deadline_before_now_is_called_once_and_a_failing_one_is_counted(
    short_tmp: str,
) -> None:
    clock = FakeClock()
    core = DeadlineCore(clock.now + 1.0)
    actor = Actor(core, settings(short_tmp, clock))
    try:
        actor.step(0)
        assert core.calls == []  # not due yet
        clock.now += 1.0
        actor.step(0)
        assert core.calls == [clock.now]

        def broken() -> float | None:
            raise RuntimeError("boom")

        core.next_deadline = broken  # type: ignore[method-assign]
        actor.step(0)  # the loop goes on; the failure is counted under its hook
        assert actor.stats().counters["hook_errors_next_deadline"] == 1
    finally:
        actor.close()


def test_a_quiet_actor_heartbeats_rarely_and_an_active_one_within_a_second(
    short_tmp: str,
) -> None:
    """An idle pipeline must not wake every process every second just to say it lives;
    but what an actor did reaches the supervisor within a second."""
    clock = FakeClock()
    quiet = ActorSettings(runtime_dir=short_tmp, channel_capacity=8, snapshot_interval=600.0,
                          stats_interval=1.0, quiet_stats_interval=5.0, clock=clock,
                          install_signal_handlers=False)  # fmt: skip
    actor = Actor(CountingWriter(), quiet)
    sink = puller(short_tmp, "stats")
    push = pusher(short_tmp, "occupancy")
    try:
        heartbeats = 0
        for _ in range(9):  # 4.5 s with nothing to do: no heartbeat
            clock.now += 0.5
            actor.step(0)
            heartbeats += len(recv_all(sink, timeout_ms=20))
        assert heartbeats == 0
        clock.now += 0.5  # 5 s: the quiet period's proof of life
        actor.step(0)
        assert len(recv_all(sink)) == 1
        # A message arrives: its count goes out one second after the last heartbeat at
        # the latest, not after another quiet period.
        push.send(codec.encode(OccupancyBatch({"pod_uid": ["u"]})))
        poll_until(lambda: actor.step(0) or actor.stats().counters.get("received_occupancy"),
                   what="the message received")  # fmt: skip
        clock.now += 1.0
        actor.step(0)
        got = recv_all(sink)
        assert len(got) == 1 and got[0].counters["received_occupancy"] == 1  # type: ignore[union-attr]
        # Quiet again: the next one waits for the quiet period.
        clock.now += 1.0
        actor.step(0)
        assert recv_all(sink, timeout_ms=50) == []
    finally:
        push.close()
        sink.close()
        actor.close()


def test_an_idle_actor_sleeps_until_its_quiet_heartbeat(short_tmp: str) -> None:
    """Real clock: with nothing due, one step blocks for the whole quiet period."""
    quiet = ActorSettings(runtime_dir=short_tmp, channel_capacity=8, snapshot_interval=600.0,
                          stats_interval=0.05, quiet_stats_interval=0.6,
                          install_signal_handlers=False)  # fmt: skip
    actor = Actor(CountingWriter(), quiet)
    sink = puller(short_tmp, "stats")
    try:
        steps = 0
        start = time.monotonic()
        while True:
            actor.step(max_wait=5.0)
            steps += 1
            if sink.poll(300):  # the heartbeat crosses the ipc socket
                break
            assert time.monotonic() - start < 5.0, "no heartbeat after the quiet period"
        assert time.monotonic() - start >= 0.6
        assert steps == 1  # no wake-up between: the loop slept through
    finally:
        sink.close()
        actor.close()
