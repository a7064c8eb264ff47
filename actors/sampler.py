"""The sampler process: reads every pod group's counters on the sampling timer."""

from __future__ import annotations

import functools
import logging
import os

from resctrl_pipeline.actor import run_actor
from resctrl_pipeline.config import Config
from resctrl_pipeline.core import Core
from resctrl_pipeline.resctrl.info import probe
from resctrl_pipeline.resctrl.mondata import PreadReader
from resctrl_pipeline.sampling import Sampler

log = logging.getLogger("resctrl_pipeline.sampler")


def pin(cpu: int | None) -> None:
    """Pin this process to ``cpu`` (``sampling.cpu``; None: nothing to do). A CPU the
    process may not use is said once, plainly, and sampling goes on unpinned."""
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as err:
        allowed = sorted(os.sched_getaffinity(0))
        log.error("sampling.cpu = %d: cannot pin the sampler there (%s; CPUs allowed: %s): "
                  "running unpinned", cpu, err.strerror, allowed)  # fmt: skip
    else:
        log.info("sampler pinned to CPU %d", cpu)


def build(cfg: Config) -> Core:
    """The sampler core with the production reader and a probe of the resctrl root.

    The AET events to read (a column each) are those the node offers at start.
    """
    pin(cfg.sampling_cpu)
    telemetry = probe(cfg.resctrl_root).telemetry
    return Sampler(
        reader=PreadReader(telemetry=telemetry, per_domain=cfg.per_domain),
        telemetry=telemetry,
        per_domain=cfg.per_domain,
        label_keys=cfg.pod_labels,
        sampling_interval=cfg.sampling_interval,
        health_interval=cfg.health_interval,
        probe=functools.partial(probe, cfg.resctrl_root),
        probe_interval=min(cfg.retry_interval, 10.0),
        # About once a second (the heartbeat's pace); never more often than a tick.
        pod_summary_interval=max(1.0, cfg.sampling_interval) if cfg.pod_metrics else None,
    )


def main(argv: list[str] | None = None) -> int:
    """Console script ``rp-sampler``."""
    return run_actor(build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
