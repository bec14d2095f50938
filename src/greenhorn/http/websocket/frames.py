"""WebSocket frames (RFC 6455 §5), server side: client frames in, whole messages out, and
server frames written.

Why a module of its own: this is the per-message hot path of every WebSocket connection.
The reader holds one ``bytearray``, validates each header before its payload is buffered,
and hands out whole messages (what ASGI gives the application); the writer builds frames
with as few copies as Python allows. Both are plain state machines over bytes.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenhorn.http.websocket.errors import (
    InvalidPayload,
    MessageTooBig,
    ProtocolError,
    WebSocketError,
)

if TYPE_CHECKING:
    from greenhorn.http.websocket.deflate import PerMessageDeflate

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BytesMessage",
    "Close",
    "Event",
    "FrameReader",
    "FrameWriter",
    "Ping",
    "Pong",
    "TextMessage",
    "unmask",
    "valid_close_code",
]

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # gunicorn's websocket_max_message_size

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN = 0x80
_RSV1 = 0x40

# Close codes a peer may send: the registered ones (RFC 6455 §7.4.1 and the IANA registry:
# 1012-1014) except those that only report local conditions (1005, 1006, 1015); 3000-4999
# are for libraries and applications.
_SENDABLE_CODES = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)


def valid_close_code(code: int) -> bool:
    """True for a close code that may appear in a Close frame on the wire."""
    return code in _SENDABLE_CODES or 3000 <= code <= 4999


# -- events --------------------------------------------------------------------------------


@dataclass(slots=True)
class TextMessage:
    """A whole text message (fragments joined, UTF-8 checked, inflated if compressed)."""

    data: str


@dataclass(slots=True)
class BytesMessage:
    """A whole binary message."""

    data: bytes


@dataclass(slots=True)
class Ping:
    """A ping: answer it with ``writer.pong(payload)``."""

    payload: bytes


@dataclass(slots=True)
class Pong:
    """A pong (unsolicited ones are allowed and mean nothing)."""

    payload: bytes


@dataclass(slots=True)
class Close:
    """The peer's Close frame (``code`` 1005 when it had no payload), or the connection
    lost without one (1006)."""

    code: int
    reason: str = ""


Event = TextMessage | BytesMessage | Ping | Pong | Close


# -- reading -----------------------------------------------------------------------------------

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
_TRANSLATE_FROM = 2048  # from this size, four strided translates beat one big-int XOR


def unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3)."""
    n = len(data)
    if n < _TRANSLATE_FROM:
        if not n:
            return b""
        key = mask * ((n >> 2) + 1)
        return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
            n, "little"
        )
    return _translate(bytearray(data), mask)


def _translate(out: bytearray, mask: bytes | bytearray) -> bytes:
    """``unmask`` for large payloads, in place in ``out`` (a copy the caller owns)."""
    t0, t1, t2, t3 = (_XOR_TABLES[b] for b in mask)
    out[0::4] = out[0::4].translate(t0)
    out[1::4] = out[1::4].translate(t1)
    out[2::4] = out[2::4].translate(t2)
    out[3::4] = out[3::4].translate(t3)
    return bytes(out)


