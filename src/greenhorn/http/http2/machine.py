"""h2's connection state machine, as the session uses it: two wire rules changed, and the
hot paths of a request (its HEADERS in, the response's HEADERS and DATA out) cheaper.

Why a subclass and not a framing of greenhorn's own: h2's state machines (the connection's
and each stream's) decide what a frame may do when, and every attack test leans on them;
what costs is the rest around them. Measured on one HTTP/2 request under h2load, h2's
``send_headers`` built three frame objects, converted and inspected the header list four
times and logged twice; ``send_data`` built a frame object and logged three times; and each
HEADERS frame received walked every stream of the connection to count them. Here:

- **Response HEADERS and DATA** are written as bytes (a 9-byte frame header and the
  payload), after the same state machine transitions h2 makes (``process_input`` of the
  connection and of the stream: a closed stream still raises ``StreamClosedError``, an
  interim response with END_STREAM ``ProtocolError``), with the same flow-control
  accounting. Anything unusual (padding, a stream h2 no longer knows, a header list
  that is not ``bytes`` pairs, data over the window or the frame size) goes to h2's own
  method, which raises what it raises.
- **Counting streams**: h2 counts the open streams on every new stream only to compare
  them with SETTINGS_MAX_CONCURRENT_STREAMS, which the session applies itself (refusing
  the stream, REFUSED_STREAM, where h2 would end the connection). The walk that counts
  also forgets closed streams; it now runs when the table doubled since the last one.

The two rule changes (stream errors where h2 has connection errors, RFC 9113):

- a Content-Length that DATA does not match (§8.1.1): RST_STREAM PROTOCOL_ERROR for that
  request alone (the session checks it);
- a HEADERS frame past SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2): REFUSED_STREAM for that
  stream (the session refuses it), its header block still decoded so the HPACK state
  stays in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
from h2.connection import ConnectionInputs
from h2.stream import StreamInputs
from hyperframe.frame import Frame, HeadersFrame

__all__ = ["Connection"]

_HEADERS, _DATA, _CONTINUATION = 0x1, 0x0, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_SWEEP = 64  # streams h2 may hold before it forgets the closed ones
_SEND_HEADERS = StreamInputs.SEND_HEADERS
_SEND_INFORMATIONAL = StreamInputs.SEND_INFORMATIONAL_HEADERS
_SEND_DATA = StreamInputs.SEND_DATA
_SEND_END_STREAM = StreamInputs.SEND_END_STREAM
_CONN_SEND_HEADERS = ConnectionInputs.SEND_HEADERS
_CONN_SEND_DATA = ConnectionInputs.SEND_DATA


def _untracked(length: int, end_stream: bool) -> None:
    """Content-Length against DATA is the session's to check."""


def frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9 bytes that open a frame (RFC 9113 §4.1)."""
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


class _NoStreamLimit:
    """h2's local settings, but for the concurrent-stream limit."""

    max_concurrent_streams = 2**31 - 1

    def __init__(self, settings: h2.settings.Settings) -> None:
        self._settings = settings

    def __getattr__(self, name: str) -> object:
        return getattr(self._settings, name)


class Connection(h2.connection.H2Connection):
    """h2's server connection, adapted. See the module docstring."""

    _sweep_at = _SWEEP

    def _begin_new_stream(
        self, stream_id: int, allowed_ids: h2.connection.AllowedStreamIDs
    ) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream._track_content_length = _untracked  # type: ignore[method-assign]
        return stream

    @property
    def open_inbound_streams(self) -> int:
        """Asked by h2 only to compare with SETTINGS_MAX_CONCURRENT_STREAMS, and that
        comparison is lifted (``_receive_headers_frame``): forget closed streams now and
        then, count nothing."""
        streams = self.streams
        if len(streams) >= self._sweep_at:
            self._open_streams(1)
            self._sweep_at = max(_SWEEP, 2 * len(streams))
        return 0

    def _receive_headers_frame(
        self, frame: HeadersFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        settings = self.local_settings
        self.local_settings = _NoStreamLimit(settings)  # type: ignore[assignment]
        try:
            return super()._receive_headers_frame(frame)
        finally:
            self.local_settings = settings

    def send_headers(
        self,
        stream_id: int,
        headers: Iterable[Any],
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or type(headers) is not list
            or not headers
            or type(headers[0][0]) is not bytes
            or priority_weight is not None
            or priority_depends_on is not None
            or priority_exclusive is not None
        ):
            super().send_headers(
                stream_id,
                headers,
                end_stream,
                priority_weight,
                priority_depends_on,
                priority_exclusive,
            )
            return
        first = headers[0]
        informational = first[0] == b":status" and first[1][:1] == b"1"
        if informational and end_stream:
            raise h2.exceptions.ProtocolError("Cannot set END_STREAM on informational responses.")
        self.state_machine.process_input(_CONN_SEND_HEADERS)
        machine = stream.state_machine
        machine.process_input(_SEND_INFORMATIONAL if informational else _SEND_HEADERS)
        block = self.encoder.encode(headers)
        flags = _END_STREAM if end_stream else 0
        size = self.max_outbound_frame_size
        if len(block) <= size:
            out = frame_head(len(block), _HEADERS, flags | _END_HEADERS, stream_id) + block
        else:
            pieces = [block[i : i + size] for i in range(0, len(block), size)]
            parts = [frame_head(len(pieces[0]), _HEADERS, flags, stream_id), pieces[0]]
            for n, piece in enumerate(pieces[1:], start=2):
                last = _END_HEADERS if n == len(pieces) else 0
                parts += (frame_head(len(piece), _CONTINUATION, last, stream_id), piece)
            out = b"".join(parts)
        if end_stream:
            machine.process_input(_SEND_END_STREAM)
        elif machine.trailers_sent:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        self._data_to_send += out

    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: int | None = None,
    ) -> None:
        stream = self.streams.get(stream_id)
        n = len(data)
        if (
            stream is None
            or pad_length is not None
            or n > self.outbound_flow_control_window
            or n > stream.outbound_flow_control_window
            or n > self.max_outbound_frame_size
        ):
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        self.state_machine.process_input(_CONN_SEND_DATA)
        machine = stream.state_machine
        machine.process_input(_SEND_DATA)
        if end_stream:
            machine.process_input(_SEND_END_STREAM)
        stream.outbound_flow_control_window -= n
        self.outbound_flow_control_window -= n
        out = self._data_to_send
        out += frame_head(n, _DATA, _END_STREAM if end_stream else 0, stream_id)
        out += data
