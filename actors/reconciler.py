"""The reconciler process: one resctrl monitoring group per pod, every thread in it."""

from __future__ import annotations

from resctrl_pipeline.actor import run_actor
from resctrl_pipeline.cgroups import CgroupReader, CgroupsUnavailable
from resctrl_pipeline.config import Config
from resctrl_pipeline.core import Core
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.reconcile.mbm_counters import CounterPolicy
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from resctrl_pipeline.resctrl.ops import OsResctrlOps


def build(cfg: Config) -> Core:
    """The reconciler core over the resctrl root and the cgroup root of ``cfg``.

    Raises:
        ConfigError: ``cgroup.root`` holds neither cgroup v2 nor a v1 hierarchy.
    """
    try:
        cgroups = CgroupReader(cfg.cgroup_root)
    except CgroupsUnavailable as err:
        raise ConfigError("cgroup.root", cfg.cgroup_root, str(err)) from err
    return Reconciler(
        ResctrlGroups(OsResctrlOps(cfg.resctrl_root)),
        cgroups,
        prefix=cfg.group_prefix,
        retry_interval=cfg.retry_interval,
        # The listener's lifecycle snapshots come every retry_interval (run_actor).
        snapshot_period=cfg.retry_interval,
        health_interval=cfg.health_interval,
        mbm_policy=CounterPolicy(cfg.mbm_assign),
        runtime_groups=cfg.runtime_groups,
    )


def main(argv: list[str] | None = None) -> int:
    """Console script ``rp-reconciler``."""
    return run_actor(build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
