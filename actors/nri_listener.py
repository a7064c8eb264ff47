"""The nri-listener process: containerd's NRI events → lifecycle and metadata edges."""

from __future__ import annotations

import functools

from resctrl_pipeline.actor import run_actor
from resctrl_pipeline.config import Config
from resctrl_pipeline.core import Core
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.listener_core import NriListenerCore
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig
from resctrl_pipeline.resctrl.groups import place_init_pid


def build(cfg: Config) -> Core:
    """The listener core, with the StartContainer fast path writing to resctrl."""
    listener = NriListener(
        place_init_pid=functools.partial(
            place_init_pid,
            cfg.resctrl_root,
            cfg.group_prefix,
            proc="/proc",
            leave_runtime_groups=cfg.runtime_groups != "move",
        )
    )
    plugin = NriPlugin(
        listener,
        PluginConfig(
            socket_path=cfg.nri_socket,
            name=cfg.nri_plugin_name,
            index=cfg.nri_plugin_index,
        ),
    )
    return NriListenerCore(plugin, listener)


def main(argv: list[str] | None = None) -> int:
    """Console script ``rp-nri-listener``."""
    return run_actor(build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
