"""Test helpers: waiting on conditions with deadlines, and fake resctrl trees."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from resctrl_pipeline.messages import OccupancyBatch

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01,
               what: str = "condition") -> T:  # fmt: skip
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_resctrl_tree(
    root: str,
    domains: Iterable[int] = (0, 1),
    features: Iterable[str] = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes"),
    num_rmids: int = 64,
    snc: int = 0,
) -> None:
    """Lay out a resctrl-like tree with plain files (root group, info/, mon_groups/)."""
    features = tuple(features)
    os.makedirs(os.path.join(root, "info", "L3_MON"), exist_ok=True)
    with open(os.path.join(root, "info", "L3_MON", "mon_features"), "w") as f:
        f.write("\n".join(features) + "\n")
    with open(os.path.join(root, "info", "L3_MON", "num_rmids"), "w") as f:
        f.write(f"{num_rmids}\n")
    os.makedirs(os.path.join(root, "mon_groups"), exist_ok=True)
    make_group(root, domains, features, snc)


def make_group(
    path: str,
    domains: Iterable[int] = (0, 1),
    features: Iterable[str] = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes"),
    snc: int = 0,
    value: int = 0,
) -> str:
    """Create a group directory with ``mon_data`` counters all set to ``value``."""
    for d in domains:
        base = os.path.join(path, "mon_data", f"mon_L3_{d:02d}")
        os.makedirs(base, exist_ok=True)
        for feat in features:
            if snc:
                for s in range(snc):
                    sub = os.path.join(base, f"mon_sub_L3_{d * snc + s:02d}")
                    os.makedirs(sub, exist_ok=True)
                    with open(os.path.join(sub, feat), "w") as f:
                        f.write(f"{value}\n")
            with open(os.path.join(base, feat), "w") as f:
                f.write(f"{value * max(1, snc)}\n")
    with open(os.path.join(path, "tasks"), "a"):
        pass
    return path


def set_counter(group: str, domain: int, feature: str, text: str) -> None:
    """Overwrite one counter file's content (e.g. ``"123\\n"`` or ``"Unavailable\\n"``)."""
    with open(os.path.join(group, "mon_data", f"mon_L3_{domain:02d}", feature), "w") as f:
        f.write(text)


#: Examples per fuzzer under the ``ci`` Hypothesis profile (``.ci/run``).
CI_EXAMPLES = 200


def fuzz_examples(quick: int) -> int:
    """How many examples a fuzzer runs: ``quick`` on a developer's run, at least
    :data:`CI_EXAMPLES` under the ``ci`` Hypothesis profile (``--hypothesis-profile=ci``)."""
    from hypothesis import settings

    if settings.get_current_profile_name() == "ci":
        return max(quick, CI_EXAMPLES)
    return quick


def write_batch(batch: OccupancyBatch, out: Path) -> Path:
    """Write one batch through the production Parquet sink into ``out``; the file.

    Imported here, not at the top: most users of this module never load pyarrow."""
    from resctrl_pipeline.sink import ParquetSink

    sink = ParquetSink(str(out), node="n1")
    sink.add(batch, 0.0)
    sink.close(1.0)
    [name] = [n for n in os.listdir(out) if n.endswith(".parquet")]
    return out / name
