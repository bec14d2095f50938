"""The WebSocket opening handshake (RFC 6455 §4), server side: validate the upgrade
request, negotiate permessage-deflate, build the 101 answer or the refusal.

Why a module of its own: the handshake is HTTP, not frames. It reads the ``Request`` the
HTTP parser made and writes a response head under the same header rules as
``response.prepare`` (a bad name or value from the application is never sent), so it
shares http/'s grammar, not the frame reader's state.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenhorn.http import errors
from greenhorn.http.fields import TCHAR
from greenhorn.http.response import HOP_BY_HOP, InvalidResponse, field_pair, http_date
from greenhorn.http.websocket.deflate import DeflateOptions, PerMessageDeflate
from greenhorn.http.websocket.errors import HandshakeError, UnsupportedWebSocketVersion

if TYPE_CHECKING:
    from greenhorn.http.parser import Request

__all__ = [
    "Extension",
    "Handshake",
    "accept_key",
    "accept_response",
    "handshake",
    "is_websocket_upgrade",
    "negotiate_deflate",
    "parse_extensions",
    "rejection_response",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


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
        name, value = field_pair(item)
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


def rejection_response(error: HandshakeError | UnsupportedWebSocketVersion, server: str) -> bytes:
    """A complete response refusing a handshake (with the error's extra headers, e.g. the
    426's Sec-WebSocket-Version), delimited by closing the connection."""
    body = f"{error.code} {error.reason}\n{error}\n".encode("latin-1", "replace")
    extra = "".join(f"{n}: {v}\r\n" for n, v in error.headers)
    return (
        f"HTTP/1.1 {error.code} {error.reason}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"Date: {http_date()}\r\nServer: {server}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body


# -- permessage-deflate negotiation (RFC 7692 §7.1) ------------------------------------------

_DEFLATE_PARAMS = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)
_WINDOW_BITS = {str(b): b for b in range(8, 16)}


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
