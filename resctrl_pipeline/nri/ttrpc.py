"""ttrpc, the RPC layer inside each logical NRI connection (sans I/O).

A ttrpc message is a 10-byte header (body length uint32, stream id uint32, type uint8,
flags uint8; big-endian) followed by a protobuf body: a ``Request`` (service, method,
payload, timeout, metadata) or a ``Response`` (``google.rpc.Status``, payload). NRI
uses unary calls only: requests are type 1, replies type 2, flags always 0.

This module turns byte streams into messages and back, and keeps the stream-id rules
of both ends of a connection. It performs no I/O. Facts: ``nri-protocol.md`` §3.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from google.protobuf.message import DecodeError as ProtobufDecodeError

from resctrl_pipeline.errors import PipelineError
from resctrl_pipeline.nri import nri_pb2

__all__ = [
    "HEADER_SIZE",
    "MAX_BODY",
    "MAX_SKIP",
    "ClientStreams",
    "Code",
    "CorruptStream",
    "MalformedMessage",
    "Message",
    "MessageReader",
    "MessageType",
    "Oversized",
    "RpcError",
    "ServerStreams",
    "decode_request",
    "decode_response",
    "encode_message",
    "encode_request",
    "encode_response",
]

HEADER_SIZE: Final = 10
MAX_BODY: Final = 4 * 1024 * 1024
"""Largest body a ttrpc peer may send; longer messages are discarded and refused."""
MAX_SKIP: Final = 16 * 1024 * 1024
"""Largest announced body still treated as an oversized message rather than garbage:
no NRI runtime can produce more (its multiplexer limit was at most 16 MiB)."""

_HEADER = struct.Struct(">IIBB")


class MessageType(IntEnum):
    """The ttrpc message types. NRI never uses DATA (streaming)."""

    REQUEST = 1
    RESPONSE = 2
    DATA = 3


class Code(IntEnum):
    """``google.rpc.Code`` values (gRPC numbering) used in ttrpc statuses."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(PipelineError):
    """A call ends with a non-OK status; servers turn it into the error reply."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"rpc error {code}: {message}")


class MalformedMessage(PipelineError):
    """A ttrpc body could not be decoded as the expected protobuf message."""


class CorruptStream(PipelineError):
    """A ttrpc header is garbage (absurd length); the byte stream cannot be resynced."""


@dataclass(frozen=True, slots=True)
class Message:
    """One complete ttrpc message."""

    stream_id: int
    type: int
    flags: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    """A message whose announced body exceeded the limit; its body was discarded."""

    stream_id: int
    type: int
    flags: int
    length: int


def encode_message(stream_id: int, msg_type: int, body: bytes, flags: int = 0) -> bytes:
    """Return header + body of one ttrpc message."""
    return _HEADER.pack(len(body), stream_id, msg_type, flags) + body


def encode_request(
    stream_id: int,
    service: str,
    method: str,
    payload: bytes,
    timeout_nano: int = 0,
    metadata: Iterable[tuple[str, str]] = (),
) -> bytes:
    """Return a complete ttrpc request message (header included)."""
    req = nri_pb2.TtrpcRequest(
        service=service,
        method=method,
        payload=payload,
        timeout_nano=timeout_nano,
        metadata=[nri_pb2.KeyValue(key=k, value=v) for k, v in metadata],
    )
    return encode_message(stream_id, MessageType.REQUEST, req.SerializeToString())


def encode_response(
    stream_id: int, payload: bytes = b"", code: int = Code.OK, message: str = ""
) -> bytes:
    """Return a complete ttrpc response message (header included).

    Success leaves the status out, as the Go server does, so an empty reply message is
    a 0-byte body. An error carries the status and no payload.
    """
    resp = nri_pb2.TtrpcResponse()
    if code != Code.OK:
        resp.status.code = code
        resp.status.message = message
    else:
        resp.payload = payload
    return encode_message(stream_id, MessageType.RESPONSE, resp.SerializeToString())


def decode_request(body: bytes) -> nri_pb2.TtrpcRequest:
    """Decode a request body. Raises :class:`MalformedMessage` if it is not one."""
    req = nri_pb2.TtrpcRequest()
    try:
        req.ParseFromString(body)
    except ProtobufDecodeError as err:
        raise MalformedMessage(f"undecodable ttrpc request: {err}") from err
    return req


def decode_response(body: bytes) -> nri_pb2.TtrpcResponse:
    """Decode a response body. Raises :class:`MalformedMessage` if it is not one."""
    resp = nri_pb2.TtrpcResponse()
    try:
        resp.ParseFromString(body)
    except ProtobufDecodeError as err:
        raise MalformedMessage(f"undecodable ttrpc response: {err}") from err
    return resp


class MessageReader:
    """Incremental ttrpc parser for one logical connection's byte stream.

    Bodies up to ``max_body`` bytes are buffered until complete. A longer announced
    body, up to ``max_skip``, is skipped as it arrives (counted, never buffered) and
    reported as :class:`Oversized` once fully consumed, so the caller can refuse that
    stream with RESOURCE_EXHAUSTED as the Go server does and the stream stays in sync.
    """

    def __init__(self, max_body: int = MAX_BODY, max_skip: int = MAX_SKIP) -> None:
        self._max_body = max_body
        self._max_skip = max_skip
        self._buf = bytearray()
        self._head: tuple[int, int, int, int] | None = None  # length, stream, type, flags
        self._skip = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Message | Oversized]:
        """Consume ``data`` (the iterator must be exhausted); yield completed messages.

        Messages before a bad header are yielded before the error is raised.

        Raises:
            CorruptStream: a header announced more than ``max_skip`` bytes; the reader
                is then unusable and the connection must be closed.
        """
        view = memoryview(data)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                if self._skip == 0 and self._head is not None:
                    length, stream, mtype, flags = self._head
                    self._head = None
                    yield Oversized(stream, mtype, flags, length)
                continue
            if self._head is None:
                need = HEADER_SIZE - len(self._buf)
                self._buf += view[:need]
                view = view[need:]
                if len(self._buf) < HEADER_SIZE:
                    break
                self._head = _HEADER.unpack(self._buf)
                self._buf.clear()
                if self._head[0] > self._max_skip:
                    raise CorruptStream(f"ttrpc header announces {self._head[0]} bytes")
                if self._head[0] > self._max_body:
                    self._skip = self._head[0]
                    continue
            length = self._head[0]
            need = length - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if len(self._buf) == length:
                _, stream, mtype, flags = self._head
                body = bytes(self._buf)
                self._buf.clear()
                self._head = None
                yield Message(stream, mtype, flags, body)


class ServerStreams:
    """Stream-id rules of a ttrpc server (ttrpc >= v1.2).

    Client streams are odd and strictly increasing within a connection; ids may skip
    (the runtime sometimes burns one locally), so only the order is checked.
    """

    def __init__(self) -> None:
        self._last = 0

    def check(self, stream_id: int) -> RpcError | None:
        """Accept ``stream_id`` as a new request, or return the error to answer with."""
        if stream_id % 2 == 0:
            return RpcError(Code.INVALID_ARGUMENT, f"stream id {stream_id} must be odd")
        if stream_id <= self._last:
            return RpcError(
                Code.INVALID_ARGUMENT,
                f"stream id {stream_id} is not greater than the previous {self._last}",
            )
        self._last = stream_id
        return None


class ClientStreams:
    """Stream-id allocation and pending-call bookkeeping of a ttrpc client."""

    def __init__(self) -> None:
        self._next = 1
        self._pending: dict[int, str] = {}

    def open(self, method: str) -> int:
        """Allocate the next odd stream id for a call to ``method``."""
        stream_id = self._next
        self._next += 2
        self._pending[stream_id] = method
        return stream_id

    def close(self, stream_id: int) -> str | None:
        """Finish ``stream_id``; return its method, or None for an unknown stream."""
        return self._pending.pop(stream_id, None)

    @property
    def pending(self) -> int:
        """Calls sent and not yet answered."""
        return len(self._pending)
