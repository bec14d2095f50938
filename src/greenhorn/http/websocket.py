"""WebSocket (RFC 6455) for the server side, sans-IO: handshake, frames, messages, and
permessage-deflate (RFC 7692).

Why a module of its own, and our own framing rather than wsproto: the ASGI worker hands the
application whole messages, so a WebSocket server needs a message reader, not a general
frame library; built for that job it costs a fraction of wsproto per message (measured in
``benchmarks/websocket_framing.py``). Like the HTTP parser it never touches a socket or a
clock: it gets bytes and limits and returns events and bytes, so the tests feed it byte
by byte, in random splits and from Hypothesis.

Interface::

    if is_websocket_upgrade(request):       # a parsed ``parser.Request``
        hs = handshake(request)             # or raises HandshakeError (400, 426)
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

import base64
import codecs
import hashlib
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenhorn.http import errors
from greenhorn.http.fields import TCHAR
from greenhorn.http.response import BAD_VALUE_RE, HOP_BY_HOP, NAME_RE, InvalidResponse, http_date

if TYPE_CHECKING:
    from greenhorn.http.parser import Request

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
    "valid_close_code",
]

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # gunicorn's websocket_max_message_size
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

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


# -- errors ------------------------------------------------------------------------------------


class WebSocketError(Exception):
    """A frame or message the server must refuse; ``code`` is the close code to send."""

    code = 1002

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ProtocolError(WebSocketError):
    """The framing rules were broken (RFC 6455 §7.4.1: 1002)."""


class InvalidPayload(WebSocketError):
    """Text or a close reason that is not UTF-8, or a compressed payload that does not
    inflate (1007)."""

    code = 1007


class MessageTooBig(WebSocketError):
    """A message over ``max_message_size``, before or after inflating (1009)."""

    code = 1009


class HandshakeError(errors.HTTPError):
    """An upgrade request that cannot become a WebSocket: answered with ``code`` and
    ``headers`` (see ``rejection_response``), then the connection closes."""

    headers: tuple[tuple[str, str], ...] = ()


class UnsupportedWebSocketVersion(HandshakeError):
    """Sec-WebSocket-Version missing or not 13: the answer names the version we speak."""

    code = 426
    reason = "Upgrade Required"
    headers = (("Sec-WebSocket-Version", "13"),)


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


# -- handshake -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extension:
    """One offer from Sec-WebSocket-Extensions: a name and its parameters in order (a
    parameter without a value has ``None``)."""

    name: str
    params: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Handshake:
    """A valid opening handshake (RFC 6455 §4.2.1)."""

    key: str  # Sec-WebSocket-Key as sent
    accept: str  # Sec-WebSocket-Accept to answer with
    subprotocols: tuple[str, ...]  # offered, in the client's order
    extensions: tuple[Extension, ...]  # offered, in the client's order
    origin: str | None = None


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(key.encode("ascii") + GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(headers: list[tuple[str, str]], name: str) -> list[str]:
    """The comma-separated lowercase tokens of every ``name`` header (UPPER name)."""
    return [
        t.strip(" \t").lower() for n, v in headers if n == name for t in v.split(",") if t.strip()
    ]


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request asks to become a WebSocket: HTTP/1.1 or later with
    ``Connection: upgrade`` and ``Upgrade: websocket`` (RFC 9110 §7.8: an HTTP/1.0 Upgrade
    is ignored). ``handshake`` then checks the rest."""
    if request.version < (1, 1):
        return False
    headers = request.headers
    return "upgrade" in _tokens(headers, "CONNECTION") and "websocket" in _tokens(
        headers, "UPGRADE"
    )


_KEY_RE = re.compile(r"[A-Za-z0-9+/]{22}==")
_TOKEN_RE = re.compile(f"[{TCHAR}]+")
_OWS = " \t"


