"""PEP 3333: the environ, ``wsgi.errors`` and ``wsgi.file_wrapper``.

Why a module of its own: the WSGI contract is independent of how bytes arrive. Every worker
type builds its environ here, from a parsed ``Request`` and the connection's addresses;
``wsgi.input`` is ``input.Body``, which pulls from whatever reader the worker supplies.

Speed notes: the per-worker base dict holds the keys that never change plus placeholders
for the per-request ones, so one copy gives a table that needs no resizing; header names
map to ``HTTP_*`` keys through a bounded cache, and Host values to SERVER_NAME/SERVER_PORT
through another. Building an environ is one dict copy, a dozen stores and one loop over
the headers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Protocol
from urllib.parse import unquote_to_bytes

from greenhorn import SERVER_SOFTWARE
from greenhorn.http import errors
from greenhorn.http.parser import Request
from greenhorn.http.uwsgi import UwsgiRequest
from greenhorn.wsgi.input import Body
from greenhorn.wsgi.trust import ProxyTrust

__all__ = [
    "ConflictingSchemeHeaders",
    "ErrorsStream",
    "FileWrapper",
    "base_environ",
    "build_environ",
    "build_uwsgi_environ",
    "multiprocess",
    "outside_mount",
    "settle_forwarded",
]


class Client(Protocol):
    """What the environ needs to know about the connection a request came on (the worker's
    ``workers.connection.Connection`` has it)."""

    @property
    def sock(self) -> object: ...  # wsgi's greenhorn.socket / gunicorn.socket

    @property
    def remote_addr(self) -> str: ...

    @property
    def remote_port(self) -> str: ...

    @property
    def peer(self) -> str: ...  # the socket's real peer (a PROXY header may change the above)

    @property
    def scheme(self) -> str: ...

    @property
    def server_name(self) -> str: ...

    @property
    def server_port(self) -> str: ...

    @property
    def proxy(self) -> tuple[str, str, str] | None: ...  # PROXY_PROTOCOL, _ADDR, _PORT


_KEY_CACHE: dict[str, str] = {"CONTENT-TYPE": "CONTENT_TYPE", "CONTENT-LENGTH": "CONTENT_LENGTH"}
_KEY_CACHE_MAX = 2048


class FileWrapper:
    """``wsgi.file_wrapper``: the worker sends it with ``os.sendfile`` when it can."""

    __slots__ = ("blksize", "filelike")

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class ErrorsStream:
    """``wsgi.errors``: writes go to whatever stream the error log uses *now*, so they keep
    landing in the right file after USR1 reopened it."""

    __slots__ = ("_current",)

    def __init__(self, current: Callable[[], IO[str]]) -> None:
        self._current = current

    def write(self, text: str) -> int:
        return self._current().write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        self._current().writelines(lines)

    def flush(self) -> None:
        self._current().flush()


# Keys every request sets: they are in the base dict (as None) so that copying it gives a
# table already big enough, and the per-request stores only overwrite.
PER_REQUEST_KEYS = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "REQUEST_URI",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.url_scheme",
    "wsgi.input",
    "greenhorn.socket",
    "gunicorn.socket",
)


def multiprocess(workers: int | str, workers_max: int | None = None) -> bool:
    """``wsgi.multiprocess``: False only when one worker process is all there will be (as
    gunicorn sets it: ``workers > 1``); ``-w auto`` and autoscaling may run several."""
    return workers != 1 or (workers_max or 0) > 1


def base_environ(
    *,
    multithread: bool,
    errors: ErrorsStream | IO[str] | None = None,
    script_name: str | None = None,
    multiprocess: bool = True,
) -> dict[str, Any]:
    """The keys that are the same for every request a worker serves, plus a None
    placeholder for each of ``PER_REQUEST_KEYS`` (``build_environ`` sets them all)."""
    base = {
        "wsgi.version": (1, 0),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SCRIPT_NAME": script_name if script_name is not None else "",
    }
    base.update(dict.fromkeys(PER_REQUEST_KEYS))
    return base


def build_environ(
    base: dict[str, Any],
    req: Request,
    conn: Client,
    body: Body,
    trust: ProxyTrust | None = None,
) -> dict[str, Any]:
    """The PEP 3333 environ for one request. All values are native ``str`` (latin-1).

    ``conn`` is the worker's connection (``workers.connection.Connection``): ``sock``,
    ``remote_addr``, ``remote_port``, ``peer``, ``scheme``, ``server_name``, ``server_port``
    and ``proxy`` are read.
    """
    path = req.path
    forwarded = req.forwarded  # from a trusted proxy (the worker checked): SCRIPT_NAME...
    if "%" in path or forwarded is not None or base["SCRIPT_NAME"]:
        path = _path_info(path, base["SCRIPT_NAME"], forwarded)
    uri = req.uri
    sock = conn.sock
    scheme = conn.scheme
    env = base.copy()  # already sized for a full environ: the stores below only overwrite
    env["REQUEST_METHOD"] = req.method
    env["PATH_INFO"] = path
    env["QUERY_STRING"] = req.query
    env["RAW_URI"] = env["REQUEST_URI"] = uri
    version = req.version
    env["SERVER_PROTOCOL"] = (
        "HTTP/1.1" if version == (1, 1) else "HTTP/2.0" if version == (2, 0) else "HTTP/1.0"
    )
    env["REMOTE_ADDR"] = conn.remote_addr
    env["REMOTE_PORT"] = conn.remote_port
    env["wsgi.url_scheme"] = scheme
    env["wsgi.input"] = body
    env["greenhorn.socket"] = env["gunicorn.socket"] = sock
    cache = _KEY_CACHE
    for name, value in req.headers:
        key = cache.get(name)
        if key is None:
            key = _environ_key(name)
        if key in env:
            env[key] += "," + value  # RFC 9110 §5.3: combine repeated fields
        else:
            env[key] = value
    host = req.host
    if host:
        server = _HOST_CACHE.get(host)
        if server is None:
            server = _split_host(host)
        env["SERVER_NAME"] = server[0]
        env["SERVER_PORT"] = server[1] or ("443" if scheme == "https" else "80")
    else:
        env["SERVER_NAME"] = conn.server_name
        env["SERVER_PORT"] = conn.server_port
    if conn.proxy is not None:
        env["PROXY_PROTOCOL"], env["PROXY_ADDR"], env["PROXY_PORT"] = conn.proxy
    if forwarded is not None:  # from a trusted proxy: each as its HTTP_ key (gunicorn's
        for name, value in forwarded:  # mapping), and SCRIPT_NAME, PATH_INFO as it says
            env[_environ_key(name)] = value
            if name in SET_BY_PROXY:
                env[name] = value
    if trust is not None and not env.keys().isdisjoint(trust.keys):
        _apply_scheme_headers(env, req, conn, trust)
    return env


def build_uwsgi_environ(
    base: dict[str, Any],
    req: UwsgiRequest,
    conn: Client,
    body: Body,
    trust: ProxyTrust | None = None,
) -> dict[str, Any]:
    """The environ of a request that came as a uwsgi packet (``--protocol uwsgi``).

    The proxy's CGI variables go in as it sent them (DOCUMENT_ROOT, HTTPS, REQUEST_SCHEME,
    anything set with ``uwsgi_param``), as uWSGI does; names with a dot never do. Then the
    server's own keys, from the request the parser made of them: REQUEST_METHOD, PATH_INFO
    (without SCRIPT_NAME, the proxy's when it sent one), QUERY_STRING, REQUEST_URI,
    CONTENT_LENGTH and CONTENT_TYPE (only when not empty), the headers as HTTP_* keys, and
    ``wsgi.url_scheme`` (UWSGI_SCHEME, HTTPS or REQUEST_SCHEME; a trusted proxy's
    secure-scheme header still applies). REMOTE_ADDR, REMOTE_PORT, SERVER_NAME,
    SERVER_PORT and SERVER_PROTOCOL are the proxy's (the client's address, not the
    proxy's: gunicorn puts the proxy's there), the connection's or the Host's when the
    proxy left them out or empty.
    """
    variables = req.vars
    env = base.copy()
    if req.extensions:
        env.update({k: v for k, v in variables.items() if "." not in k})
    else:
        env.update(variables)
    pop = env.pop
    pop("CONTENT_LENGTH", None)  # from the headers below, when there is one
    pop("CONTENT_TYPE", None)
    path = req.path
    script_name = variables.get("SCRIPT_NAME")
    if script_name is None:
        script_name = base["SCRIPT_NAME"]
    else:
        env["SCRIPT_NAME"] = script_name
    if "%" in path or script_name:
        path = _path_info(path, script_name, None)
    env["REQUEST_METHOD"] = req.method
    env["PATH_INFO"] = path
    env["QUERY_STRING"] = req.query
    env["RAW_URI"] = env["REQUEST_URI"] = req.uri
    if not variables.get("SERVER_PROTOCOL"):
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version == (1, 1) else "HTTP/1.0"
    if not variables.get("REMOTE_ADDR"):
        env["REMOTE_ADDR"] = conn.remote_addr
        env["REMOTE_PORT"] = conn.remote_port
    elif not variables.get("REMOTE_PORT"):
        env["REMOTE_PORT"] = ""
    scheme = env["wsgi.url_scheme"] = req.scheme
    env["wsgi.input"] = body
    env["greenhorn.socket"] = env["gunicorn.socket"] = conn.sock
    cache = _KEY_CACHE
    for name, value in req.headers:
        key = cache.get(name)
        if key is None:
            key = _environ_key(name)
        if key in env:
            env[key] += "," + value
        else:
            env[key] = value
    if not variables.get("SERVER_NAME") or not variables.get("SERVER_PORT"):
        host = req.host
        if host:
            server = _HOST_CACHE.get(host)
            if server is None:
                server = _split_host(host)
            server = (server[0], server[1] or ("443" if scheme == "https" else "80"))
        else:
            server = (conn.server_name, conn.server_port)
        env["SERVER_NAME"] = variables.get("SERVER_NAME") or server[0]
        env["SERVER_PORT"] = variables.get("SERVER_PORT") or server[1]
    if conn.proxy is not None:
        env["PROXY_PROTOCOL"], env["PROXY_ADDR"], env["PROXY_PORT"] = conn.proxy
    if trust is not None and not env.keys().isdisjoint(trust.keys):
        _apply_scheme_headers(env, req, conn, trust)
    return env


def _path_info(path: str, script_name: str, forwarded: list[tuple[str, str]] | None) -> str:
    """PATH_INFO: the path decoded, without the SCRIPT_NAME prefix (the proxy's, when a
    trusted one sent one) at a path-segment boundary (``outside_mount`` refuses a path
    that is not under it before the environ is built)."""
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    if forwarded is not None:
        script_name = dict(forwarded).get("SCRIPT_NAME", script_name)
    script_name = script_name.rstrip("/")
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name) :]
    return path


def outside_mount(req: Request, script_name: str) -> errors.OutsideScriptName | None:
    """The refusal for a request whose path is not under the application's mount point:
    ``script_name`` (the ``SCRIPT_NAME`` environment variable), or the SCRIPT_NAME a
    trusted proxy sent: as a header, or for a uwsgi request the packet's SCRIPT_NAME
    variable (``uwsgi_param``; the environ is built with it, so the path it is checked
    against is PATH_INFO, nginx's whole path). The application is mounted there and
    nothing else of it exists; gunicorn refuses these requests too (with 500; in uwsgi mode
    it ignores the packet's SCRIPT_NAME). At a segment boundary: ``/appx`` is outside
    ``/app``. None when the path is inside (or there is no mount point)."""
    if req.forwarded is not None:
        script_name = dict(req.forwarded).get("SCRIPT_NAME", script_name)
    elif isinstance(req, UwsgiRequest):
        script_name = req.vars.get("SCRIPT_NAME", script_name)
    script_name = script_name.rstrip("/")
    if not script_name:
        return None
    path = req.path
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    if path == script_name or path.startswith(script_name + "/"):
        return None
    return errors.OutsideScriptName(
        f"request path {_shown(path)} is not under SCRIPT_NAME {_shown(script_name)}"
    )


def _shown(text: str) -> str:
    return repr(text[:100] + ("..." if len(text) > 100 else ""))


# Forwarder headers a trusted proxy may turn into the environ variable of that name. Any
# other (REMOTE_USER above all) reaches the application only as its HTTP_ key, as gunicorn
# 27 maps it: REMOTE_USER is what frameworks read as "the server authenticated this user",
# so a client header a proxy forgot to strip must never become it.
SET_BY_PROXY = frozenset({"SCRIPT_NAME", "PATH_INFO"})

_HOST_CACHE: dict[str, tuple[str, str]] = {}
_HOST_CACHE_MAX = 256


def _split_host(host: str) -> tuple[str, str]:
    """Host header → (SERVER_NAME, SERVER_PORT or "" for the scheme's default), cached."""
    name, sep, port = host.rpartition(":")
    if sep and not host.endswith("]") and (port.isdigit() or not port):
        server = (name, port)
    else:
        server = (host, "")
    if len(_HOST_CACHE) >= _HOST_CACHE_MAX:
        _HOST_CACHE.clear()
    _HOST_CACHE[host] = server
    return server


def _environ_key(name: str) -> str:
    """UPPER-CASE header name → its ``HTTP_*`` environ key (cached, bounded)."""
    key = "HTTP_" + name.replace("-", "_")
    if len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[name] = key
    return key


def _apply_scheme_headers(
    env: dict[str, Any], req: Request, conn: Client, trust: ProxyTrust
) -> None:
    """A secure-scheme header is present: from a trusted peer it sets ``wsgi.url_scheme``
    (every occurrence must agree, else ``ConflictingSchemeHeaders``)."""
    if not trust.trusts(conn.peer):
        return
    wanted = trust.headers
    hits = {value.lower() == wanted[name] for name, value in req.headers if name in wanted}
    if not hits:
        return
    if len(hits) > 1:
        raise ConflictingSchemeHeaders()
    env["wsgi.url_scheme"] = "https" if hits.pop() else "http"


def settle_forwarded(req: Request, trusted: bool, header_map: str) -> None:
    """The parser set ``forwarder_headers`` apart (``req.forwarded``): from a trusted peer
    they stay for ``build_environ`` to apply; from anyone else they get ``header_map``'s
    treatment: dropped, refused (``InvalidHeaderName``) or kept as ``HTTP_*`` headers."""
    if trusted or not req.forwarded:
        return
    forwarded, req.forwarded = req.forwarded, None
    if header_map == "refuse":
        raise errors.InvalidHeaderName(f"underscore in header name {forwarded[0][0]}")
    if header_map == "dangerous":
        req.headers.extend(forwarded)


class ConflictingSchemeHeaders(Exception):
    """Two trusted scheme headers disagree (gunicorn answers 400)."""
