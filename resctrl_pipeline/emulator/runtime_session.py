"""The runtime side of one plugin connection, as a sans-I/O state machine.

This is what containerd's NRI adaptation does towards one external plugin, reduced to
what tests and the demo need: serve ``RegisterPlugin`` on logical connection 2, call
``Configure`` and then ``Synchronize`` (split into chunks on request), then deliver
events, one call at a time, each with a deadline. Behaviour follows the facts in
``nri-protocol.md`` §5-6, including the ones observed on the wire:

* a refused registration is answered with code 2 and the socket is left open;
* a subscription mask with bits the runtime does not know closes the connection;
* every chunk of a split Synchronize but the last must be answered ``more=true``;
* a call not answered within the request timeout closes the connection;
* NRI v0.12-style delivery (one method per event) switches the connection to
  ``StateChange`` for good at the first UNIMPLEMENTED from such a method.

The I/O around it (sockets, thread, clock) lives in
:mod:`resctrl_pipeline.emulator.nri_runtime`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from google.protobuf.message import DecodeError as ProtobufDecodeError

from resctrl_pipeline.errors import PipelineError
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.events import EVENTS, Event, EventSpec
from resctrl_pipeline.nri.mux import (
    MAX_SEND_PAYLOAD,
    PLUGIN_SERVICE_CONN,
    RUNTIME_SERVICE_CONN,
    FrameReader,
    frame_header,
)
from resctrl_pipeline.nri.service import PLUGIN_SERVICE, RUNTIME_SERVICE
from resctrl_pipeline.nri.ttrpc import (
    ClientStreams,
    Code,
    MalformedMessage,
    MessageReader,
    MessageType,
    Oversized,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

__all__ = ["Answer", "Delivery", "Phase", "PluginGone", "RuntimeSession"]

_VALID_MASK: Final = {False: 0x7FF, True: 0x3FFF}  # by "dedicated delivery" (NRI >= v0.10)
_INDEX = re.compile(r"[0-9]{2}")
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_NAMESPACE_METADATA: Final = (("containerd-namespace-ttrpc", "k8s.io"),)
_SPECS: Final = {spec.event: spec for spec in EVENTS}

Snapshot = Callable[[], tuple[Sequence[nri_pb2.PodSandbox], Sequence[nri_pb2.Container]]]


class Delivery(Enum):
    """How events reach the plugin."""

    STATE_CHANGE = "state-change"
    """NRI v0.2-v0.11 (containerd 1.7-2.2): StateChange + Create/Update/StopContainer."""
    DEDICATED = "dedicated"
    """NRI v0.12+: one method per event, StateChange only as the fallback."""


class Phase(Enum):
    """Where a connection is in its life."""

    REGISTERING = "registering"
    CONFIGURING = "configuring"
    SYNCING = "syncing"
    READY = "ready"


class PluginGone(PipelineError):
    """The runtime closes this plugin's connection; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Answer:
    """One call answered by the plugin: what, how fast, with which status code."""

    method: str
    label: str
    stream_id: int
    latency: float
    code: int


@dataclass(slots=True)
class _Call:
    method: str
    label: str
    payload: bytes
    kind: str  # "configure", "sync-more", "sync-last" or "event"
    event: Event | None = None
    pod: nri_pb2.PodSandbox | None = None
    container: nri_pb2.Container | None = None


def go_frames(conn_id: int, message: bytes) -> bytes:
    """Frame ``message`` as the Go multiplexer does: one frame if it fits in 4096
    bytes, else 4096 bytes and then everything else in a single (large) frame."""
    if len(message) <= MAX_SEND_PAYLOAD:
        return frame_header(conn_id, len(message)) + message
    head, rest = message[:MAX_SEND_PAYLOAD], message[MAX_SEND_PAYLOAD:]
    return frame_header(conn_id, len(head)) + head + frame_header(conn_id, len(rest)) + rest