def handshake(request: Request) -> Handshake:
    """Validate an upgrade request (``is_websocket_upgrade`` was true); raise
    ``HandshakeError`` (400) or ``UnsupportedWebSocketVersion`` (426)."""
    if request.method != "GET":
        raise HandshakeError(f"WebSocket handshake with method {errors.excerpt(request.method)}")
    if request.version < (1, 1):
        raise HandshakeError("WebSocket handshake needs HTTP/1.1")
    headers = request.headers
    if "websocket" not in _tokens(headers, "UPGRADE"):
        raise HandshakeError("Upgrade header without websocket")
    if "upgrade" not in _tokens(headers, "CONNECTION"):
        raise HandshakeError("Connection header without upgrade")
    versions = [v.strip(_OWS) for n, v in headers if n == "SEC-WEBSOCKET-VERSION"]
    if versions != ["13"]:
        raise UnsupportedWebSocketVersion("Sec-WebSocket-Version must be 13")
    keys = [v.strip(_OWS) for n, v in headers if n == "SEC-WEBSOCKET-KEY"]
    if len(keys) != 1:
        raise HandshakeError("exactly one Sec-WebSocket-Key is required")
    key = keys[0]
    if _KEY_RE.fullmatch(key) is None:  # 16 bytes in base64: 22 characters and "=="
        raise HandshakeError(f"invalid Sec-WebSocket-Key {errors.excerpt(key)}")
    subprotocols: list[str] = []
    for n, v in headers:
        if n == "SEC-WEBSOCKET-PROTOCOL":
            for item in v.split(","):
                item = item.strip(_OWS)
                if not item:
                    continue
                if _TOKEN_RE.fullmatch(item) is None:
                    raise HandshakeError(f"invalid subprotocol {errors.excerpt(item)}")
                subprotocols.append(item)
    extensions: list[Extension] = []
    for n, v in headers:
        if n == "SEC-WEBSOCKET-EXTENSIONS":
            extensions += parse_extensions(v)
    origins = [v for n, v in headers if n == "ORIGIN"]
    return Handshake(
        key,
        accept_key(key),
        tuple(subprotocols),
        tuple(extensions),
        origins[0] if origins else None,
    )


_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_PARAM_RE = re.compile(
    rf'[{_OWS}]*([{TCHAR}]+)(?:[{_OWS}]*=[{_OWS}]*([{TCHAR}]+|"(?:[^"\\]|\\.)*"))?[{_OWS}]*'
)


def parse_extensions(value: str) -> list[Extension]:
    """Parse one Sec-WebSocket-Extensions value (RFC 6455 §9.1): ``name *(";" param)``,
    comma separated, a parameter value a token or a quoted string holding a token."""
    out: list[Extension] = []
    for item in _split_outside_quotes(value, ","):
        if not item.strip(_OWS):
            continue
        parts = _split_outside_quotes(item, ";")
        name = parts[0].strip(_OWS)
        if _TOKEN_RE.fullmatch(name) is None:
            raise HandshakeError(f"invalid extension {errors.excerpt(item)}")
        params: list[tuple[str, str | None]] = []
        for part in parts[1:]:
            m = _PARAM_RE.fullmatch(part)
            if m is None:
                raise HandshakeError(f"invalid extension parameter {errors.excerpt(part)}")
            pname, pvalue = m.group(1), m.group(2)
            if pvalue is not None and pvalue.startswith('"'):
                pvalue = re.sub(r"\\(.)", r"\1", pvalue[1:-1])
                if _TOKEN_RE.fullmatch(pvalue) is None:
                    raise HandshakeError(f"invalid extension parameter {errors.excerpt(part)}")
            params.append((pname.lower(), pvalue))
        out.append(Extension(name.lower(), tuple(params)))
    return out


def _split_outside_quotes(value: str, sep: str) -> list[str]:
    """Split on ``sep`` except inside quoted strings."""
    if '"' not in value:
        return value.split(sep)
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(value[start:i])
            start = i + 1
    if quoted:
        raise HandshakeError(f"unterminated quoted string in {errors.excerpt(value)}")
    parts.append(value[start:])
    return parts


