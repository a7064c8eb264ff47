"""The plugin side of ``nri.pkg.api.v1alpha1.Plugin``: method table and dispatch.

One :class:`PluginService` serves one runtime connection. It decodes each request,
calls the handler object's matching method (see :mod:`.events`) and encodes the reply.
It is passive by design: every reply is an empty success (no adjustments, no
updates), because an error status from RunPodSandbox, CreateContainer, StartContainer
or UpdateContainer would fail the pod or container. A handler that raises is logged
and counted; the runtime still gets its empty success.

Events arrive two ways and both are served (``nri-protocol.md`` §6.2):

* NRI v0.2-v0.11 (containerd 1.7, 2.0-2.2): ``StateChange`` carrying the event number,
  plus the dedicated ``CreateContainer``/``UpdateContainer``/``StopContainer`` calls;
* NRI v0.12+: one dedicated method per event. A dedicated method whose event has no
  handler is answered UNIMPLEMENTED, which makes such a runtime fall back to
  ``StateChange``; it is never called for events we did not subscribe to.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Final, TypeVar

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message as ProtobufMessage

from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.events import (
    EVENTS,
    ConfigureHandler,
    EventSpec,
    SynchronizeHandler,
    handled_events,
)
from resctrl_pipeline.nri.ttrpc import Code, RpcError

__all__ = ["PLUGIN_METHODS", "PLUGIN_SERVICE", "RUNTIME_SERVICE", "PluginService", "method_label"]

PLUGIN_SERVICE: Final = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SERVICE: Final = "nri.pkg.api.v1alpha1.Runtime"

_log = logging.getLogger(__name__)
_M = TypeVar("_M", bound=ProtobufMessage)

_BY_NUMBER: Final = {spec.event.value: spec for spec in EVENTS}
_BY_DEDICATED: Final = {spec.dedicated: spec for spec in EVENTS}

#: Every method of the Plugin service (the fixed set of ``requests.<method>`` labels).
PLUGIN_METHODS: Final = frozenset(
    {"Configure", "Synchronize", "Shutdown", "StateChange", *_BY_DEDICATED}
)


def method_label(method: str) -> str:
    """``method`` if the Plugin service has it, else ``other``.

    Method names come from the peer and end up as counter names and metric labels: a
    runtime inventing names must not be able to grow them without bound.
    """
    return method if method in PLUGIN_METHODS else "other"


def _decode(cls: type[_M], payload: bytes) -> _M:
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except ProtobufDecodeError as err:
        raise RpcError(Code.INVALID_ARGUMENT, f"undecodable {cls.DESCRIPTOR.name}: {err}") from err
    return msg


class PluginService:
    """Dispatches Plugin-service calls of one connection to a handler object.

    Args:
        handler: object with event methods (``run_pod_sandbox``, …) and optionally
            ``configure`` and ``synchronize``.
        mask: the subscription mask answered to Configure; only events in it reach
            the handler.
        max_sync_objects: bound on pods + containers accumulated over the chunks of
            one split Synchronize (a runtime sending more is refused).

    Attributes:
        counters: ``event.<NAME>`` per delivered event, ``event_ignored.<NAME>`` for
            events outside the subscription (``event_ignored.other`` for numbers that
            name no event), ``handler_errors``, ``sync_chunks``.
        configured: Configure has been answered.
        synchronized: the final Synchronize chunk has been answered.
    """

    def __init__(self, handler: object, mask: int, max_sync_objects: int = 200_000) -> None:
        self._handler = handler
        self._mask = mask
        self._handled = handled_events(handler)
        self._max_sync_objects = max_sync_objects
        self._sync_pods: list[nri_pb2.PodSandbox] = []
        self._sync_containers: list[nri_pb2.Container] = []
        self.counters: Counter[str] = Counter()
        self.configured = False
        self.synchronized = False

    def call(self, service: str, method: str, payload: bytes) -> bytes:
        """Serve one request; return the serialized reply message.

        Raises:
            RpcError: UNIMPLEMENTED for an unknown service or method (with the Go
                server's messages ``service <name>`` / ``method <name>``),
                INVALID_ARGUMENT for an undecodable payload, RESOURCE_EXHAUSTED for
                an oversized split Synchronize.
        """
        if service != PLUGIN_SERVICE:
            raise RpcError(Code.UNIMPLEMENTED, f"service {service}")
        if method == "Configure":
            return self._configure(payload)
        if method == "Synchronize":
            return self._synchronize(payload)
        if method == "Shutdown":
            return b""
        if method == "StateChange":
            return self._state_change(payload)
        spec = _BY_DEDICATED.get(method)
        if spec is None or (spec.via_state_change and spec.event not in self._handled):
            raise RpcError(Code.UNIMPLEMENTED, f"method {method}")
        if spec.has_container:
            request = _decode(nri_pb2.ContainerEventRequest, payload)
            self._deliver(spec, request.pod, request.container)
        else:
            self._deliver(spec, _decode(nri_pb2.PodSandboxEventRequest, payload).pod, None)
        return b""

    def _configure(self, payload: bytes) -> bytes:
        request = _decode(nri_pb2.ConfigureRequest, payload)
        _log.info(
            # Escaped and cut: these strings come from the peer and end up in the log.
            "NRI runtime %.80r %.80r (NRI %.80r), subscribing to mask 0x%x",
            request.runtime_name,
            request.runtime_version,
            request.NRI_version or "unknown",
            self._mask,
        )
        handler = self._handler
        if isinstance(handler, ConfigureHandler):
            self._guard("configure", lambda: handler.configure(request))
        self.configured = True
        return nri_pb2.ConfigureResponse(events=self._mask).SerializeToString()

    def _synchronize(self, payload: bytes) -> bytes:
        request = _decode(nri_pb2.SynchronizeRequest, payload)
        self.counters["sync_chunks"] += 1
        self._sync_pods.extend(request.pods)
        self._sync_containers.extend(request.containers)
        if len(self._sync_pods) + len(self._sync_containers) > self._max_sync_objects:
            self._sync_pods, self._sync_containers = [], []
            raise RpcError(Code.RESOURCE_EXHAUSTED, "synchronize: too many objects")
        if request.more:
            # Every chunk but the last must be echoed with more=true and no updates,
            # or the runtime drops the plugin ("does not handle split sync").
            return nri_pb2.SynchronizeResponse(more=True).SerializeToString()
        pods, containers = self._sync_pods, self._sync_containers
        self._sync_pods, self._sync_containers = [], []
        handler = self._handler
        if isinstance(handler, SynchronizeHandler):
            self._guard("synchronize", lambda: handler.synchronize(pods, containers))
        self.synchronized = True
        return b""

    def _state_change(self, payload: bytes) -> bytes:
        request = _decode(nri_pb2.StateChangeEvent, payload)
        spec = _BY_NUMBER.get(request.event)
        if spec is None:
            # The number comes from the peer: unknown ones share one counter.
            self.counters["event_ignored.other"] += 1
            return b""
        container = request.container if spec.has_container else None
        self._deliver(spec, request.pod, container)
        return b""

    def _deliver(
        self, spec: EventSpec, pod: nri_pb2.PodSandbox, container: nri_pb2.Container | None
    ) -> None:
        name = spec.event.name
        if spec.event not in self._handled or not self._mask & spec.event.bit:
            self.counters[f"event_ignored.{name}"] += 1
            return
        self.counters[f"event.{name}"] += 1
        method = getattr(self._handler, spec.method)
        if container is None:
            self._guard(spec.method, lambda: method(pod))
        else:
            self._guard(spec.method, lambda: method(pod, container))

    def _guard(self, what: str, call: Callable[[], object]) -> None:
        # A bug in a handler must neither kill the connection nor fail the pod: the
        # runtime gets its empty success and the error is counted and logged.
        try:
            call()
        except Exception:
            self.counters["handler_errors"] += 1
            _log.exception("NRI handler %s failed", what)