class RuntimeSession:
    """Runtime-side protocol state of one connection.

    Args:
        snapshot: returns the pods and containers to list at Synchronize time.
        delivery: event delivery style (also decides which mask bits are valid).
        sync_chunk: at most this many pods and this many containers per Synchronize
            message (None: one message).
        request_timeout: seconds the plugin has for each call.
        runtime_name, runtime_version: reported in Configure.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        delivery: Delivery = Delivery.STATE_CHANGE,
        sync_chunk: int | None = None,
        request_timeout: float = 2.0,
        runtime_name: str = "containerd",
        runtime_version: str = "emulated",
    ) -> None:
        self._snapshot = snapshot
        self._dedicated = delivery is Delivery.DEDICATED
        self._sync_chunk = sync_chunk
        self._timeout = request_timeout
        self._runtime = (runtime_name, runtime_version)
        self._frames = FrameReader()
        self._readers = {
            PLUGIN_SERVICE_CONN: MessageReader(),
            RUNTIME_SERVICE_CONN: MessageReader(),
        }
        self._client = ClientStreams()
        self._queue: deque[_Call] = deque()
        self._inflight: tuple[int, _Call, float] | None = None
        self._out = bytearray()
        self.phase = Phase.REGISTERING
        self.name = ""
        self.index = ""
        self.mask = 0
        self.fell_back = False
        self.answers: list[Answer] = []

    @property
    def busy(self) -> bool:
        """A call is in flight or queued."""
        return self._inflight is not None or bool(self._queue)

    def take_output(self) -> bytes:
        """Return and forget the bytes queued for the socket."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def subscribed(self, event: Event) -> bool:
        """Whether the plugin's mask (0 = everything) includes ``event``."""
        return self.mask == 0 or bool(self.mask & event.bit)

    def deliver(
        self, now: float, event: Event, pod: nri_pb2.PodSandbox, container: nri_pb2.Container | None
    ) -> None:
        """Queue ``event`` if the plugin has been synchronized (or is being) and wants it."""
        if self.phase not in (Phase.SYNCING, Phase.READY) or not self.subscribed(event):
            return
        self._queue.append(self._event_call(_SPECS[event], pod, container))
        self._pump(now)

    def check_deadline(self, now: float) -> None:
        """Raises :class:`PluginGone` if the call in flight is past its deadline."""
        if self._inflight is not None and now - self._inflight[2] > self._timeout:
            raise PluginGone(f"{self._inflight[1].label}: context deadline exceeded")

    def receive(self, now: float, data: bytes) -> None:
        """Process bytes from the plugin. Raises :class:`PluginGone` to close."""
        try:
            for conn, piece in self._frames.feed(data):
                for item in self._readers[conn].feed(piece):
                    if isinstance(item, Oversized):
                        raise PluginGone(f"oversized message ({item.length} bytes)")
                    if conn == RUNTIME_SERVICE_CONN and item.type == MessageType.REQUEST:
                        self._serve(item.stream_id, item.body)
                    elif conn == PLUGIN_SERVICE_CONN and item.type == MessageType.RESPONSE:
                        self._reply(now, item.stream_id, item.body)
        except PluginGone:
            raise
        except (PipelineError, ProtobufDecodeError) as err:
            raise PluginGone(f"protocol error: {err}") from err
        self._pump(now)

    # --- runtime service (we are the server on connection 2) -------------------------

    def _serve(self, stream_id: int, body: bytes) -> None:
        try:
            request = decode_request(body)
        except MalformedMessage as err:
            self._answer(stream_id, Code.INVALID_ARGUMENT, str(err))
            return
        if request.service != RUNTIME_SERVICE:
            self._answer(stream_id, Code.UNIMPLEMENTED, f"service {request.service}")
        elif request.method == "RegisterPlugin":
            self._register(stream_id, request.payload)
        elif request.method == "UpdateContainers":
            self._answer(stream_id, payload=b"")  # nothing to update: every update "worked"
        else:
            self._answer(stream_id, Code.UNIMPLEMENTED, f"method {request.method}")

    def _register(self, stream_id: int, payload: bytes) -> None:
        req = nri_pb2.RegisterPluginRequest()
        try:
            req.ParseFromString(payload)
        except ProtobufDecodeError as err:
            self._answer(stream_id, Code.UNKNOWN, f"invalid registration: {err}")
            return
        if self.phase is not Phase.REGISTERING:
            self._answer(stream_id, Code.UNKNOWN, "plugin already registered")
        elif not _INDEX.fullmatch(req.plugin_idx):
            msg = f'invalid plugin index "{req.plugin_idx}", must be 2 digits'
            self._answer(stream_id, Code.UNKNOWN, f"invalid plugin index: {msg}")
        elif not _NAME.fullmatch(req.plugin_name):
            self._answer(stream_id, Code.UNKNOWN, f'invalid plugin name "{req.plugin_name}"')
        else:
            self.name, self.index = req.plugin_name, req.plugin_idx
            self._answer(stream_id, payload=b"")
            self.phase = Phase.CONFIGURING
            configure = nri_pb2.ConfigureRequest(
                runtime_name=self._runtime[0],
                runtime_version=self._runtime[1],
                registration_timeout=5000,
                request_timeout=int(self._timeout * 1000),
            )
            self._queue.append(
                _Call("Configure", "Configure", configure.SerializeToString(), "configure")
            )

    def _answer(
        self, stream_id: int, code: int = Code.OK, message: str = "", payload: bytes = b""
    ) -> None:
        response = encode_response(stream_id, payload, code=code, message=message)
        self._out += go_frames(RUNTIME_SERVICE_CONN, response)

    # --- plugin service (we are the client on connection 1) --------------------------

    def _pump(self, now: float) -> None:
        if self._inflight is not None or not self._queue:
            return
        call = self._queue.popleft()
        stream_id = self._client.open(call.method)
        metadata = _NAMESPACE_METADATA if call.kind == "event" else ()
        message = encode_request(
            stream_id,
            PLUGIN_SERVICE,
            call.method,
            call.payload,
            timeout_nano=int(self._timeout * 1e9),
            metadata=metadata,
        )
        self._out += go_frames(PLUGIN_SERVICE_CONN, message)
        self._inflight = (stream_id, call, now)

    def _reply(self, now: float, stream_id: int, body: bytes) -> None:
        if self._inflight is None or self._inflight[0] != stream_id:
            return  # a reply for no call in flight: ignored, as a Go client does
        _, call, sent_at = self._inflight
        self._inflight = None
        self._client.close(stream_id)
        response = decode_response(body)
        code = response.status.code if response.HasField("status") else Code.OK
        self.answers.append(Answer(call.method, call.label, stream_id, now - sent_at, code))
        if call.kind == "event":
            self._event_reply(call, code)
        elif code != Code.OK:
            raise PluginGone(f"{call.label} failed: code {code}: {response.status.message}")
        elif call.kind == "configure":
            self._configured(response.payload)
        else:
            self._synchronized(call, response.payload)

    def _configured(self, payload: bytes) -> None:
        reply = nri_pb2.ConfigureResponse()
        reply.ParseFromString(payload)
        invalid = reply.events & ~_VALID_MASK[self._dedicated]
        if invalid:
            raise PluginGone(f"invalid plugin events: 0x{invalid:x}")
        self.mask = reply.events
        self.phase = Phase.SYNCING
        pods, containers = self._snapshot()
        step = self._sync_chunk or max(len(pods), len(containers), 1)
        chunks = max((len(pods) + step - 1) // step, (len(containers) + step - 1) // step, 1)
        for i in range(chunks):
            more = i < chunks - 1
            request = nri_pb2.SynchronizeRequest(
                pods=pods[i * step : (i + 1) * step],
                containers=containers[i * step : (i + 1) * step],
                more=more,
            )
            kind = "sync-more" if more else "sync-last"
            self._queue.append(
                _Call("Synchronize", "Synchronize", request.SerializeToString(), kind)
            )

    def _synchronized(self, call: _Call, payload: bytes) -> None:
        reply = nri_pb2.SynchronizeResponse()
        reply.ParseFromString(payload)
        if call.kind == "sync-more" and (not reply.more or len(reply.update)):
            raise PluginGone("plugin does not handle split sync")
        if call.kind == "sync-last":
            self.phase = Phase.READY

    def _event_reply(self, call: _Call, code: int) -> None:
        if code != Code.UNIMPLEMENTED or call.event is None or call.method == "StateChange":
            return  # errors from events are returned to the CRI caller, not fatal here
        spec = _SPECS[call.event]
        if self._dedicated and spec.via_state_change and not self.fell_back and call.pod:
            self.fell_back = True  # sticky for the whole connection (NRI v0.12+)
            self._queue.appendleft(self._event_call(spec, call.pod, call.container))

    def _event_call(
        self, spec: EventSpec, pod: nri_pb2.PodSandbox, container: nri_pb2.Container | None
    ) -> _Call:
        label = spec.event.name
        if spec.via_state_change and (not self._dedicated or self.fell_back):
            change = nri_pb2.StateChangeEvent(event=spec.event.name, pod=pod, container=container)
            payload = change.SerializeToString()
            return _Call("StateChange", label, payload, "event", spec.event, pod, container)
        if spec.has_container:
            payload = nri_pb2.ContainerEventRequest(
                pod=pod, container=container
            ).SerializeToString()
        else:
            payload = nri_pb2.PodSandboxEventRequest(pod=pod).SerializeToString()
        return _Call(spec.dedicated, label, payload, "event", spec.event, pod, container)
