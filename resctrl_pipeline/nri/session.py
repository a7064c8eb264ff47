"""One plugin↔runtime connection as a sans-I/O state machine.

:class:`PluginSession` owns everything that lives exactly as long as one socket: the
frame reader, one ttrpc reader per logical connection, the stream-id state of our
ttrpc server (logical connection 1) and client (connection 2), and the
:class:`~.service.PluginService` that answers the runtime. Bytes go in through
:meth:`PluginSession.receive`; bytes to write come out of :meth:`take_output`.

Life of a session (``nri-protocol.md`` §5.1): on :meth:`start` it queues
``RegisterPlugin``; the runtime replies on connection 2 and calls ``Configure`` and
``Synchronize`` on connection 1. Configure may arrive before the RegisterPlugin reply,
so both connections are served from the first byte. The session is
:attr:`synchronized` once the final Synchronize chunk has been answered.

Errors are split by what they mean for the socket: problems with one call are
answered with an error status on that stream and the session goes on; anything that
leaves the byte stream unusable or the plugin unregistered raises :class:`SessionFailed`
(or :class:`~.mux.FrameTooLarge`), and the caller must close the socket.
"""

from __future__ import annotations

import logging
from collections import Counter

from resctrl_pipeline.errors import PipelineError
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.mux import (
    PLUGIN_SERVICE_CONN,
    RUNTIME_SERVICE_CONN,
    FrameReader,
    encode_frames,
)
from resctrl_pipeline.nri.service import RUNTIME_SERVICE, PluginService, method_label
from resctrl_pipeline.nri.ttrpc import (
    ClientStreams,
    Code,
    CorruptStream,
    MalformedMessage,
    Message,
    MessageReader,
    MessageType,
    Oversized,
    RpcError,
    ServerStreams,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

__all__ = ["PluginSession", "SessionFailed"]

_log = logging.getLogger(__name__)


class SessionFailed(PipelineError):
    """The connection can no longer be used; close it and reconnect later.

    ``reason`` is a short stable label for metrics: ``registration_refused``,
    ``bad_registration_reply``, ``corrupt_stream``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class PluginSession:
    """Protocol state of one connection, fed with bytes, producing bytes.

    Args:
        service: answers the runtime's calls; a fresh one per connection.
        name: plugin name sent in RegisterPlugin.
        index: two-digit plugin index sent in RegisterPlugin.

    Attributes:
        counters: ``requests.<Method>`` per call served, ``errors.<CODE>`` per error
            reply sent, ``ignored_messages`` for messages that are not ours to serve.
        answered: method names of the calls answered since the last
            :meth:`take_answered` (for latency samples).
    """

    def __init__(self, service: PluginService, name: str, index: str) -> None:
        self.service = service
        self._name = name
        self._index = index
        self._frames = FrameReader()
        self._readers = {
            PLUGIN_SERVICE_CONN: MessageReader(),
            RUNTIME_SERVICE_CONN: MessageReader(),
        }
        self._server = ServerStreams()
        self._client = ClientStreams()
        self._register_stream = 0
        self._out = bytearray()
        self.registered = False
        self.counters: Counter[str] = Counter()
        self.answered: list[str] = []

    @property
    def synchronized(self) -> bool:
        """Registered, configured and through the final Synchronize chunk."""
        return self.registered and self.service.synchronized

    def start(self) -> None:
        """Queue the RegisterPlugin call (stream 1 on the runtime-service connection)."""
        payload = nri_pb2.RegisterPluginRequest(
            plugin_name=self._name, plugin_idx=self._index
        ).SerializeToString()
        self._register_stream = self._client.open("RegisterPlugin")
        message = encode_request(self._register_stream, RUNTIME_SERVICE, "RegisterPlugin", payload)
        self._out += encode_frames(RUNTIME_SERVICE_CONN, message)

    def take_output(self) -> bytes:
        """Return and forget every byte queued for the socket."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def take_answered(self) -> list[str]:
        """Return and forget the methods answered since the last call."""
        answered, self.answered = self.answered, []
        return answered

    def receive(self, data: bytes) -> None:
        """Process bytes read from the socket, queueing every answer they require.

        Raises:
            FrameTooLarge: a frame announced more than the protocol maximum.
            SessionFailed: the stream is corrupt or registration was refused.
        """
        try:
            for conn, piece in self._frames.feed(data):
                for item in self._readers[conn].feed(piece):
                    if conn == PLUGIN_SERVICE_CONN:
                        self._serve(item)
                    else:
                        self._client_message(item)
        except CorruptStream as err:
            raise SessionFailed("corrupt_stream", str(err)) from err

    def _serve(self, item: Message | Oversized) -> None:
        if item.type != MessageType.REQUEST:
            # Replies and streaming data have no place on the connection we serve;
            # the Go server ignores unknown types too.
            self.counters["ignored_messages"] += 1
            return
        refusal = self._server.check(item.stream_id)
        if refusal is not None:
            self._reply_error(item.stream_id, refusal)
            return
        if isinstance(item, Oversized):
            self._reply_error(
                item.stream_id,
                RpcError(Code.RESOURCE_EXHAUSTED, f"message length {item.length} exceeds limit"),
            )
            return
        try:
            request = decode_request(item.body)
        except MalformedMessage as err:
            self._reply_error(item.stream_id, RpcError(Code.INVALID_ARGUMENT, str(err)))
            return
        self.counters[f"requests.{method_label(request.method)}"] += 1
        try:
            payload = self.service.call(request.service, request.method, request.payload)
        except RpcError as err:
            self._reply_error(item.stream_id, err)
        else:
            self._queue(PLUGIN_SERVICE_CONN, encode_response(item.stream_id, payload))
        self.answered.append(request.method)

    def _reply_error(self, stream_id: int, err: RpcError) -> None:
        self.counters[f"errors.{Code(err.code).name}"] += 1
        _log.debug("answering stream %d with %s", stream_id, err)
        self._queue(
            PLUGIN_SERVICE_CONN, encode_response(stream_id, code=err.code, message=err.message)
        )

    def _client_message(self, item: Message | Oversized) -> None:
        if item.type != MessageType.RESPONSE or self._client.close(item.stream_id) is None:
            # Requests cannot be served here and replies to unknown streams are
            # ignored, as a Go ttrpc client does.
            self.counters["ignored_messages"] += 1
            return
        if isinstance(item, Oversized):
            raise SessionFailed("bad_registration_reply", f"reply of {item.length} bytes")
        try:
            response = decode_response(item.body)
        except MalformedMessage as err:
            raise SessionFailed("bad_registration_reply", str(err)) from err
        if response.HasField("status") and response.status.code != Code.OK:
            # The runtime abandons the plugin but keeps the socket open (seen on
            # containerd 2.1.9), so the caller must close it itself.
            raise SessionFailed(
                "registration_refused",
                f"code {response.status.code}: {response.status.message}",
            )
        self.registered = True

    def _queue(self, conn: int, message: bytes) -> None:
        self._out += encode_frames(conn, message)

    @property
    def buffered(self) -> int:
        """Bytes held for incomplete messages (bounded by the ttrpc size limit)."""
        return sum(reader.buffered for reader in self._readers.values())
