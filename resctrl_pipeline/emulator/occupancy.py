"""Plausible cache occupancy and memory traffic for emulated monitoring groups.

Real ``llc_occupancy`` grows while a group's threads run and shrinks as other work
evicts its lines; ``mbm_*_bytes`` only ever grow. This module reproduces that shape
from the CPU time the group's threads actually use, so a busy pod shows more cache
than an idle one. Everything here is pure: CPU readings and the time come in as
arguments (the caller reads ``/proc`` and the clock).

* :class:`CpuLedger` turns cumulative per-thread CPU ticks into CPU seconds used per
  *leaf* since the previous call. A leaf is the smallest monitoring domain: an L3
  domain, or one sub-NUMA node of it. A thread's time goes to the leaf of the CPU it
  last ran on.
* :class:`OccupancyModel` keeps, per key (a group) and leaf, an occupancy that moves
  exponentially toward a target proportional to recent CPU use (``fill_per_cpu`` of
  the leaf per busy CPU), bounded so that all keys together never exceed the leaf's
  capacity; MBM byte counts that grow with CPU time; and the CPU seconds themselves,
  from which :mod:`.telemetry` derives the AET (``PERF_PKG``) values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from resctrl_pipeline.emulator.threads import CLOCK_TICKS, ThreadStat

__all__ = ["CacheParams", "CpuLedger", "LeafCounters", "OccupancyModel"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class CacheParams:
    """Shape of the emulated cache and how fast it responds.

    Attributes:
        leaf_bytes: LLC capacity of one leaf (an L3 domain, or one SNC node of it).
        resolution: occupancy is reported in multiples of this (the CPUID upscaling
            factor of real hardware).
        fill_per_cpu: share of a leaf that one fully busy CPU occupies when settled.
        fill_seconds: time constant of the approach to a higher target.
        evict_seconds: time constant of the decay toward a lower target.
        mbm_bytes_per_cpu_second: memory traffic per CPU-second of work.
        local_fraction: share of that traffic counted as NUMA-local.
    """

    leaf_bytes: int = 32 * 1024 * 1024
    resolution: int = 64 * 1024
    fill_per_cpu: float = 0.5
    fill_seconds: float = 1.0
    evict_seconds: float = 3.0
    mbm_bytes_per_cpu_second: float = 2.0e9
    local_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.leaf_bytes <= 0 or self.resolution <= 0:
            raise ValueError("leaf_bytes and resolution must be positive")
        if self.fill_seconds <= 0 or self.evict_seconds <= 0:
            raise ValueError("time constants must be positive")
        if not 0.0 <= self.local_fraction <= 1.0:
            raise ValueError("local_fraction must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class LeafCounters:
    """The three counters of one key on one leaf, in bytes, as a read reports them,
    and the CPU seconds the key used there since it was tracked."""

    llc_occupancy: int
    mbm_total_bytes: int
    mbm_local_bytes: int
    cpu_seconds: float = 0.0


class _KeyState:
    """Unquantised per-leaf values of one key."""

    __slots__ = ("cpu", "mbm", "occupancy")

    def __init__(self, leaves: int) -> None:
        self.occupancy = [0.0] * leaves
        self.mbm = [0.0] * leaves
        self.cpu = [0.0] * leaves


class OccupancyModel(Generic[K]):
    """Occupancy and MBM counters per key and leaf, advanced by CPU use.

    Args:
        params: cache shape and time constants.
        leaves: number of leaves (monitoring domains at the finest level).
        now: the time of the initial state, in seconds on any monotonic scale.
    """

    def __init__(self, params: CacheParams, leaves: int, now: float) -> None:
        if leaves < 1:
            raise ValueError("at least one leaf")
        self.params = params
        self.leaves = leaves
        self._now = now
        self._keys: dict[K, _KeyState] = {}

    def track(self, key: K) -> None:
        """Start counting for ``key`` from zero (a freshly allocated RMID)."""
        self._keys[key] = _KeyState(self.leaves)

    def forget(self, key: K) -> None:
        """Stop counting for ``key``; unknown keys are ignored."""
        self._keys.pop(key, None)

    def advance(self, now: float, cpu_seconds: Mapping[K, Sequence[float]]) -> None:
        """Move every tracked key forward to ``now``.

        Args:
            now: the current time; a time not after the previous one changes nothing.
            cpu_seconds: per key, CPU seconds used on each leaf since the previous
                call. Keys missing here were idle; untracked keys are ignored.
        """
        dt = now - self._now
        if dt <= 0:
            return
        self._now = now
        p = self.params
        for leaf in range(self.leaves):
            targets: dict[K, float] = {}
            for key, state in self._keys.items():
                used = cpu_seconds.get(key)
                seconds = used[leaf] if used is not None else 0.0
                targets[key] = p.leaf_bytes * min(1.0, seconds / dt * p.fill_per_cpu)
                state.mbm[leaf] += seconds * p.mbm_bytes_per_cpu_second
                state.cpu[leaf] += seconds
            total_target = sum(targets.values())
            scale = p.leaf_bytes / total_target if total_target > p.leaf_bytes else 1.0
            for key, state in self._keys.items():
                target = targets[key] * scale
                current = state.occupancy[leaf]
                tau = p.fill_seconds if target > current else p.evict_seconds
                state.occupancy[leaf] = target + (current - target) * math.exp(-dt / tau)
            # Keys converge at different speeds, so the sum can overshoot briefly:
            # a filling group evicts the others, never the cache's own capacity.
            total = sum(state.occupancy[leaf] for state in self._keys.values())
            if total > p.leaf_bytes:
                for state in self._keys.values():
                    state.occupancy[leaf] *= p.leaf_bytes / total

    def counters(self, key: K, leaf: int) -> LeafCounters | None:
        """Counters of ``key`` on ``leaf`` (occupancy quantised), None if untracked."""
        state = self._keys.get(key)
        if state is None:
            return None
        res = self.params.resolution
        mbm = state.mbm[leaf]
        return LeafCounters(
            llc_occupancy=int(state.occupancy[leaf] // res) * res,
            mbm_total_bytes=int(mbm),
            mbm_local_bytes=int(mbm * self.params.local_fraction),
            cpu_seconds=state.cpu[leaf],
        )


class CpuLedger(Generic[K]):
    """Turns cumulative CPU readings into CPU seconds per leaf since the last call.

    A thread is known by (TID, start time): a reused TID starts from a fresh baseline.
    The first reading of a thread only sets its baseline, so CPU time spent before
    it was first seen is not counted.

    Args:
        leaf_of_cpu: maps a CPU number to its leaf index.
        leaves: number of leaves.
        ticks_per_second: unit of the readings (``SC_CLK_TCK``).
    """

    def __init__(
        self,
        leaf_of_cpu: Callable[[int], int],
        leaves: int,
        ticks_per_second: int = CLOCK_TICKS,
    ) -> None:
        self._leaf_of_cpu = leaf_of_cpu
        self._leaves = leaves
        self._tick = 1.0 / ticks_per_second
        self._threads: dict[int, tuple[int, int]] = {}
        self._host: list[int] | None = None

    def account(self, stats: Mapping[K, Iterable[ThreadStat]]) -> dict[K, list[float]]:
        """CPU seconds per leaf used by each key's threads since the previous call.

        Threads absent from ``stats`` are forgotten (they exited or were not asked).
        """
        seen: dict[int, tuple[int, int]] = {}
        usage: dict[K, list[float]] = {}
        for key, threads in stats.items():
            per_leaf = [0.0] * self._leaves
            for st in threads:
                seen[st.tid] = (st.start_ticks, st.cpu_ticks)
                start, before = self._threads.get(st.tid, (st.start_ticks, st.cpu_ticks))
                if start == st.start_ticks and st.cpu_ticks > before:
                    per_leaf[self._leaf_of_cpu(st.cpu)] += (st.cpu_ticks - before) * self._tick
            usage[key] = per_leaf
        self._threads = seen
        return usage

    def account_host(self, busy_ticks: Sequence[int]) -> list[float]:
        """CPU seconds per leaf the whole host used since the previous call.

        Args:
            busy_ticks: cumulative busy ticks per CPU (``/proc/stat``).
        """
        per_leaf = [0.0] * self._leaves
        if self._host is not None:
            for cpu, (now, before) in enumerate(zip(busy_ticks, self._host, strict=False)):
                if now > before:
                    per_leaf[self._leaf_of_cpu(cpu)] += (now - before) * self._tick
        self._host = list(busy_ticks)
        return per_leaf