# Headers the 101 answer owns: the application may not set them (it chooses the
# subprotocol through ``subprotocol``, extensions are negotiated here).
_OWNED = frozenset(
    (
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "sec-websocket-version",
        "content-length",
    )
)


def accept_response(
    hs: Handshake,
    subprotocol: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    deflate: PerMessageDeflate | None = None,
    server: str | None = None,
) -> bytes:
    """The ``101 Switching Protocols`` head accepting ``hs``.

    ``subprotocol`` must be one the client offered; ``headers`` are the application's
    extra headers, validated like any response header (a bad name or value, or a header
    the handshake owns, raises ``response.InvalidResponse``; hop-by-hop ones are dropped,
    as in ``response.prepare``). With ``server``, Server and Date are added unless the
    application gave them.
    """
    lines = [
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ",
        hs.accept,
        "\r\n",
    ]
    if subprotocol is not None:
        if subprotocol not in hs.subprotocols:
            raise InvalidResponse(f"subprotocol {subprotocol!r} was not offered by the client")
        lines += ("Sec-WebSocket-Protocol: ", subprotocol, "\r\n")
    if deflate is not None:
        lines += ("Sec-WebSocket-Extensions: ", deflate.response_value(), "\r\n")
    has_date = has_server = False
    for item in headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InvalidResponse(f"header {item!r} is not a (name, value) pair")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise InvalidResponse(f"header {item!r} is not a pair of str")
        if NAME_RE.fullmatch(name) is None:
            raise InvalidResponse(f"invalid header name {name!r}")
        if BAD_VALUE_RE.search(value):
            raise InvalidResponse(f"invalid value for header {name!r}")
        lname = name.lower()
        if lname in _OWNED:
            raise InvalidResponse(f"{name} is set by the WebSocket handshake, not the app")
        if lname in HOP_BY_HOP:
            continue
        has_date = has_date or lname == "date"
        has_server = has_server or lname == "server"
        lines += (name, ": ", value, "\r\n")
    if server is not None:
        if not has_server:
            lines += ("Server: ", server, "\r\n")
        if not has_date:
            lines += ("Date: ", http_date(), "\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise InvalidResponse("header text is not latin-1") from exc


def rejection_response(error: HandshakeError, server: str) -> bytes:
    """A complete response refusing a handshake (with the error's extra headers, e.g. the
    426's Sec-WebSocket-Version), delimited by closing the connection."""
    body = f"{error.code} {error.reason}\n{error}\n".encode("latin-1", "replace")
    extra = "".join(f"{n}: {v}\r\n" for n, v in error.headers)
    return (
        f"HTTP/1.1 {error.code} {error.reason}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"Date: {http_date()}\r\nServer: {server}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body


# -- permessage-deflate (RFC 7692) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """The server's side of permessage-deflate.

    ``window_bits`` and ``mem_level`` size the compressor (zlib needs about
    ``2**(window_bits+2) + 2**(mem_level+9)`` bytes per connection: 32 KiB at 12 and 5,
    256 KiB at 15 and 8); a smaller window than the client allows is always safe, since a
    decoder with a larger window reads it. Messages shorter than ``min_size`` go out
    uncompressed. ``no_context_takeover`` makes every message compress on its own (less
    memory between messages, worse ratio).
    """

    level: int = 6
    window_bits: int = 12
    mem_level: int = 5
    min_size: int = 0
    no_context_takeover: bool = False


_DEFLATE_PARAMS = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)
_WINDOW_BITS = {str(b): b for b in range(8, 16)}
_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with (RFC 7692 §7.2.1)


def negotiate_deflate(
    offers: Sequence[Extension], options: DeflateOptions | None = None
) -> PerMessageDeflate | None:
    """Accept the first acceptable permessage-deflate offer, or None (no compression).

    An offer with an unknown, repeated or invalid parameter is declined (RFC 7692 §5.1);
    so is one asking for a server window of 8 bits, which zlib's raw deflate cannot make.
    """
    options = options or DeflateOptions()
    for offer in offers:
        if offer.name == "permessage-deflate":
            accepted = _accept_offer(offer.params, options)
            if accepted is not None:
                return accepted
    return None


def _accept_offer(
    offer: tuple[tuple[str, str | None], ...], options: DeflateOptions
) -> PerMessageDeflate | None:
    names = [name for name, _ in offer]
    if len(set(names)) != len(names) or not _DEFLATE_PARAMS.issuperset(names):
        return None
    params = dict(offer)
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if params.get(flag) is not None:  # these take no value
            return None
    window = options.window_bits
    answer_window: int | None = None
    if "server_max_window_bits" in params:
        asked = _WINDOW_BITS.get(params["server_max_window_bits"] or "")
        if asked is None or asked < 9:
            return None
        window = answer_window = min(window, asked)
    client_bits = params.get("client_max_window_bits")
    if client_bits is not None and client_bits not in _WINDOW_BITS:
        return None
    return PerMessageDeflate(
        options,
        server_no_context_takeover=(
            "server_no_context_takeover" in params or options.no_context_takeover
        ),
        client_no_context_takeover="client_no_context_takeover" in params,
        server_max_window_bits=answer_window,
        window_bits=window,
    )


class PerMessageDeflate:
    """The agreed permessage-deflate parameters and the connection's two zlib streams.

    Reading never needs the client's window size: inflating with the largest window reads
    any smaller one, and a persistent inflater reads messages made with or without context
    takeover alike.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "client_no_context_takeover",
        "min_size",
        "options",
        "server_max_window_bits",
        "server_no_context_takeover",
        "window_bits",
    )

    def __init__(
        self,
        options: DeflateOptions,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        window_bits: int = 15,
    ) -> None:
        self.options = options
        self.min_size = options.min_size
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.window_bits = window_bits
        self._compressor: zlib._Compress | None = None
        self._decompressor = zlib.decompressobj(-15)

    def response_value(self) -> str:
        """The Sec-WebSocket-Extensions value of the 101 answer."""
        value = "permessage-deflate"
        if self.server_no_context_takeover:
            value += "; server_no_context_takeover"
        if self.client_no_context_takeover:
            value += "; client_no_context_takeover"
        if self.server_max_window_bits is not None:
            value += f"; server_max_window_bits={self.server_max_window_bits}"
        return value

    def compress(self, data: bytes) -> bytes:
        """One whole message, compressed, without the trailing empty block."""
        comp = self._compressor
        if comp is None:
            opts = self.options
            comp = zlib.compressobj(opts.level, zlib.DEFLATED, -self.window_bits, opts.mem_level)
        out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        # keep the stream for the next message, unless each message stands alone
        self._compressor = None if self.server_no_context_takeover else comp
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes, limit: int | None, final: bool) -> bytes:
        """Inflate one frame's payload (``final``: the message's last frame), producing at
        most ``limit`` bytes (None: no limit); one byte more raises ``MessageTooBig``, so
        a zip bomb never inflates past the limit."""
        d = self._decompressor
        try:
            if limit is None:
                out = d.decompress(data)
                if final:
                    out += d.decompress(_TAIL)
            else:
                out = d.decompress(data, limit + 1)
                if final and len(out) <= limit and not d.unconsumed_tail:
                    out += d.decompress(_TAIL, limit + 1 - len(out))
                if len(out) > limit or d.unconsumed_tail:
                    raise MessageTooBig("message over the size limit once inflated")
        except zlib.error as exc:
            raise InvalidPayload(f"compressed payload does not inflate: {exc}") from None
        if d.eof:  # a final (BFINAL) block ends the stream: the next message starts afresh
            if d.unused_data:
                raise InvalidPayload("data after the end of a compressed stream")
            self._decompressor = zlib.decompressobj(-15)
        return out


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
