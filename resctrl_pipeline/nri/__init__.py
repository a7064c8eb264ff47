"""NRI: the plugin side of containerd's Node Resource Interface, in our own Python.

Bottom to top (facts: ``shared/reference/nri-protocol.md``; guide: ``docs/nri.md``):

* :mod:`.mux`: the 8-byte-header multiplexer (logical connection 1 = plugin service,
  2 = runtime service); :mod:`.ttrpc`: 10-byte-header RPC messages and their
  Request/Response envelopes; :mod:`.nri_pb2` is generated from ``nri.proto`` (our
  subset of the NRI messages) by ``scripts/gen_nri_proto.sh``.
* :mod:`.events`: event numbers, the subscription mask and one handler protocol per
  event; :mod:`.service`: dispatch of the runtime's calls to a handler object;
  :mod:`.session`: one connection as a sans-I/O state machine.
* :mod:`.plugin`: :class:`NriPlugin`, the socket, reconnect backoff and timers for a
  non-blocking poll loop.
* :mod:`.translate` and :mod:`.state`: NRI objects → lifecycle and metadata messages,
  with the listener's own pod/container map; :mod:`.listener`: :class:`NriListener`,
  the handlers (and the StartContainer fast path); :mod:`.listener_core`: the actor
  core for the shared shell.

The runtime side of the protocol serves only the emulated runtime and lives with it
(:mod:`resctrl_pipeline.emulator.runtime_session`, ``.runtime_events``).
"""

from resctrl_pipeline.nri.listener import FastPathPolicy, NriListener
from resctrl_pipeline.nri.listener_core import NriListenerCore
from resctrl_pipeline.nri.plugin import NriPlugin, PluginConfig

__all__ = ["FastPathPolicy", "NriListener", "NriListenerCore", "NriPlugin", "PluginConfig"]
