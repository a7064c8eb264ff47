"""Intel AET (``PERF_PKG``) event values of an emulated node, derived from CPU time.

The kernel (v7.0, ``intel_aet_read_event``) prints ``core_energy`` (Joules) and
``activity`` (Farads) as fixed-point numbers with 18 fraction bits, formatted
``%llu.%06llu`` with the fraction rounded to nearest; the other seven events are
plain decimal integers. All are cumulative for the life of the RMID. Here each event
grows at a fixed rate per CPU-second the group used on the package (made-up but
plausible rates, :data:`RATES`), so a busy group's values climb and an idle one's
stand still.
"""

from __future__ import annotations

__all__ = ["FIXED_POINT", "FRACTION_BITS", "RATES", "format_fixed", "render"]

FRACTION_BITS = 18
"""Fraction bits of the fixed-point events."""

FIXED_POINT = frozenset({"core_energy", "activity"})
"""Events printed as fixed-point decimals; the others are integers."""

RATES: dict[str, float] = {
    "core_energy": 6.5,  # Joules per CPU-second
    "activity": 0.75,  # Farads per CPU-second
    "stalls_llc_hit": 1.2e8,
    "c1_res": 4.0e6,
    "unhalted_core_cycles": 2.4e9,
    "stalls_llc_miss": 3.5e7,
    "c6_res": 1.0e6,
    "unhalted_ref_cycles": 2.0e9,
    "uops_retired": 3.1e9,
}
"""Growth of each event per CPU-second."""


def format_fixed(raw: int) -> str:
    """A fixed-point value (18 fraction bits) as the kernel prints it, without ``\\n``.

    Integer part, a dot, and six decimals of the fraction rounded to nearest (the
    kernel adds half an LSB before the shift and does not carry into the integer).
    """
    frac = (raw & ((1 << FRACTION_BITS) - 1)) * 10**6
    frac = (frac + (1 << (FRACTION_BITS - 1))) >> FRACTION_BITS
    return f"{raw >> FRACTION_BITS}.{frac:06d}"


def render(event: str, cpu_seconds: float) -> str:
    """What a read of ``event`` shows after ``cpu_seconds`` of work (no ``\\n``).

    Raises:
        KeyError: not an AET event.
    """
    value = cpu_seconds * RATES[event]
    if event in FIXED_POINT:
        return format_fixed(round(value * (1 << FRACTION_BITS)))
    return str(int(value))
