"""HTTP/2 for the WSGI workers that serve many requests at once (gthread, gevent, eventlet);
``Policy`` (the settings, the waits, who may speak h2c) is the asgi worker's too.

Why a package of its own: the protocol rules are ``http/http2/``'s (no IO); the waits and
the socket of one connection are ``connection.py``'s; one stream's WSGI cycle is
``stream.py``'s. What is left is here: deciding that a new connection speaks HTTP/2, and
keeping the worker's HTTP/2 connections so that a stop can say GOAWAY on each.

A connection speaks HTTP/2 when

- over TLS, the client picked ``h2`` by ALPN (offered in ``http_protocols``' order;
  ``workers.tls`` sets it up), or
- in clear text, ``http2_cleartext`` is ``prior-knowledge`` or ``both``, the peer is in
  ``forwarded_allow_ips``, and its first bytes are the connection preface. With
  ``prior-knowledge`` alone, such a peer that sends anything else gets 400 (it is expected
  to speak HTTP/2: a silent downgrade would hide a misconfiguration); with ``both`` its
  HTTP/1.1 request is served. Other peers are served HTTP/1.1, as with ``off``.

The worker type says how a connection and a stream are run (``run``, ``dispatch``): gthread
gives each connection a reader thread of its own and each stream a thread of its pool;
gevent and eventlet read in the connection's greenlet and give each stream a greenlet.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from greenhorn.http import errors
from greenhorn.http.http2 import MATCH, MISMATCH, PARTIAL, PREFACE, preface
from greenhorn.workers.connection import Timeout
from greenhorn.wsgi.trust import ProxyTrust

if TYPE_CHECKING:  # the h2 library is imported only once a connection speaks HTTP/2
    from greenhorn.config import Config
    from greenhorn.http.http2.session import H2Config, Stream
    from greenhorn.http.limits import Limits
    from greenhorn.http.parser import Request
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.base import Worker
    from greenhorn.workers.connection import Connection
    from greenhorn.workers.handler import Handler
    from greenhorn.workers.http2.connection import H2Connection

__all__ = [
    "MATCH",
    "MISMATCH",
    "PARTIAL",
    "SWITCHING",
    "Http2",
    "Policy",
    "h2_config",
    "serve_stream_on",
    "wanted",
]

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


def wanted(cfg: Config) -> bool:
    """Whether the settings ask for HTTP/2 at all."""
    return "h2" in cfg.http_protocols


def h2_config(cfg: Config, limits: Limits) -> H2Config:
    """The sessions' settings: the HTTP/2 ones and the worker's HTTP/1.1 limits."""
    from greenhorn.http.http2.session import H2Config

    return H2Config(
        limits=limits,
        max_concurrent_streams=int(cfg.http2_max_concurrent_streams),
        initial_window_size=int(cfg.http2_initial_window_size),
        max_frame_size=int(cfg.http2_max_frame_size),
        max_header_list_size=int(cfg.http2_max_header_list_size),
        max_body=int(getattr(cfg, "limit_request_body", 0) or 0),
    )


class Policy:
    """How a worker's HTTP/2 connections are run, from the settings: the sessions' config,
    the waits, and which cleartext peers speak h2c. Shared by the WSGI workers (``Http2``)
    and the asgi worker (``workers/asgi/http2.py``)."""

    def __init__(self, cfg: Config, limits: Limits) -> None:
        self.config = h2_config(cfg, limits)
        timeout = float(cfg.timeout)
        # a stream waiting on its client gives up well before the worker timeout would
        # count it as a stuck request
        self.stall = max(1.0, timeout / 2.0) if timeout else 30.0
        self.idle: float | None = float(cfg.keepalive) or None
        self.first: float | None = float(cfg.header_timeout) or 30.0
        self.cleartext = cfg.http2_cleartext
        self.prior_knowledge = cfg.http2_cleartext in ("prior-knowledge", "both")
        self.upgrades = cfg.http2_cleartext in ("upgrade", "both")
        self.trust = ProxyTrust(list(cfg.forwarded_allow_ips), {})

    def wants_preface(self, peer: str) -> bool:
        """Whether a new cleartext connection from ``peer`` may open with the h2c preface."""
        return self.prior_knowledge and self.trust.trusts(peer)

    def upgrade_settings(self, req: Request, scheme: str, peer: str) -> bytes | None:
        """The ``HTTP2-Settings`` of an HTTP/1.1 request that asks for ``Upgrade: h2c`` and
        may have it (``http2_cleartext`` upgrade or both, clear text, a trusted peer, no
        request body); None: serve it as HTTP/1.1 (a server may ignore an Upgrade)."""
        if not self.upgrades or scheme == "https" or req.chunked or req.content_length:
            return None
        upgrade = settings = None
        for name, value in req.headers:
            if name == "UPGRADE":
                upgrade = value
            elif name == "HTTP2-SETTINGS":
                if settings is not None:
                    return None
                settings = value
        if upgrade is None or settings is None or not self.trust.trusts(peer):
            return None
        if "h2c" not in (token.strip().lower() for token in upgrade.split(",")):
            return None
        return settings.encode("latin-1")


class Http2(Policy):
    """A worker's HTTP/2 connections: which connections are HTTP/2, and stopping them."""

    def __init__(
        self,
        worker: Worker,
        handler: Handler,
        run: Callable[[H2Connection], None],
        dispatch: Callable[[H2Connection, Stream], None],
    ) -> None:
        super().__init__(worker.cfg, worker.limits)
        self.worker = worker
        self.handler = handler
        self.log: Logger = worker.log
        self.stopping = False
        self._run = run
        self._dispatch = dispatch
        self._lock = threading.Lock()
        self.connections: set[H2Connection] = set()

    # -- what the handler asks on a new connection ------------------------------------------

    def take(self, conn: Connection, deadline: float | None) -> bool:
        """If ``conn`` (new, nothing read yet but a PROXY header) speaks HTTP/2, serve it as
        such and return True; True as well when it was refused (a trusted peer on a
        prior-knowledge-only port that sent no preface). False: serve HTTP/1.1."""
        if conn.scheme == "https":
            selected = getattr(conn.sock, "selected_alpn_protocol", None)
            if selected is None or selected() != "h2":
                return False
            initial = b""
        else:
            if not self.wants_preface(conn.peer):
                return False
            got = self._sniff(conn, deadline or time.monotonic() + 30.0)
            if got is None:
                return True
            verdict, initial = got
            if verdict == MISMATCH:
                if self.cleartext == "prior-knowledge":
                    self.refuse(conn)
                    return True
                conn.parser.feed(initial)  # an HTTP/1.1 request: served as usual
                return False
        self.start(conn, initial)
        return True

    def peek(self, conn: Connection) -> tuple[str, int] | None:
        """For a worker that reads heads without waiting (gthread): the preface verdict on
        what a new plain connection has sent so far, left in the socket, and how many bytes
        that was; None when h2c is not for this peer."""
        if not self.wants_preface(conn.peer):
            return None
        try:
            seen = conn.sock.recv(len(PREFACE), _PEEK)
        except BlockingIOError:
            return PARTIAL, 0
        except OSError:
            return MISMATCH, 0
        if not seen:  # the peer closed: HTTP/1.1's path closes it
            return MISMATCH, 0
        return preface(seen), len(seen)

    def refuse(self, conn: Connection) -> None:
        """400 for a trusted peer that does not open with the preface (prior-knowledge)."""
        self.handler.reject(
            conn,
            errors.HTTPError(
                "expected the HTTP/2 connection preface (http2_cleartext is prior-knowledge)"
            ),
        )

    def upgrade(self, conn: Connection, req: Request) -> bool:
        """An HTTP/1.1 request with ``Upgrade: h2c`` (``http2_cleartext`` upgrade or both,
        a trusted peer, no request body): answer 101 and serve it, and the connection, as
        HTTP/2; True when it did. Anything else is served as HTTP/1.1 (a server may ignore
        an Upgrade)."""
        settings = self.upgrade_settings(req, conn.scheme, conn.peer)
        if settings is None:
            return False
        from greenhorn.workers.http2.connection import H2Connection

        try:
            h2conn = H2Connection(self, conn, b"", (settings, req))
        except ValueError as exc:
            self.log.debug("Upgrade: h2c refused (%s): serving HTTP/1.1", exc)
            return False
        try:
            conn.send(SWITCHING, time.monotonic() + self.stall)
        except (OSError, Timeout):
            conn.close()
            return True
        h2conn._initial = conn.parser.take_buffered()  # the preface may have come already
        self._adopt(conn, h2conn)
        return True

    def start(self, conn: Connection, initial: bytes) -> None:
        """Serve ``conn`` as HTTP/2 from here on (``initial``: bytes already read from it)."""
        from greenhorn.workers.http2.connection import H2Connection

        self._adopt(conn, H2Connection(self, conn, initial))

    def _adopt(self, conn: Connection, h2conn: H2Connection) -> None:
        conn.closed = True  # the socket is the HTTP/2 connection's from here on
        with self._lock:
            self.connections.add(h2conn)
        self._run(h2conn)

    def _sniff(self, conn: Connection, deadline: float) -> tuple[str, bytes] | None:
        """Read until the first bytes are, or cannot be, the preface; None when the peer
        closed or the deadline passed (the connection is closed). Bytes that came with a
        PROXY header are in the parser already: they count first."""
        seen = conn.parser.take_buffered() if conn.parser.buffered else b""
        while True:
            verdict = preface(seen)
            if verdict != PARTIAL:
                return verdict, seen
            try:
                data = conn.recv(deadline)
            except (Timeout, OSError):
                data = b""
            if not data:
                if seen:  # a preface begun and never finished: 400, as gunicorn
                    self.refuse(conn)
                else:
                    conn.close()
                return None
            seen += data

    # -- connections ------------------------------------------------------------------------

    def dispatch(self, conn: H2Connection, stream: Stream) -> None:
        self._dispatch(conn, stream)

    def closed(self, conn: H2Connection) -> None:
        with self._lock:
            self.connections.discard(conn)

    def stop(self) -> None:
        """GOAWAY on every connection: the streams in flight finish, new ones are refused;
        each connection closes once it has none (``graceful_timeout`` bounds the wait)."""
        self.stopping = True
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            conn.goaway()

    def __len__(self) -> int:
        return len(self.connections)


def serve_stream_on(handler: Handler) -> Callable[[H2Connection, Stream, int], None]:
    """The function that serves one stream with ``handler``'s application and settings."""
    from greenhorn.workers.http2.stream import serve_stream

    def run(conn: H2Connection, stream: Stream, slot: int) -> None:
        serve_stream(handler, conn, stream, slot)

    return run
