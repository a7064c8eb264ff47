"""Restart policy with a fake clock: back-off grows, caps, resets, and gives up."""

from __future__ import annotations

import pytest

from resctrl_pipeline.supervise.policy import RestartPolicy


def test_backoff_grows_and_caps() -> None:
    p = RestartPolicy(base=1, factor=2, cap=5, stable_after=60, max_restarts=100, window=1000)
    now, delays = 0.0, []
    for _ in range(5):
        p.started("a", now)
        now += 1  # crashes one second after each start
        d = p.exited("a", now)
        assert not d.give_up
        delays.append(d.restart_at - now)
        now = d.restart_at
    assert delays == [1, 2, 4, 5, 5]


def test_backoff_resets_after_a_stable_run() -> None:
    p = RestartPolicy(base=1, factor=2, cap=30, stable_after=10, max_restarts=100, window=1000)
    p.started("a", 0)
    assert p.exited("a", 1).restart_at == 2
    p.started("a", 2)
    assert p.exited("a", 3).restart_at == 5  # second quick crash: 2 s
    p.started("a", 5)
    assert p.exited("a", 100).restart_at == 101  # ran 95 s: back to 1 s


def test_gives_up_after_too_many_restarts_in_window() -> None:
    p = RestartPolicy(base=0.1, cap=0.1, max_restarts=3, window=60)
    now = 0.0
    for _ in range(3):
        p.started("a", now)
        d = p.exited("a", now + 1)
        assert not d.give_up
        now = d.restart_at
    p.started("a", now)
    d = p.exited("a", now + 1)
    assert d.give_up and "a exited 4 times within 60s" in d.reason


def test_old_restarts_leave_the_window() -> None:
    p = RestartPolicy(base=0.1, cap=0.1, max_restarts=2, window=10)
    for t in (0.0, 5.0):
        p.started("a", t)
        assert not p.exited("a", t + 1).give_up
    p.started("a", 30)
    assert not p.exited("a", 31).give_up  # the first two are older than 10 s
    assert p.restarts("a") == 1


def test_actors_are_independent() -> None:
    p = RestartPolicy(base=1, factor=2, max_restarts=1, window=100)
    p.started("a", 0)
    p.started("b", 0)
    assert not p.exited("a", 1).give_up
    assert not p.exited("b", 1).give_up
    assert p.exited("a", 2).give_up


def test_default_policy_backs_off_to_30_s_and_gives_up_at_the_11th_exit_in_5_min() -> None:
    """The defaults users get (first back-off 0.5 s, doubling up to 30 s; more than 10
    restarts within 300 s: give up), on a monotonic clock far from zero."""
    p = RestartPolicy()
    now, delays = 100_000.0, []
    for _ in range(10):
        p.started("a", now)
        now += 1  # crashes a second after each start
        d = p.exited("a", now)
        assert not d.give_up
        delays.append(d.restart_at - now)
        now = d.restart_at
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert now - 100_000 < 300  # (the ten restarts all fall within the window)
    p.started("a", now)
    d = p.exited("a", now + 1)
    assert d.give_up and "a exited 11 times within 300s" in d.reason


def test_default_window_counts_restarts_of_the_last_300_s_exactly() -> None:
    p = RestartPolicy()
    for i in range(10):
        p.started("a", 1000.0 + i)
        assert not p.exited("a", 1000.0 + i).give_up
    # 300 s after the first exit it still counts (the 11th gives up) ...
    q = RestartPolicy()
    for i in range(10):
        q.started("a", 1000.0 + i)
        q.exited("a", 1000.0 + i)
    assert q.exited("a", 1300.0).give_up
    # ... a moment later it has left the window.
    assert not p.exited("a", 1300.001).give_up
    assert p.restarts("a") == 10


def test_default_stable_run_is_60_s() -> None:
    p = RestartPolicy()
    p.started("a", 5000.0)
    assert p.exited("a", 5001.0).restart_at == 5001.5
    p.started("a", 5001.5)
    assert p.exited("a", 5002.0).restart_at == 5003.0  # second quick crash: 1 s
    p.started("a", 5003.0)
    assert p.exited("a", 5063.0).restart_at == 5063.5  # up exactly 60 s: back to 0.5 s
    p.started("a", 5063.5)
    assert p.exited("a", 5123.0).restart_at == 5124.0  # up 59.5 s: the streak goes on


def test_a_decision_is_immutable() -> None:
    d = RestartPolicy().exited("a", 1.0)
    with pytest.raises(AttributeError):
        d.give_up = True  # type: ignore[misc]