class FrameReader:
    """Client frames in, whole messages and control events out. See the module docstring.

    The buffer is one ``bytearray``: each complete frame is sliced off its front once
    (CPython removes a bytearray prefix without moving the rest), so feeding a frame byte
    by byte stays linear, and nothing is copied per frame beyond its own payload.
    """

    __slots__ = (
        "_buf",
        "_closed",
        "_compressed",
        "_decoder",
        "_deflate",
        "_eof",
        "_error",
        "_limit",
        "_opcode",
        "_parts",
        "_size",
        "_text",
        "_wire",
        "_wire_limit",
    )

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        """``max_message_size``: the largest message in bytes (after inflating); 0 means
        no limit."""
        self._buf = bytearray()
        self._limit = max_message_size
        # compressed bytes on the wire may exceed the inflated size a little
        self._wire_limit = max_message_size + max_message_size // 8 + 1024 if deflate else 0
        self._deflate = deflate
        self._opcode = 0  # of the fragmented message in progress, 0 if none
        self._compressed = False
        self._parts: list[bytes] = []  # a fragmented binary message so far
        self._text: list[str] = []  # a fragmented text message so far, decoded
        self._decoder: codecs.IncrementalDecoder | None = None
        self._size = 0  # bytes of the message so far (inflated)
        self._wire = 0  # bytes of the message so far on the wire
        self._eof = False
        self._closed = False
        self._error: WebSocketError | None = None

    def feed(self, data: bytes | bytearray) -> None:
        """Append received bytes; ``b""`` means the peer closed the connection."""
        if data:
            if not self._closed and self._error is None:
                self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read as frames."""
        return len(self._buf)

    @property
    def closed(self) -> bool:
        """True once a ``Close`` event was returned: nothing more will be read."""
        return self._closed

    def receive(self, data: bytes | bytearray) -> Event | None:
        """``feed(data)`` then ``next_event()``."""
        self.feed(data)
        return self.next_event()

    def events(self) -> list[Event]:
        """Every event the buffered bytes make (possibly none); raises like ``next_event``."""
        out: list[Event] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed (or after ``Close``).
        Raises ``WebSocketError``; once raised, it is raised again on every call."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except WebSocketError as exc:
            self._error = exc
            self._buf.clear()
            self._parts = []
            self._text = []
            raise

    def _next(self) -> Event | None:
        buf = self._buf
        while not self._closed:
            size = len(buf)
            if size < 2:
                return self._need()
            b0 = buf[0]
            b1 = buf[1]
            opcode = b0 & 0x0F
            n = b1 & 0x7F
            if not b1 & 0x80:
                raise ProtocolError("unmasked frame from the client")
            if opcode >= OP_CLOSE:
                if opcode > OP_PONG:
                    raise ProtocolError(f"reserved opcode {opcode:#x}")
                if not b0 & _FIN:
                    raise ProtocolError("fragmented control frame")
                if n > 125:
                    raise ProtocolError("control frame payload over 125 bytes")
                if b0 & 0x70:
                    raise ProtocolError("reserved bits set on a control frame")
            elif opcode:
                if opcode > OP_BINARY:
                    raise ProtocolError(f"reserved opcode {opcode:#x}")
                if self._opcode:
                    raise ProtocolError("new data frame inside a fragmented message")
                if b0 & 0x70 and (b0 & 0x70 != _RSV1 or self._deflate is None):
                    raise ProtocolError("reserved bits set without a negotiated extension")
            else:
                if not self._opcode:
                    raise ProtocolError("continuation frame without a message to continue")
                if b0 & 0x70:
                    raise ProtocolError("reserved bits set on a continuation frame")
            if n < 126:
                head = 6
            elif n == 126:
                if size < 4:
                    return self._need()
                n = (buf[2] << 8) | buf[3]
                if n < 126:
                    raise ProtocolError("16-bit length for a payload under 126 bytes")
                head = 8
            else:
                if size < 10:
                    return self._need()
                n = int.from_bytes(buf[2:10], "big")
                if n >> 63:
                    raise ProtocolError("64-bit length with the most significant bit set")
                if n < 65536:
                    raise ProtocolError("64-bit length for a payload under 65536 bytes")
                head = 14
            if opcode < OP_CLOSE and self._limit:
                self._check_size(n, bool(b0 & _RSV1) if opcode else self._compressed)
            end = head + n
            if size < end:
                return self._need()
            if n < _TRANSLATE_FROM:
                payload = unmask(buf[head:end], buf[head - 4 : head])
            else:  # the slice is already a copy of our own: unmask it in place
                payload = _translate(buf[head:end], buf[head - 4 : head])
            del buf[:end]
            if opcode >= OP_CLOSE:
                if opcode == OP_PING:
                    return Ping(payload)
                if opcode == OP_PONG:
                    return Pong(payload)
                return self._close(payload)
            fin = b0 & _FIN
            if fin and opcode and not b0 & _RSV1:  # a whole uncompressed message
                if opcode == OP_BINARY:
                    return BytesMessage(payload)
                try:
                    return TextMessage(payload.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise InvalidPayload(f"text message is not UTF-8: {exc.reason}") from None
            event = self._fragment(opcode, payload, bool(b0 & _RSV1), bool(fin), n)
            if event is not None:
                return event
        return None

    def _need(self) -> Close | None:
        if self._eof and not self._closed:
            self._closed = True
            self._buf.clear()
            return Close(1006)
        return None

    def _check_size(self, n: int, compressed: bool) -> None:
        """Refuse a data frame whose declared length would take the message past the limit,
        before its payload is buffered."""
        if compressed:
            if self._wire + n > self._wire_limit:
                raise MessageTooBig(f"compressed message over {self._wire_limit} bytes")
        elif self._size + n > self._limit:
            raise MessageTooBig(f"message over {self._limit} bytes")

    def _fragment(
        self, opcode: int, payload: bytes, rsv1: bool, fin: bool, n: int
    ) -> TextMessage | BytesMessage | None:
        """A frame of a fragmented or compressed message; the event when it is the last."""
        if opcode:
            self._opcode = opcode
            self._compressed = rsv1
            self._size = self._wire = 0
        self._wire += n
        if self._compressed:
            assert self._deflate is not None
            budget = self._limit - self._size if self._limit else None
            data = self._deflate.decompress(payload, budget, fin)
        else:
            data = payload
        self._size += len(data)
        if self._opcode == OP_TEXT:
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
            try:
                text = decoder.decode(data, fin)
            except UnicodeDecodeError as exc:
                raise InvalidPayload(f"text message is not UTF-8: {exc.reason}") from None
            if text:
                self._text.append(text)
        elif data:
            self._parts.append(data)
        if not fin:
            return None
        kind = self._opcode
        self._opcode = self._size = self._wire = 0
        self._compressed = False
        self._decoder = None
        if kind == OP_TEXT:
            text = "".join(self._text)
            self._text = []
            return TextMessage(text)
        data = b"".join(self._parts)
        self._parts = []
        return BytesMessage(data)

    def _close(self, payload: bytes) -> Close:
        self._closed = True
        self._buf.clear()
        if not payload:
            return Close(1005)
        if len(payload) == 1:
            raise ProtocolError("close frame with a one-byte payload")
        code = (payload[0] << 8) | payload[1]
        if not valid_close_code(code):
            raise ProtocolError(f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPayload("close reason is not UTF-8") from None
        return Close(code, reason)


# -- writing -----------------------------------------------------------------------------------


def _header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big")
    return bytes((first, 127)) + n.to_bytes(8, "big")


class FrameWriter:
    """Server frames (never masked, RFC 6455 §5.1) as bytes to send.

    ``fragment_size`` (0: never) splits a message whose payload is larger into frames of
    that size; a compressed message is compressed whole first, then split.
    """

    __slots__ = ("_deflate", "_fragment_size")

    def __init__(self, deflate: PerMessageDeflate | None = None, fragment_size: int = 0) -> None:
        self._deflate = deflate
        self._fragment_size = fragment_size

    def text(self, text: str) -> bytes:
        """A text message (``UnicodeEncodeError`` for lone surrogates)."""
        return self._message(OP_TEXT, text.encode("utf-8"))

    def binary(self, data: bytes | bytearray | memoryview) -> bytes:
        """A binary message."""
        return self._message(OP_BINARY, bytes(data))

    def _message(self, opcode: int, payload: bytes) -> bytes:
        first = _FIN | opcode
        deflate = self._deflate
        if deflate is not None and len(payload) >= deflate.min_size:
            payload = deflate.compress(payload)
            first |= _RSV1
        n = len(payload)
        size = self._fragment_size
        if size and n > size:
            return self._fragments(first, payload, size)
        if n < 126:
            return bytes((first, n)) + payload
        return _header(first, n) + payload

    @staticmethod
    def _fragments(first: int, payload: bytes, size: int) -> bytes:
        view = memoryview(payload)
        frames: list[bytes | memoryview] = []
        n = len(payload)
        for start in range(0, n, size):
            chunk = view[start : start + size]
            last = start + size >= n
            # the opcode and RSV1 go on the first frame only
            flags = first & ~_FIN if start == 0 else OP_CONT
            if last:
                flags |= _FIN
            frames.append(_header(flags, len(chunk)))
            frames.append(chunk)
        return b"".join(frames)

    def ping(self, payload: bytes = b"") -> bytes:
        """A ping (at most 125 bytes of payload)."""
        return self._control(OP_PING, payload)

    def pong(self, payload: bytes = b"") -> bytes:
        """A pong, usually echoing a ping's payload."""
        return self._control(OP_PONG, payload)

    def close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """A Close frame: ``code`` None sends no payload (the peer sees 1005); the reason is
        cut to fit 125 bytes at a character boundary."""
        if code is None:
            if reason:
                raise ValueError("a close reason needs a close code")
            return self._control(OP_CLOSE, b"")
        if not valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        data = reason.encode("utf-8")
        if len(data) > 123:
            data = data[:123].decode("utf-8", "ignore").encode("utf-8")
        return self._control(OP_CLOSE, code.to_bytes(2, "big") + data)

    @staticmethod
    def _control(opcode: int, payload: bytes) -> bytes:
        if len(payload) > 125:
            raise ValueError("control frame payload over 125 bytes")
        return bytes((_FIN | opcode, len(payload))) + payload
