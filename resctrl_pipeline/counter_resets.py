"""Carrying cumulative MBM counts across counter resets, so rates never spike.

A group's MBM counts restart at 0 when the group is re-created and whenever a counter
is (re)assigned to it (AMD ABMC; ``resctrl-modern.md`` §1). :class:`CounterResets`
keeps, per group, the last raw value and an offset, and reports ``offset + raw``: the
reported value never decreases, and the difference between two reports is what the
hardware counted in between. A reset is seen as a raw value below the last one, or a
new assignment epoch from the reconciler (which catches a reset followed by more
traffic than was counted before). While a value is unknown (``None``: no counter,
``Unavailable``) nothing is counted and the offset is kept.

Hand-written: the rule is three lines per value and must run per row per tick.
"""

from __future__ import annotations

__all__ = ["CounterResets"]


class CounterResets:
    """Per-key continuity of two cumulative counters (total and local bytes)."""

    def __init__(self) -> None:
        # key -> [epoch, last raw total, last raw local, offset total, offset local]
        self._state: dict[str, list[int]] = {}

    def apply(
        self,
        keys: list[str],
        epochs: list[int],
        totals: list[int | None],
        locals_: list[int | None],
    ) -> None:
        """Replace raw values in ``totals``/``locals_`` by continued ones, in place.

        A key ``""`` leaves its values alone (followed elsewhere).
        """
        state = self._state
        for i, key in enumerate(keys):
            if not key:
                continue
            s = state.get(key)
            if s is None:
                s = state[key] = [epochs[i], 0, 0, 0, 0]
            elif s[0] != epochs[i]:
                # Counters were (re)assigned: counting restarted from 0.
                s[0] = epochs[i]
                s[3] += s[1]
                s[4] += s[2]
                s[1] = s[2] = 0
            total, local = totals[i], locals_[i]
            if total is not None:
                if total < s[1]:
                    s[3] += s[1]
                s[1] = total
                totals[i] = s[3] + total
            if local is not None:
                if local < s[2]:
                    s[4] += s[2]
                s[2] = local
                locals_[i] = s[4] + local

    def forget(self, key: str) -> None:
        """Drop a key (its group is gone)."""
        self._state.pop(key, None)
