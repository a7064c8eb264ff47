"""RmidPool: allocation order, ENOSPC vs EBUSY, limbo expiry, a changed limit."""

from __future__ import annotations

import errno

import pytest

from resctrl_pipeline.emulator.rmids import RmidPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rmid_zero_is_never_handed_out_and_the_last_free_one_is_followed_by_enospc() -> None:
    pool = RmidPool(3, limbo_seconds=1.0, clock=FakeClock())
    assert [pool.allocate(), pool.allocate()] == [1, 2]
    with pytest.raises(OSError) as err:
        pool.allocate()
    assert err.value.errno == errno.ENOSPC


def test_released_rmid_is_busy_in_limbo_then_reused_after_the_limbo_time() -> None:
    clock = FakeClock()
    pool = RmidPool(2, limbo_seconds=1.0, clock=clock)
    pool.release(pool.allocate())
    assert pool.in_limbo() == (1,)
    with pytest.raises(OSError) as err:
        pool.allocate()
    assert err.value.errno == errno.EBUSY
    clock.now += 1.0
    assert pool.in_limbo() == ()
    assert pool.allocate() == 1


def test_release_limbo_frees_at_once_and_reuse_is_least_recently_freed_first() -> None:
    pool = RmidPool(4, limbo_seconds=60.0, clock=FakeClock())
    first, second, third = pool.allocate(), pool.allocate(), pool.allocate()
    pool.release(second)
    pool.release(first)
    assert pool.free_count() == 0
    pool.release_limbo()
    assert pool.free_count() == 2
    assert [pool.allocate(), pool.allocate()] == [second, first]
    assert third == 3


def test_zero_limbo_makes_a_released_rmid_reusable_immediately() -> None:
    pool = RmidPool(2, limbo_seconds=0.0, clock=FakeClock())
    pool.release(pool.allocate())
    assert pool.allocate() == 1


def test_lowering_the_limit_keeps_used_rmids_and_raising_it_adds_free_ones() -> None:
    pool = RmidPool(4, limbo_seconds=0.0, clock=FakeClock())
    held = [pool.allocate() for _ in range(3)]
    pool.set_limit(2)
    assert pool.num_rmids == 2
    pool.release(held[2])  # RMID 3 is above the limit: not reusable
    with pytest.raises(OSError) as err:
        pool.allocate()
    assert err.value.errno == errno.ENOSPC
    pool.set_limit(6)
    assert [pool.allocate() for _ in range(3)] == [3, 4, 5]


@pytest.mark.parametrize("bad", [0, -1])
def test_a_limit_below_one_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError):
        RmidPool(bad, limbo_seconds=0.0, clock=FakeClock())
    with pytest.raises(ValueError):
        RmidPool(2, limbo_seconds=0.0, clock=FakeClock()).set_limit(bad)
