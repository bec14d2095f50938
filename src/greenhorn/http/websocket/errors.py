"""The WebSocket errors: frame and message errors carry the close code to send, handshake
errors the HTTP status to answer with.

Why a module of its own: the frame reader, the permessage-deflate codec and the handshake
all raise them, and the worker catches them in one place; keeping them apart keeps the
other three modules free of imports between each other.
"""

from __future__ import annotations

from greenhorn.http import errors

__all__ = [
    "HandshakeError",
    "InvalidPayload",
    "MessageTooBig",
    "ProtocolError",
    "UnsupportedWebSocketVersion",
    "WebSocketError",
]


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
    """An upgrade request that cannot become a WebSocket: answered with ``code`` (400) and
    ``headers`` (see ``handshake.rejection_response``), then the connection closes."""

    headers: tuple[tuple[str, str], ...] = ()


class UnsupportedWebSocketVersion(errors.HTTPError):
    """Sec-WebSocket-Version missing or not 13: 426, and the answer names the version we
    speak (a sibling of ``HandshakeError``, answered the same way)."""

    code = 426
    reason = "Upgrade Required"
    headers: tuple[tuple[str, str], ...] = (("Sec-WebSocket-Version", "13"),)
