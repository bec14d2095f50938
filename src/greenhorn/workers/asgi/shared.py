"""What every connection of one asgi worker shares: the settings it reads per request, the
sets the worker's sweep and stop walk, and the typed seam between a connection and what
runs on it (a request cycle, a WebSocket session).

Why a module of its own: the connection (``connection.py``), the request cycle
(``cycle.py``) and the WebSocket session (``websocket.py``) all read these, and the
connection creates the other two; with the shared parts here, none of them imports
another's module for its types (no import cycle).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

from greenhorn.config import hooks
from greenhorn.http.http2 import available
from greenhorn.http.parser import Limits, Request
from greenhorn.ipc.scoreboard import Scoreboard
from greenhorn.workers.connection import RequestParser
from greenhorn.workers.hook_request import RequestView
from greenhorn.workers.http2 import Policy, wanted
from greenhorn.workers.proxy_gate import ProxyGate
from greenhorn.wsgi.environ import Client
from greenhorn.wsgi.input import Body
from greenhorn.wsgi.trust import ProxyTrust

if TYPE_CHECKING:
    from greenhorn.asgi.app import ASGIApp
    from greenhorn.config import Config
    from greenhorn.ipc.scoreboard import WorkerTmp
    from greenhorn.observe.logger import Logger

__all__ = [
    "BODY_HIGH",
    "DRAIN_LIMIT",
    "LINGER_SECONDS",
    "PIPELINE_HIGH",
    "WRITE_HIGH",
    "Finished",
    "Host",
    "Owner",
    "Running",
    "Session",
    "Shared",
]

BODY_HIGH = 256 * 1024  # request body buffered for the application before reading pauses
PIPELINE_HIGH = 64 * 1024  # pipelined bytes buffered while a request is served
DRAIN_LIMIT = 1 << 20  # unread request body discarded to keep a connection alive
LINGER_SECONDS = 0.5  # reading what a client still sends before closing on it
WRITE_HIGH = 64 * 1024  # the transport's write buffer: send() waits above it


class Running(Protocol):
    """A request being served (what the watchdog reads to name it)."""

    req: Request


class Finished(Running, Protocol):
    """A request whose response is complete, as its connection reads it then."""

    keep_alive: bool
    body_open: bool
    chunks: list[bytes]


class Owner(Protocol):
    """The asgi worker as its connections see it."""

    cfg: Config
    log: Logger
    tmp: WorkerTmp
    limits: Limits
    alive: bool
    nr: int
    max_requests: int

    def max_requests_reached(self) -> None: ...

    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...


class Session(Protocol):
    """An open WebSocket (what the worker's stop closes)."""

    def going_away(self) -> None: ...


class Host(Client, Protocol):
    """The connection a request cycle or a WebSocket session runs on (the environ reads it
    as a ``wsgi.environ.Client``)."""

    shared: Shared
    transport: Any  # asyncio.Transport (uvloop's is not a subclass)
    parser: RequestParser
    reading: bool
    write_paused: bool
    closed: bool
    deadline: float | None
    remote_addr: str
    template: dict[str, Any]
    cycle: Any
    client: tuple[str, int] | None  # the peer (the PROXY header's client once applied)
    requests: int  # requests read on this connection so far

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def drain(self) -> None: ...

    def write_error(self, code: int, reason: str, message: str) -> None: ...

    def close(self, linger: bool = False, seconds: float = LINGER_SECONDS) -> None: ...

    def abort(self) -> None: ...

    def response_complete(self, cycle: Finished) -> None: ...

    def scheme_for(self, req: Request) -> str | None: ...


class Shared:
    """What every connection of one asgi worker reads, built once when it boots."""

    def __init__(
        self,
        worker: Owner,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        state: dict[str, Any] | None,
    ) -> None:
        cfg = worker.cfg
        self.worker = worker
        self.app = app
        self.loop = loop
        self.state = state
        self.log = worker.log
        self.board: Scoreboard = worker.tmp.board
        self.limits: Limits = worker.limits
        self.keepalive = float(cfg.keepalive)
        self.header_timeout = float(cfg.header_timeout) or None
        self.min_rate = int(cfg.body_min_rate)
        self.send_timeout = float(cfg.timeout) or None
        self.grace = float(cfg.asgi_disconnect_grace_period)
        self.root_path = str(cfg.root_path or "")
        self.header_map = cfg.header_map
        self.trust = ProxyTrust(list(cfg.forwarded_allow_ips), dict(cfg.secure_scheme_headers))
        self.proxy_gate = ProxyGate(cfg.proxy_protocol, cfg.proxy_allow_ips, worker.log)
        self.uwsgi = cfg.protocol == "uwsgi"  # requests come as uwsgi packets
        self.uwsgi_peers = ProxyTrust(list(cfg.uwsgi_allow_ips), {})  # who may send them
        self.max_message_size = int(cfg.websocket_max_message_size)
        # HTTP/2 (``--http-protocols h2``, the h2 library installed): workers/asgi/http2.py
        self.http2: Policy | None = None
        if wanted(cfg) and available():
            self.http2 = Policy(cfg, worker.limits)
        self.cfg = cfg
        # default (no-op) hooks are skipped on the hot path
        self.pre_request = not hooks.is_default(cfg, "pre_request")
        self.post_request = not hooks.is_default(cfg, "post_request")
        self.base_environ: dict[str, Any] = {}
        self.no_body = Body(None)
        self.connections: set[Any] = set()  # the worker's HttpConnections
        self.websockets: set[Session] = set()
        self.cycles: dict[asyncio.Task[None], Running] = {}  # running app calls
        self.stopping = False
        self.access_enabled = bool(self.log.access_enabled)
        self.scheme_names = frozenset(self.trust.headers)  # secure_scheme_headers, UPPER
        self.clock = time.monotonic()  # the sweep's clock (4 times a second), for deadlines


def hook_request(conn: Host, req: Request) -> RequestView:
    """The request as ``pre_request``/``post_request`` see it (gunicorn's attributes; an
    ASGI request has no body reader: ``body`` is None)."""
    peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
    return RequestView(
        req,
        body=None,
        scheme=conn.scheme_for(req) or conn.scheme,
        peer_addr=(str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else "",
        remote_addr=conn.client or "",
        req_number=conn.requests,
    )
