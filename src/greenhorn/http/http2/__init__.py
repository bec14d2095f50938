"""HTTP/2 without IO: the rules of RFC 9113 that greenhorn enforces itself, around the h2
library's frame and stream state machine.

Why a package of its own, in http/: like the HTTP/1.1 parser, everything here takes bytes
(and the time, where a rate is counted) and returns events and bytes; the workers own the
sockets, the threads and the event loop. It is tested frame by frame without a server.

- ``request``: a header list → the same ``http.parser.Request`` an HTTP/1.1 head gives
  (RFC 9113 §8: pseudo-header fields, connection-specific fields refused, the HTTP/1.1
  limits), so the environ, the ASGI scope, the hooks and the access log need no HTTP/2
  branch.
- ``response``: a response head (WSGI's status and headers, ASGI's) → HTTP/2 header
  fields, validated as for HTTP/1.1; informational (103) and trailer fields.
- ``guard``: a scan of the frame headers before h2 parses anything: floods of RST_STREAM
  (rapid reset), PING, SETTINGS, PRIORITY and empty DATA frames, and a header block that
  grows past its bound (the CONTINUATION flood) end the connection with
  ENHANCE_YOUR_CALM before they cost more.
- ``session``: one connection: the h2 state machine, each stream's request body held for
  the application with flow control (credited as it is read, so a slow reader does not
  grow memory), Content-Length against DATA, graceful GOAWAY.
- ``machine``: h2's connection as the session drives it: two connection errors made stream
  errors, and the response's frames written as bytes after h2's own state transitions;
  ``hpack_in`` and ``hpack_out``: the request's header blocks decoded once per distinct
  block at a given dynamic table state, the response's fields encoded once per field.

The h2 library is an optional dependency (``pip install 'greenhorn[http2]'``): nothing
here imports it until a connection speaks HTTP/2 (``available()`` asks without importing
the rest).
"""

from __future__ import annotations

__all__ = [
    "H2_MIN_VERSION",
    "MATCH",
    "MISMATCH",
    "PARTIAL",
    "PREFACE",
    "alpn",
    "available",
    "preface",
]

H2_MIN_VERSION = (4, 1, 0)
# The client connection preface (RFC 9113 §3.4): what a prior-knowledge h2c client sends
# first. Its first line is a request line the HTTP/1.1 parser would refuse (505).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MATCH, PARTIAL, MISMATCH = "match", "partial", "mismatch"

_available: bool | None = None


def available() -> bool:
    """Whether the h2 library is installed, in a version greenhorn supports (4.1+)."""
    global _available
    if _available is None:
        try:
            import h2
        except ImportError:
            _available = False
        else:
            version = getattr(h2, "__version__", "0")
            parts = []
            for part in version.split(".")[:3]:
                digits = "".join(c for c in part if c.isdigit())
                parts.append(int(digits or 0))
            _available = tuple(parts) >= H2_MIN_VERSION
    return _available


_ALPN = {"h1": "http/1.1", "h2": "h2"}


def alpn(protocols: list[str]) -> list[str]:
    """The ALPN ids to offer for ``http_protocols`` (``h2``, ``h1``), in order; none when
    h2 is not asked for or not installed (TLS then speaks HTTP/1.1 as without ALPN)."""
    if "h2" not in protocols or not available():
        return []
    return [_ALPN[name] for name in protocols if name in _ALPN]


def preface(data: bytes | bytearray) -> str:
    """``MATCH`` when ``data`` starts with the whole connection preface, ``PARTIAL`` while
    it is a beginning of it, else ``MISMATCH``."""
    if len(data) >= len(PREFACE):
        return MATCH if data.startswith(PREFACE) else MISMATCH
    return PARTIAL if PREFACE.startswith(bytes(data)) else MISMATCH
