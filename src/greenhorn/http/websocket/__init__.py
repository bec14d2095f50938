"""WebSocket (RFC 6455) for the server side, sans-IO: handshake, frames, messages, and
permessage-deflate (RFC 7692).

Why a package of its own, and our own framing rather than wsproto: the ASGI worker hands the
application whole messages, so a WebSocket server needs a message reader, not a general
frame library; built for that job it costs a fraction of wsproto per message (measured in
``benchmarks/websocket_framing.py``). Like the HTTP parser it never touches a socket or a
clock: it gets bytes and limits and returns events and bytes, so the tests feed it byte
by byte, in random splits and from Hypothesis.

Parts, by job: ``handshake`` (the upgrade request, deflate negotiation, the 101 answer),
``frames`` (reader and writer: the per-message hot path), ``deflate`` (the zlib streams)
and ``errors``. Everything public is importable from here.

Interface::

    if is_websocket_upgrade(request):       # a parsed ``parser.Request``
        hs = handshake(request)             # or HandshakeError (400) or
                                            # UnsupportedWebSocketVersion (426)
        deflate = negotiate_deflate(hs.extensions)          # PerMessageDeflate | None
        head = accept_response(hs, subprotocol, headers, deflate, server="greenhorn")
    reader = FrameReader(max_message_size, deflate)
    reader.feed(data)                       # reader.feed(b"") means the peer closed
    ev = reader.next_event()                # TextMessage | BytesMessage | Ping | Pong |
                                            # Close | None (needs more bytes)
    writer = FrameWriter(deflate)
    writer.text("hi"), writer.binary(b), writer.ping(), writer.pong(ev.payload),
    writer.close(1000)                      # bytes to send

Rules the reader enforces (each failure raises a ``WebSocketError`` whose ``code`` is the
close code to send before closing; errors are final, like the HTTP parser's):

- Client frames must be masked (RFC 6455 §5.1); RSV bits only as a negotiated extension
  allows (RSV1 on the first frame of a compressed message); reserved opcodes refused.
- Lengths: 7, 16 or 64 bits, always the shortest encoding; a 64-bit length has its top bit
  clear. Control frames carry at most 125 bytes and are never fragmented.
- Fragmentation: a continuation needs a message to continue; a new data frame may not
  start inside a fragmented message; control frames may come between fragments.
- Close payloads: empty, or a valid code (1000-1003, 1007-1014, 3000-4999) and a UTF-8
  reason. Text must be UTF-8, checked frame by frame across fragments (1007).
- ``max_message_size`` (1009) is checked from the frame header, before the payload is
  buffered, so memory is bounded by the limit and not by what a header declares; a
  compressed message is bounded both on the wire and after inflating (a zip bomb is 1009).

After a ``Close`` event the reader reads nothing more; the server answers with
``writer.close(event.code)`` (or ``writer.close(None)`` for 1005) and closes the socket.
The peer closing the TCP connection without a Close frame gives ``Close(1006)``.
"""

from __future__ import annotations

from greenhorn.http.websocket.deflate import DeflateOptions, PerMessageDeflate
from greenhorn.http.websocket.errors import (
    HandshakeError,
    InvalidPayload,
    MessageTooBig,
    ProtocolError,
    UnsupportedWebSocketVersion,
    WebSocketError,
)
from greenhorn.http.websocket.frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BytesMessage,
    Close,
    Event,
    FrameReader,
    FrameWriter,
    Ping,
    Pong,
    TextMessage,
    unmask,
    valid_close_code,
)
from greenhorn.http.websocket.handshake import (
    Extension,
    Handshake,
    accept_key,
    accept_response,
    handshake,
    is_websocket_upgrade,
    negotiate_deflate,
    parse_extensions,
    rejection_response,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BytesMessage",
    "Close",
    "DeflateOptions",
    "Event",
    "Extension",
    "FrameReader",
    "FrameWriter",
    "Handshake",
    "HandshakeError",
    "InvalidPayload",
    "MessageTooBig",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "ProtocolError",
    "TextMessage",
    "UnsupportedWebSocketVersion",
    "WebSocketError",
    "accept_key",
    "accept_response",
    "handshake",
    "is_websocket_upgrade",
    "negotiate_deflate",
    "parse_extensions",
    "rejection_response",
    "unmask",
    "valid_close_code",
]
