"""The NRI connection multiplexer: several logical byte streams over one socket.

Every byte on the NRI socket belongs to a frame: an 8-byte header (connection id,
payload length; both uint32 big-endian) and the payload. Logical connection 1 carries
the plugin service (the runtime calls the plugin), connection 2 the runtime service
(the plugin calls the runtime). There is no open/close/ack frame; EOF on the socket
ends every logical connection at once.

Frame boundaries mean nothing to the layer above: a ttrpc message may be split over
several frames and frames of different connections may interleave. So the reader here
hands out payload *pieces* as they arrive, tagged with their connection id, and never
waits for a frame to complete; the caller appends them to one stream buffer per
connection.

Limits (facts from ``nri-protocol.md`` §2):

* The runtime's Go writer sends frames of up to 4 MiB + 10 bytes (a whole ttrpc
  message), so the reader accepts that and nothing larger: a header announcing more
  raises :class:`FrameTooLarge` before a single payload byte is buffered.
* The runtime's Go reader fails on frames larger than its 4096-byte read buffer in
  some states, so everything we send is split into frames of at most
  :data:`MAX_SEND_PAYLOAD` bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from resctrl_pipeline.errors import PipelineError

__all__ = [
    "HEADER_SIZE",
    "MAX_RECV_PAYLOAD",
    "MAX_SEND_PAYLOAD",
    "PLUGIN_SERVICE_CONN",
    "RUNTIME_SERVICE_CONN",
    "FrameReader",
    "FrameTooLarge",
    "encode_frames",
    "frame_header",
]

HEADER_SIZE: Final = 8
PLUGIN_SERVICE_CONN: Final = 1
"""Logical connection of the plugin service: runtime requests, plugin replies."""
RUNTIME_SERVICE_CONN: Final = 2
"""Logical connection of the runtime service: plugin requests, runtime replies."""
MAX_RECV_PAYLOAD: Final = 4 * 1024 * 1024 + 10
"""Largest frame payload the runtime sends (one whole maximal ttrpc message)."""
MAX_SEND_PAYLOAD: Final = 4096
"""Largest frame payload we send; any Go reader accepts frames up to this size."""

_HEADER = struct.Struct(">II")


class FrameTooLarge(PipelineError):
    """A frame header announced a payload above the protocol maximum.

    The stream cannot be resynchronised after this (there is no frame marker), so the
    connection must be dropped.
    """

    def __init__(self, conn_id: int, length: int, limit: int) -> None:
        self.conn_id = conn_id
        self.length = length
        super().__init__(f"mux frame on conn {conn_id} announces {length} bytes (limit {limit})")


def frame_header(conn_id: int, length: int) -> bytes:
    """Return the 8-byte header of a frame carrying ``length`` bytes on ``conn_id``."""
    return _HEADER.pack(conn_id, length)


def encode_frames(conn_id: int, data: bytes, max_payload: int = MAX_SEND_PAYLOAD) -> bytes:
    """Wrap ``data`` into frames for ``conn_id``, none with more than ``max_payload`` bytes.

    Empty ``data`` yields no frames at all: a frame with no payload carries nothing
    for the reader's stream.
    """
    if max_payload <= 0:
        raise ValueError(f"max_payload must be positive, got {max_payload}")
    out = bytearray()
    view = memoryview(data)
    for start in range(0, len(view), max_payload):
        chunk = view[start : start + max_payload]
        out += _HEADER.pack(conn_id, len(chunk))
        out += chunk
    return bytes(out)


class FrameReader:
    """Incremental frame parser with bounded memory.

    Feed it whatever the socket returned; it yields ``(conn_id, piece)`` for every
    payload byte range in it, in wire order, so everything before a bad header is
    still delivered before the error is raised. Pieces of frames
    for connections outside ``accept_conns`` are skipped without buffering and
    counted in :attr:`discarded_bytes` (the Go multiplexer drops such frames too).

    Memory held between calls is at most the 7 bytes of an incomplete header.
    """

    def __init__(
        self,
        accept_conns: frozenset[int] = frozenset({PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN}),
        max_payload: int = MAX_RECV_PAYLOAD,
    ) -> None:
        self._accept = accept_conns
        self._max_payload = max_payload
        self._header = bytearray()
        self._conn = 0
        self._remaining = 0
        self.frames = 0
        """Frame headers parsed so far."""
        self.discarded_bytes = 0
        """Payload bytes of frames for connections nobody serves."""

    @property
    def idle(self) -> bool:
        """True when no frame is partially read (a clean point to close the stream)."""
        return self._remaining == 0 and not self._header

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Consume ``data`` (the iterator must be exhausted); yield its payload pieces.

        Raises:
            FrameTooLarge: a header announced more than the maximum payload; the
                reader is then unusable and the connection must be closed.
        """
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._remaining == 0:
                need = HEADER_SIZE - len(self._header)
                self._header += view[pos : pos + need]
                pos += min(need, end - pos)
                if len(self._header) < HEADER_SIZE:
                    break
                conn, length = _HEADER.unpack(self._header)
                self._header.clear()
                if length > self._max_payload:
                    raise FrameTooLarge(conn, length, self._max_payload)
                self.frames += 1
                self._conn, self._remaining = conn, length
                continue
            take = min(self._remaining, end - pos)
            if self._conn in self._accept:
                yield self._conn, bytes(view[pos : pos + take])
            else:
                self.discarded_bytes += take
            pos += take
            self._remaining -= take
