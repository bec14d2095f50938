"""The asgi worker's HTTP/1.1 connection: an asyncio protocol over the shared sans-IO parser.

Why a module of its own: an event loop serves many connections in one thread, so the
request cycle cannot block the way ``workers/handler.py``'s does; it is driven by the transport's
callbacks instead. What it shares with the WSGI workers is everything that is not about
blocking: the parser and its limits (``http/parser.py``), response heads and framing
(``http/response.py``), error answers, the environ the access log reads, the hooks, the
scoreboard counters.

One connection, one ``HttpConnection``; one request, one ``RequestCycle`` whose
``receive``/``send`` are the application's. The rules:

- **Order.** Requests on a connection are answered in order: a pipelined request waits in
  the parser's buffer until the response before it is complete (its last body message
  sent); the application may go on running after that (background tasks) while the next
  request is served.
- **Back-pressure both ways.** The request body is parsed as it arrives into the cycle's
  queue; past ``BODY_HIGH`` buffered bytes the transport stops reading until the
  application's ``receive()`` takes them, so an upload never sits in memory whole. A
  response write that fills the transport's buffer makes ``send()`` wait until the client
  reads; pipelined bytes past ``PIPELINE_HIGH`` pause reading too.
- **Disconnects.** When the client goes away, ``receive()`` answers ``http.disconnect``,
  ``send()`` does nothing, and the request task is cancelled after
  ``asgi_disconnect_grace_period`` seconds if it is still running.
- **Deadlines without timers per request.** Each connection keeps one ``deadline`` for its
  current phase (head: ``header_timeout`` → 408; keep-alive idle: ``keepalive`` → close;
  body: the ``body_min_rate`` floor → 408; a client that does not read our response:
  ``timeout``); the worker's sweep, four times a second, expires the ones that passed.
- **Errors.** A protocol error answers its status (``errors.HTTPError.code``) and closes; an
  application error before the response starts answers 500; after it, the connection is
  closed mid-body. A bad status or header from the application is never sent.
"""

from __future__ import annotations

import asyncio
import time
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from greenhorn.asgi.scope import template
from greenhorn.http import errors
from greenhorn.http.http2 import MATCH, PARTIAL, preface
from greenhorn.http.parser import EOF, NEED_DATA, Data, Parser, Request
from greenhorn.http.proxy import ProxyHeader
from greenhorn.http.response import error_response
from greenhorn.http.uwsgi import UwsgiParser
from greenhorn.ipc.scoreboard import REJECTED
from greenhorn.workers.asgi.cycle import RequestCycle
from greenhorn.workers.asgi.shared import (
    DRAIN_LIMIT,
    LINGER_SECONDS,
    PIPELINE_HIGH,
    WRITE_HIGH,
    Finished,
    Shared,
)
from greenhorn.workers.base import STOP_KEEPALIVE
from greenhorn.workers.connection import RequestParser
from greenhorn.workers.http2 import SWITCHING
from greenhorn.wsgi.environ import ConflictingSchemeHeaders, settle_forwarded
from greenhorn.wsgi.response import SERVER

if TYPE_CHECKING:
    from greenhorn.workers.asgi.http2 import H2Link

__all__ = ["HttpConnection"]

# connection phases
NEW, HEAD, IDLE, BUSY, DRAIN, LINGER, UPGRADED, HTTP2 = range(8)

_monotonic = time.monotonic
_name = itemgetter(0)


