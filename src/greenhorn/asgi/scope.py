"""ASGI scopes (``http`` and ``websocket``) from a parsed request and the connection's
addresses, built as uvicorn builds them.

Why a module of its own: the scope is the ASGI side of a request, as the environ is the
WSGI side (``wsgi/environ.py``); the worker only says which connection and which request.

What goes in (ASGI 3.0, spec 2.4): ``type``, ``asgi``, ``http_version``, ``method`` (http
only), ``scheme`` (``http``/``https``, ``ws``/``wss``), ``path`` (percent-decoded, UTF-8)
and ``raw_path`` (the bytes received), both prefixed with ``root_path`` (the setting: the
mount point a proxy stripped, as uvicorn does and Starlette expects), ``query_string``,
``root_path``, ``headers`` (lower-case names, bytes), ``server``, ``client``, ``state`` (a
shallow copy of the lifespan state, so one request's changes never reach another) and
``extensions``; a websocket scope adds ``subprotocols``.

Speed: per connection a template dict holds what does not change between its requests,
so a scope is one copy and a few stores; header lists are converted to bytes through a
bounded cache of (name, value) pairs, since clients repeat the same lines.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from greenhorn.http.parser import Request
from greenhorn.http.uwsgi import UwsgiRequest

__all__ = [
    "ASGI_VERSION",
    "HTTP2_EXTENSIONS",
    "header_list",
    "http_scope",
    "template",
    "uwsgi_scope",
    "websocket_scope",
]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
# What the worker supports beyond the core messages (ASGI extensions).
HTTP_EXTENSIONS: dict[str, dict[str, Any]] = {"http.response.informational": {}}
# over HTTP/2 a response may end with trailers as well (``http.response.trailers``)
HTTP2_EXTENSIONS: dict[str, dict[str, Any]] = {**HTTP_EXTENSIONS, "http.response.trailers": {}}
WEBSOCKET_EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}

_PAIRS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_PAIRS_MAX = 4096


def header_list(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """The parser's ``(NAME, value)`` pairs as ASGI's ``(b"name", b"value")``."""
    cache = _PAIRS
    out = []
    for pair in headers:
        converted = cache.get(pair)
        if converted is None:
            converted = (pair[0].lower().encode("latin-1"), pair[1].encode("latin-1"))
            if len(cache) >= _PAIRS_MAX:
                cache.clear()
            cache[pair] = converted
        out.append(converted)
    return out


def template(
    kind: str,
    server: tuple[str, int] | None,
    client: tuple[str, int] | None,
    secure: bool,
    root_path: str,
) -> dict[str, Any]:
    """The keys a connection's scopes share (``kind``: ``http`` or ``websocket``; an
    HTTP/2 connection changes ``http_version`` and ``extensions`` in a copy)."""
    if kind == "http":
        scheme = "https" if secure else "http"
        extensions = HTTP_EXTENSIONS
    else:
        scheme = "wss" if secure else "ws"
        extensions = WEBSOCKET_EXTENSIONS
    return {
        "type": kind,
        "asgi": ASGI_VERSION,
        "http_version": "1.1",
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "extensions": extensions,
        # per request:
        "method": "GET",
        "path": "",
        "raw_path": b"",
        "query_string": b"",
        "headers": [],
    }


def _paths(req: Request, root_path: str) -> tuple[str, bytes]:
    raw = req.path
    path = unquote(raw) if "%" in raw else raw
    raw_bytes = raw.encode("latin-1")
    if root_path:
        return root_path + path, root_path.encode("utf-8") + raw_bytes
    return path, raw_bytes


def http_scope(
    base: dict[str, Any],
    req: Request,
    state: dict[str, Any] | None,
    scheme: str | None = None,
) -> dict[str, Any]:
    """The ``http`` scope of ``req`` on the connection whose template is ``base``;
    ``scheme`` overrides the template's (a trusted proxy said https)."""
    scope = base.copy()
    scope["method"] = req.method
    raw = req.path
    root_path = base["root_path"]
    if root_path or "%" in raw:
        scope["path"], scope["raw_path"] = _paths(req, root_path)
    else:  # the common case: nothing to decode or prefix
        scope["path"] = raw
        scope["raw_path"] = raw.encode("latin-1")
    query = req.query
    scope["query_string"] = query.encode("latin-1") if query else b""
    scope["headers"] = header_list(req.headers)
    if req.version < (1, 1):  # (an HTTP/2 connection's template says "2")
        scope["http_version"] = "1.0"
    if scheme is not None:
        scope["scheme"] = scheme
    if state is not None:
        scope["state"] = state.copy()
    return scope


def uwsgi_scope(
    base: dict[str, Any],
    req: UwsgiRequest,
    state: dict[str, Any] | None,
    scheme: str | None = None,
) -> dict[str, Any]:
    """The ``http`` scope of a request that came as a uwsgi packet: as ``http_scope``, with
    what the proxy's variables say instead of the connection's: ``client`` (REMOTE_ADDR and
    REMOTE_PORT: the client's address, not the proxy's), ``server`` (SERVER_NAME, else the
    Host, and SERVER_PORT), ``scheme`` (``req.scheme``, unless a trusted proxy's
    secure-scheme header said otherwise: ``scheme``), ``http_version`` (SERVER_PROTOCOL:
    nginx says HTTP/2.0 for an HTTP/2 client) and, when the proxy sent a SCRIPT_NAME, the
    ``root_path`` (nginx's PATH_INFO is the whole path: it is not prefixed again)."""
    variables = req.vars
    script_name = variables.get("SCRIPT_NAME")
    if script_name is not None:
        base = {**base, "root_path": ""}
    scope = http_scope(base, req, state, scheme or req.scheme)
    if script_name is not None:
        scope["root_path"] = script_name
    major, minor = req.version
    scope["http_version"] = f"{major}.{minor}" if major < 2 else str(major)
    addr = variables.get("REMOTE_ADDR")
    if addr:
        port = variables.get("REMOTE_PORT")
        scope["client"] = (addr, int(port) if port else 0)
    port = variables.get("SERVER_PORT")
    if port:
        name = variables.get("SERVER_NAME")
        if not name:
            name = req.host or ""
            if ":" in name and not name.endswith("]"):
                name = name.rpartition(":")[0]
        scope["server"] = (name, int(port))
    return scope


def websocket_scope(
    base: dict[str, Any],
    req: Request,
    subprotocols: tuple[str, ...],
    state: dict[str, Any] | None,
    scheme: str | None = None,
) -> dict[str, Any]:
    """The ``websocket`` scope of the upgrade request ``req``."""
    scope = http_scope(base, req, state, scheme)
    del scope["method"]
    scope["subprotocols"] = list(subprotocols)
    return scope
