"""What ``up`` checks before it spawns anything: the configuration errors an actor
would otherwise find only at its start.

An actor that finds a configuration error exits with status 2, and the supervisor
then stops the whole pipeline with the actor's message (restarting it could only
fail the same way, forever). Checking here first gives the same message before any
process starts. Only facts that need no heavy import are checked; the actors' own
checks stay as the backstop.
"""

from __future__ import annotations

from resctrl_pipeline.cgroups import CgroupsUnavailable, detect_layout
from resctrl_pipeline.config import Config
from resctrl_pipeline.errors import ConfigError

__all__ = ["check"]


def check(cfg: Config, actors: tuple[str, ...]) -> None:
    """Check what the given actors will need from ``cfg`` at their start.

    Raises:
        ConfigError: ``cgroup.root`` holds neither cgroup v2 nor a v1 hierarchy (the
            reconciler's check).
    """
    if "reconciler" in actors:
        try:
            detect_layout(cfg.cgroup_root)
        except CgroupsUnavailable as err:
            raise ConfigError("cgroup.root", cfg.cgroup_root, str(err)) from err