class HttpConnection(asyncio.Protocol):
    """One client connection. See the module docstring."""

    __slots__ = (
        "client",
        "closed",
        "cycle",
        "deadline",
        "drain_waiters",
        "eof",
        "h2",
        "h2_sniff",
        "head_started",
        "parser",
        "peer",
        "phase",
        "proxy",
        "proxy_buf",
        "proxy_header",
        "reading",
        "remote_addr",
        "remote_port",
        "requests",
        "scheme",
        "server",
        "server_name",
        "server_port",
        "shared",
        "sock",
        "template",
        "transport",
        "trusted",
        "write_paused",
        "ws",
    )

    def __init__(self, shared: Shared, proxy_header: ProxyHeader | None = None) -> None:
        self.shared = shared
        self.proxy_header = proxy_header  # read before a TLS handshake (accept.ProxyFirst)
        self.transport: Any = None
        self.parser: RequestParser = (
            UwsgiParser(shared.limits) if shared.uwsgi else Parser(shared.limits)
        )
        self.cycle: RequestCycle | None = None
        self.ws: Any = None  # the WebSocketSession after an upgrade
        self.h2: H2Link | None = None  # once the connection speaks HTTP/2
        self.h2_sniff: bytes | None = None  # the first bytes, while they may be the preface
        self.phase = NEW
        self.deadline: float | None = None
        self.head_started = 0.0
        self.closed = False
        self.eof = False  # the client closed its sending side
        self.reading = True
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.requests = 0
        self.proxy_buf: bytes | None = None
        # what the access log's environ reads (see wsgi.environ.build_environ)
        self.sock: Any = None
        self.peer = self.remote_addr = self.remote_port = ""
        self.server_name = self.server_port = ""
        self.scheme = "http"
        self.proxy: tuple[str, str, str] | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.template: dict[str, Any] = {}
        self.trusted: bool | None = None  # forwarded_allow_ips trusts the peer

    # -- transport callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        shared = self.shared
        self.transport = transport
        shared.connections.add(self)
        now = _monotonic()
        self.head_started = now
        timeout = shared.header_timeout
        self.deadline = now + timeout if timeout else None
        get = transport.get_extra_info
        self.sock = get("socket")
        peer = get("peername")
        if isinstance(peer, tuple):
            self.peer = self.remote_addr = str(peer[0])
            self.remote_port = str(peer[1])
            self.client = (str(peer[0]), int(peer[1]))
        sockname = get("sockname")
        if isinstance(sockname, tuple):
            self.server = (str(sockname[0]), int(sockname[1]))
            self.server_name, self.server_port = str(sockname[0]), str(sockname[1])
        elif sockname:
            self.server_name = str(sockname)
        secure = get("sslcontext") is not None
        self.scheme = "https" if secure else "http"
        self.template = template("http", self.server, self.client, secure, shared.root_path)
        transport.set_write_buffer_limits(WRITE_HIGH)  # type: ignore[attr-defined]
        if self.proxy_header is not None:
            self.apply_proxy(self.proxy_header)
        elif shared.proxy_gate.on and not secure:
            self.proxy_buf = b""
        shared.worker.connection_opened()
        if shared.uwsgi and not shared.uwsgi_peers.trusts(self.peer):
            self.refuse_uwsgi()
        elif shared.http2 is not None:
            if secure:
                ssl_object = get("ssl_object")
                if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                    self.start_http2(b"")
            elif shared.http2.wants_preface(self.peer):
                self.h2_sniff = b""

    def data_received(self, data: bytes) -> None:
        if self.proxy_buf is not None:
            rest = self._proxy_header(data)
            if rest is None:
                return
            data = rest
        phase = self.phase
        if phase == HTTP2:
            assert self.h2 is not None
            self.h2.data_received(data)
            return
        if self.h2_sniff is not None:
            rest = self._sniff(data)
            if rest is None:
                return
            data = rest
        if phase == BUSY:
            parser = self.parser
            parser.feed(data)
            cycle = self.cycle
            if cycle is not None and cycle.body_open:
                cycle.pull_body()
            elif parser.buffered > PIPELINE_HIGH:
                self.pause_reading()
            return
        if phase == UPGRADED:
            assert self.ws is not None
            self.ws.data_received(data)
            return
        if phase == DRAIN:
            self.parser.feed(data)
            self._drain_body()
            return
        if phase == LINGER:
            return
        if phase == IDLE:  # the head deadline starts with its first byte
            self.phase = HEAD
            now = self.shared.clock  # the sweep's: deadlines need no better
            self.head_started = now
            timeout = self.shared.header_timeout
            self.deadline = now + timeout if timeout else None
        elif phase == NEW:
            self.phase = HEAD
        try:
            event = self.parser.receive(data)
        except errors.HTTPError as exc:
            self.reject(exc)
            return
        if event is NEED_DATA:
            return
        if event is EOF:
            self.close()
            return
        self._request(event)  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        phase = self.phase
        if phase == HTTP2:
            assert self.h2 is not None
            self.h2.eof()
            return None  # close
        if phase == UPGRADED:
            assert self.ws is not None
            self.ws.data_received(b"")
            return True
        if phase in (NEW, IDLE, LINGER):
            return None  # close
        self.eof = True
        self.parser.feed(b"")
        cycle = self.cycle
        if phase == HEAD:
            self._next_head()
        elif phase == BUSY and cycle is not None:
            if cycle.body_open:
                cycle.pull_body()  # a body cut short: 400
            else:  # the client sent all it will: it may be gone (see RequestCycle.receive)
                cycle.peer_eof()
        elif phase == DRAIN:
            self._drain_body()
        return True  # keep the write side: a response may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        shared = self.shared
        shared.connections.discard(self)
        waiters, self.drain_waiters = self.drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected()
        if self.ws is not None:
            self.ws.connection_lost()
        if self.h2 is not None:
            self.h2.connection_lost()
        shared.worker.connection_closed()

    def pause_writing(self) -> None:
        self.write_paused = True
        timeout = self.shared.send_timeout
        if timeout and self.phase != UPGRADED:  # a client that does not read: see sweep
            self.deadline = _monotonic() + timeout

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.phase == BUSY:
            cycle = self.cycle
            self.deadline = cycle.body_deadline() if cycle is not None else None
        elif self.phase == HTTP2 and self.h2 is not None:
            self.h2.settle()
        waiters, self.drain_waiters = self.drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark (or closed)."""
        if self.write_paused and not self.closed:
            fut = self.shared.loop.create_future()
            self.drain_waiters.append(fut)
            await fut

    def pause_reading(self) -> None:
        if self.reading and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.transport.resume_reading()

    # -- requests -----------------------------------------------------------------------------

    def _next_head(self) -> None:
        try:
            event = self.parser.next_event()
        except errors.HTTPError as exc:
            self.reject(exc)
            return
        if event is NEED_DATA:
            return
        if event is EOF:
            self.close()
            return
        self._request(event)  # type: ignore[arg-type]

    def _request(self, req: Request) -> None:
        shared = self.shared
        if req.forwarded is not None:  # forwarder_headers count only from a trusted proxy
            trusted = self.trusted
            if trusted is None:
                trusted = self.trusted = shared.trust.trusts(self.peer)
            try:
                settle_forwarded(req, trusted, shared.header_map)
            except errors.HTTPError as exc:
                self.reject(exc)
                return
        now = _monotonic()
        req.accepted_at = self.head_started
        req.started_at = now
        self.requests += 1
        self.phase = BUSY
        self.deadline = None
        if shared.http2 is not None and shared.http2.upgrades and self._upgrade_h2c(req):
            return
        if req.upgrade and req.method == "GET":
            from greenhorn.http.websocket import is_websocket_upgrade

            if is_websocket_upgrade(req):
                from greenhorn.workers.asgi.websocket import upgrade

                self.phase = UPGRADED
                self.ws = upgrade(self, req)
                return
        cycle = RequestCycle(self, req)
        self.cycle = cycle
        if req.chunked or req.content_length:
            cycle.body_open = True
            cycle.pull_body()
        task = shared.loop.create_task(cycle.run())
        cycle.task = task
        shared.cycles[task] = cycle

    def scheme_for(self, req: Request) -> str | None:
        """``https``/``http`` when a trusted proxy's secure-scheme header says so (None:
        the connection's own); ``ConflictingSchemeHeaders`` when two of them disagree."""
        shared = self.shared
        if shared.scheme_names.isdisjoint(map(_name, req.headers)):
            return None
        wanted = shared.trust.headers
        hits = {value.lower() == wanted[name] for name, value in req.headers if name in wanted}
        if not hits:
            return None
        trusted = self.trusted
        if trusted is None:  # the peer does not change: ask once per connection
            trusted = self.trusted = self.shared.trust.trusts(self.peer)
        if not trusted:
            return None
        if len(hits) > 1:
            raise ConflictingSchemeHeaders()
        return "https" if hits.pop() else "http"

    def response_complete(self, cycle: Finished) -> None:
        """The last byte of ``cycle``'s response is written: close, or read the next one."""
        if self.cycle is not cycle or self.closed:
            return
        if not cycle.keep_alive:
            self.close(linger=cycle.body_open)
            return
        if cycle.body_open:  # the application did not read the whole body: discard it
            left = self.parser.body_left()
            if left is not None and left + sum(map(len, cycle.chunks)) > DRAIN_LIMIT:
                self.close(linger=True)
                return
            cycle.chunks.clear()
            cycle.body_open = False
            self.cycle = None
            self.phase = DRAIN
            self.deadline = _monotonic() + (self.shared.header_timeout or LINGER_SECONDS)
            self.resume_reading()
            self._drain_body()
            return
        self._next()

    def _drain_body(self) -> None:
        parser = self.parser
        discarded = 0
        try:
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    return
                if event.__class__ is Data:
                    discarded += len(event.data)
                    if discarded > DRAIN_LIMIT:
                        self.close(linger=True)
                        return
                    continue
                break  # EndOfMessage
        except errors.HTTPError:
            self.close(linger=True)
            return
        self._next()

    def _next(self) -> None:
        """Get ready for the next request on a kept-alive connection."""
        self.cycle = None
        try:
            self.parser.start_next()
        except RuntimeError:
            self.close()
            return
        if self.eof and not self.parser.buffered:
            self.close()  # (a client that half-closed sends no further request)
            return
        self.phase = IDLE
        shared = self.shared
        self.deadline = shared.clock + shared.keepalive
        if not self.reading:
            self.resume_reading()
        if shared.stopping:  # the response said keep-alive: wait briefly (``stop``)
            self.stop()
        if self.parser.buffered:
            self.phase = HEAD
            now = _monotonic()
            self.head_started = now
            timeout = self.shared.header_timeout
            self.deadline = now + timeout if timeout else None
            self._next_head()

    # -- ending -------------------------------------------------------------------------------

    def refuse_uwsgi(self) -> None:
        """A uwsgi connection from a peer outside ``uwsgi_allow_ips``: log, count, answer
        403 and close (lingering: the proxy sent its packet at once, and closing on unread
        bytes would reset the connection before it reads the answer)."""
        shared = self.shared
        shared.log.warning(
            "uWSGI request from ip=%s refused: not in uwsgi_allow_ips (--uwsgi-allow-from)",
            self.peer,
        )
        shared.board.counters[REJECTED] += 1
        self.proxy_buf = None
        self.write_error(403, "Forbidden", "uWSGI requests from this address are not allowed")
        self.close(linger=True, seconds=LINGER_SECONDS)

    def reject(self, exc: errors.HTTPError) -> None:
        """Answer a protocol error with its status, log it, count it, and close."""
        shared = self.shared
        shared.log.warning("Invalid request from ip=%s: %s", self.remote_addr, exc)
        shared.board.counters[REJECTED] += 1
        self.write_error(exc.code, exc.reason, str(exc))
        self.close(linger=True, seconds=LINGER_SECONDS)

    def write_error(self, code: int, reason: str, message: str) -> None:
        if not self.closed:
            self.transport.write(error_response(code, reason, message, SERVER))

    def close(self, linger: bool = False, seconds: float = LINGER_SECONDS) -> None:
        """Close after what was written is sent. ``linger``: the client may still be
        sending (an unread body): stop writing and read and discard for up to ``seconds``
        first, since closing on unread bytes resets the connection and can destroy the
        response before the client reads it (RFC 9112 §9.6)."""
        if self.closed:
            return
        transport = self.transport
        if linger and transport.can_write_eof():
            if self.phase == LINGER:
                return
            self.phase = LINGER
            self.cycle = None
            self.deadline = _monotonic() + seconds
            self.resume_reading()
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                transport.close()
            return
        self.phase = LINGER
        self.deadline = None
        transport.close()

    def abort(self) -> None:
        """Drop the connection now (a response cut short: the client must not take it
        for a whole one)."""
        if not self.closed:
            self.transport.abort()

    def expire(self, now: float) -> None:
        """The phase's deadline passed (the worker's sweep calls this)."""
        phase = self.phase
        self.deadline = None
        if self.write_paused and phase in (BUSY, DRAIN, HTTP2):  # the client stopped reading
            self.shared.log.debug("Client %s does not read its response: closing", self.remote_addr)
            self.abort()
        elif phase == HTTP2:
            if self.h2 is not None:
                self.h2.expire()
        elif phase == NEW and self.h2_sniff:  # a preface begun and never finished: 400
            self.reject(_no_preface())
        elif phase == HEAD or (phase == NEW and self.parser.buffered):
            self.reject(errors.HeadTimeout("request head not received in time"))
        elif phase == BUSY and self.cycle is not None and self.cycle.body_open:
            self.cycle.body_failed(errors.BodyTimeout("request body arrived too slowly"))
        elif phase == LINGER:
            self.transport.close()
        elif phase == UPGRADED:
            if self.ws is not None:
                self.ws.expire()
        else:
            self.close()

    def stop(self) -> None:
        """The worker stops: a connection waiting for a request (new, or kept alive) closes
        within ``STOP_KEEPALIVE`` seconds, not at once: its client may be sending one
        already, which is answered with ``Connection: close``. Busy ones close after their
        response. An HTTP/2 connection says GOAWAY: its streams finish, new ones are
        refused."""
        if self.phase == HTTP2:
            if self.h2 is not None:
                self.h2.goaway()
            return
        if self.phase in (NEW, IDLE) and not self.parser.buffered:
            cap = _monotonic() + STOP_KEEPALIVE
            if self.deadline is None or self.deadline > cap:
                self.deadline = cap

    # -- HTTP/2 -----------------------------------------------------------------------------

    def start_http2(self, initial: bytes) -> None:
        """Serve this connection as HTTP/2 from here on (``initial``: bytes read so far)."""
        from greenhorn.workers.asgi.http2 import H2Link

        policy = self.shared.http2
        assert policy is not None
        self.h2_sniff = None
        self.phase = HTTP2
        self.h2 = H2Link(self, policy)
        self.h2.start(initial)

    def _upgrade_h2c(self, req: Request) -> bool:
        """An HTTP/1.1 request with ``Upgrade: h2c`` that may have it (``Policy``): 101,
        then it is stream 1 of an HTTP/2 connection (RFC 7540 §3.2); True when it was."""
        policy = self.shared.http2
        assert policy is not None
        settings = policy.upgrade_settings(req, self.scheme, self.peer)
        if settings is None:
            return False
        from greenhorn.workers.asgi.http2 import H2Link

        link = H2Link(self, policy)
        try:
            stream = link.session.upgrade(settings, req)
        except ValueError as exc:
            self.shared.log.debug("Upgrade: h2c refused (%s): serving HTTP/1.1", exc)
            return False
        self.transport.write(SWITCHING)
        self.requests -= 1  # (counted again as stream 1)
        self.phase = HTTP2
        self.h2 = link
        link.start(self.parser.take_buffered(), stream)
        return True

    def _sniff(self, data: bytes) -> bytes | None:
        """A trusted cleartext peer's first bytes (``http2_cleartext``): the h2c preface
        starts HTTP/2; anything else is HTTP/1.1 (``both``) or refused with 400
        (``prior-knowledge``, as gunicorn: a silent downgrade would hide a
        misconfiguration). None: nothing for HTTP/1.1 (wait, or it was taken)."""
        seen = (self.h2_sniff or b"") + data
        verdict = preface(seen)
        if verdict == PARTIAL:
            self.h2_sniff = seen
            return None
        self.h2_sniff = None
        if verdict == MATCH:
            self.start_http2(seen)
            return None
        policy = self.shared.http2
        if policy is not None and policy.cleartext == "prior-knowledge":
            self.reject(_no_preface())
            return None
        return seen

    # -- PROXY protocol -------------------------------------------------------------------

    def _proxy_header(self, data: bytes) -> bytes | None:
        """Consume an optional PROXY header (``workers/proxy_gate.py`` decides); the bytes
        after it, or None (wait for more, or the connection was closed)."""
        buf = (self.proxy_buf or b"") + data

        def more(seen: bytes) -> bytes | None:
            if len(seen) < len(buf):
                return buf
            raise _NeedMore  # this is all we have: wait for the next data_received

        try:
            got = self.shared.proxy_gate.read(self.peer, more)
        except _NeedMore:
            self.proxy_buf = buf
            return None
        self.proxy_buf = None
        if got is None:
            self.abort()
            return None
        header, seen = got
        if header is None:
            return seen
        self.apply_proxy(header)
        return seen[header.consumed :]

    def apply_proxy(self, header: ProxyHeader) -> None:
        """The client's address as a trusted proxy's header gives it."""
        if not header.local:
            self.remote_addr = header.src_addr
            self.remote_port = str(header.src_port)
            self.client = (header.src_addr, header.src_port)
            family = "TCP6" if ":" in header.src_addr else "TCP4"
            self.proxy = (family, header.dst_addr, str(header.dst_port))
            self.template["client"] = self.client


def _no_preface() -> errors.HTTPError:
    return errors.HTTPError(
        "expected the HTTP/2 connection preface (http2_cleartext is prior-knowledge)"
    )


class _NeedMore(Exception):
    """The PROXY header is not complete yet (see ``HttpConnection._proxy_header``)."""
