"""The nri-listener actor's core: the NRI plugin connection behind the shell's hooks.

:class:`NriListenerCore` adapts :class:`~.plugin.NriPlugin` and
:class:`~.listener.NriListener` to :class:`resctrl_pipeline.core.Core`:

* the NRI socket is a watched descriptor (it changes with every reconnect, and the
  shell re-reads :meth:`watched_fds` on every step);
* a short periodic timer drives connecting, reconnect backoff and the setup timeout;
* outputs are routed by kind to the ``lifecycle`` and ``metadata`` edges;
* snapshots for the shell's re-sends exist only once a Synchronize has been seen: an
  empty snapshot sent before that would tell the reconciler that no pod exists, and
  it would delete every group as an orphan.

Answer latencies become cumulative histogram counters in the heartbeat
(``nri_answer_seconds_bucket_le_<bound>``, ``…_sum``, ``…_count``), so the supervisor
can export them without any knowledge of NRI; so does the time the StartContainer fast
path added to its answers (``fastpath_seconds_…``), with a ``fast_path_on`` gauge.
"""

from __future__ import annotations

from typing import Final

from resctrl_pipeline.core import Core, Outputs, Stats
from resctrl_pipeline.messages import LIFECYCLE_KINDS, METADATA_KINDS, Message
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.plugin import NriPlugin

__all__ = ["LatencyHistogram", "NriListenerCore"]

BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Upper bounds in seconds; 2 s is containerd's default request timeout."""


class LatencyHistogram:
    """Cumulative answer-latency histogram in Prometheus form (plain counters)."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # last: +Inf
        self._sum = 0.0
        self.window_max = 0.0
        """Slowest answer since the owner last reset it to 0 (one heartbeat window)."""

    def observe(self, seconds: float) -> None:
        """Count one answer."""
        self._sum += seconds
        self.window_max = max(self.window_max, seconds)
        for i, bound in enumerate(self._bounds):
            if seconds <= bound:
                self._counts[i] += 1
                return
        self._counts[-1] += 1

    def counters(self, name: str) -> dict[str, float]:
        """Cumulative ``<name>_bucket_le_<bound>``, ``<name>_sum``, ``<name>_count``."""
        out: dict[str, float] = {}
        running = 0
        for bound, count in zip((*self._bounds, "inf"), self._counts, strict=True):
            running += count
            out[f"{name}_bucket_le_{bound}"] = float(running)
        out[f"{name}_sum"] = self._sum
        out[f"{name}_count"] = float(running)
        return out


class NriListenerCore(Core):
    """Core of the nri-listener process.

    Args:
        plugin: the NRI connection (owns the socket).
        listener: the handler object given to ``plugin`` (owns the pod map).

    The plugin's time-driven work (connect after the backoff, give up a connection
    stuck in setup) runs at the plugin's own :meth:`NriPlugin.next_deadline`: a
    connected listener with nothing to answer never wakes for the runtime's sake.
    """

    name = "nri-listener"

    def __init__(self, plugin: NriPlugin, listener: NriListener) -> None:
        self.plugin = plugin
        self.listener = listener
        self.latency = LatencyHistogram()
        self.fast_path_latency = LatencyHistogram()

    def on_start(self, now: float) -> Outputs:
        return self._route(self.plugin.on_timer(now))

    def next_deadline(self) -> float | None:
        return self.plugin.next_deadline()

    def on_deadline(self, now: float) -> Outputs:
        return self._route(self.plugin.on_timer(now))

    def watched_fds(self) -> list[int]:
        fd = self.plugin.fileno()
        return [fd] if fd >= 0 else []

    def on_readable(self, fd: int, now: float) -> Outputs:
        return self._route(self.plugin.on_readable(now))

    def snapshot(self, edge: str) -> Message | None:
        if not self.listener.synchronized:
            return None
        lifecycle, metadata = self.listener.snapshot()
        return {"lifecycle": lifecycle, "metadata": metadata}.get(edge)

    def on_stop(self, now: float) -> Outputs:
        self.plugin.close()
        return self._route(self.listener.drain())

    def statistics(self) -> Stats:
        for _method, seconds in self.plugin.take_latencies():
            self.latency.observe(seconds)
        fast_path = self.listener.fast_path
        if fast_path is not None:
            fast_path.poll()
            for seconds in fast_path.take_seconds():
                self.fast_path_latency.observe(seconds)
        counters = {
            **self.plugin.all_counters(),
            **{f"nri_{k}": float(v) for k, v in self.listener.all_counters().items()},
            **self.latency.counters("nri_answer_seconds"),
            **self.fast_path_latency.counters("fastpath_seconds"),
        }
        gauges = {
            **self.plugin.gauges(),
            "nri_pods": float(len(self.listener.state.pods)),
            "nri_containers": float(len(self.listener.state.containers)),
            "nri_answer_seconds_max": self.latency.window_max,
        }
        if fast_path is not None:
            gauges["fast_path_on"] = float(fast_path.policy.on)
        self.latency.window_max = 0.0
        connected = self.plugin.connected
        info = {"nri_runtime": self.listener.runtime}
        if not connected:
            info["nri_connected"] = f"not registered with {self.plugin.config.socket_path}"
        return Stats(counters, gauges, {"nri_connected": connected}, info)

    @staticmethod
    def _route(messages: list[Message]) -> Outputs:
        out: Outputs = []
        for msg in messages:
            if isinstance(msg, LIFECYCLE_KINDS):
                out.append(("lifecycle", msg))
            elif isinstance(msg, METADATA_KINDS):
                out.append(("metadata", msg))
        return out
