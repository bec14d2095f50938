"""One HTTP request of the asgi worker: the application's ``receive`` and ``send``, the
response on the wire, and the request's accounting (scoreboard, hooks, access log).

Why a module of its own: the connection (``connection.py``) decides when bytes are read and
which request is current; the cycle is what the application talks to. It outlives its
turn on the connection when the application goes on after its response (background
tasks), so it holds its own state and never assumes it is still the connection's current
request. See ``connection.py`` for the rules both follow.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from greenhorn.asgi.app import Message
from greenhorn.asgi.scope import http_scope, uwsgi_scope
from greenhorn.config import hooks
from greenhorn.http import errors
from greenhorn.http.parser import NEED_DATA, Data, EndOfMessage, Request
from greenhorn.http.response import (
    CONTINUE,
    LAST_CHUNK,
    Framing,
    InvalidResponse,
    informational,
    prepare_bytes,
    reason_phrase,
)
from greenhorn.http.uwsgi import UwsgiRequest
from greenhorn.ipc.scoreboard import REJECTED
from greenhorn.workers.asgi.shared import BODY_HIGH, Host, hook_request
from greenhorn.wsgi.environ import ConflictingSchemeHeaders, build_environ, build_uwsgi_environ
from greenhorn.wsgi.response import SERVER

__all__ = ["RequestCycle"]

_monotonic = time.monotonic
_DISCONNECT = "http.disconnect"


class RequestCycle:
    """One request: its ``receive``/``send``, the response's state, and its accounting.
    Hooks and the access log read it as the response (``status``, ``status_code``,
    ``headers``, ``sent``)."""

    __slots__ = (
        "body_open",
        "chunks",
        "complete",
        "conn",
        "eof",
        "expect_continue",
        "final_given",
        "framing",
        "gone",
        "head_sent",
        "headers",
        "hook_req",  # set only when a request hook is configured
        "keep_alive",
        "paused_at",
        "rate_started",
        "received",
        "req",
        "sent",
        "start_headers",
        "started",
        "status_code",
        "task",
        "waiter",
    )

    def __init__(self, conn: Host, req: Request) -> None:
        self.conn = conn
        self.req = req
        shared = conn.shared
        worker = shared.worker
        self.keep_alive = (
            req.keep_alive
            and shared.keepalive > 0
            and worker.alive
            and not shared.stopping
            and worker.nr + 1 < worker.max_requests
        )
        self.body_open = False  # more request body to come from the client
        self.chunks: list[bytes] = []  # request body received, not yet given to the app
        self.received = 0
        self.rate_started = req.started_at
        self.paused_at = 0.0
        self.final_given = False  # the last http.request message was given
        self.expect_continue = req.expect_continue
        self.started = False  # http.response.start was sent by the application
        self.head_sent = False
        self.complete = False  # the response's last byte was written
        self.gone = False  # the client disconnected
        self.eof = False  # the client closed its side (maybe only half: it may still read)
        self.start_headers: Any = ()
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.framing: Framing | None = None
        self.sent = 0
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        """The status line's text, as WSGI's ``Response.status`` (for hooks)."""
        return f"{self.status_code} {reason_phrase(self.status_code)}"

    # -- the request body -----------------------------------------------------------------

    def pull_body(self) -> None:
        """Move body events from the parser to the queue (transport side)."""
        conn = self.conn
        parser = conn.parser
        chunks = self.chunks
        try:
            while True:
                event = parser.next_event()
                if event.__class__ is Data:
                    data = event.data
                    chunks.append(data)
                    self.received += len(data)
                    continue
                if event is NEED_DATA:
                    break
                if event.__class__ is EndOfMessage:
                    self.body_open = False
                    break
                raise errors.IncompleteRequest("unexpected event in the body")
        except errors.HTTPError as exc:
            self.body_failed(exc)
            return
        if self.body_open:
            if sum(map(len, chunks)) >= BODY_HIGH:
                conn.pause_reading()
                self.paused_at = _monotonic()
                conn.deadline = None
            elif not conn.write_paused:
                conn.deadline = self.body_deadline()
        elif not conn.write_paused:
            conn.deadline = None
        self._wake()

    def body_deadline(self) -> float | None:
        """When the body must have advanced by the next byte (the ``body_min_rate`` floor,
        after a grace of ``header_timeout``); None when not waiting for the client."""
        shared = self.conn.shared
        if not self.body_open or not shared.min_rate or not self.conn.reading:
            return None
        grace = shared.header_timeout or 0.0
        return self.rate_started + grace + (self.received + 1) / shared.min_rate

    def body_failed(self, exc: errors.HTTPError) -> None:
        """The body is malformed or too slow: answer its status if nothing was sent yet,
        close, and tell the application the client is gone."""
        conn = self.conn
        shared = conn.shared
        shared.log.warning("Invalid request from ip=%s: %s", conn.remote_addr, exc)
        self.body_open = False
        self.chunks.clear()
        if not self.head_sent and not conn.closed:
            shared.board.counters[REJECTED] += 1
            self.status_code = exc.code
            self.head_sent = self.started = True
            conn.write_error(exc.code, exc.reason, str(exc))
        self.complete = True
        self.gone = True
        conn.close(linger=True)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def disconnected(self) -> None:
        """The client went away (transport side)."""
        self.gone = True
        self.body_open = False
        self._wake()
        task = self.task
        if task is None or task.done() or self.complete:
            return
        grace = self.conn.shared.grace
        if grace > 0:
            self.conn.shared.loop.call_later(grace, self._cancel)
        else:
            task.cancel()

    def peer_eof(self) -> None:
        """The client closed its sending side after the request. It may be gone or only
        half-closed: the application is told ``http.disconnect`` (as uvicorn does) but its
        response is still sent, for a client that waits for it."""
        self.eof = True
        self._wake()

    def _cancel(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: ``http.request`` messages with the body as it arrives, then
        ``http.disconnect`` once the response is complete or the client is gone."""
        while True:
            chunks = self.chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                conn = self.conn
                if not conn.reading and conn.cycle is self and not conn.closed:
                    if self.paused_at:  # the client was not slow while we did not read
                        self.rate_started += _monotonic() - self.paused_at
                        self.paused_at = 0.0
                    conn.resume_reading()
                    if not conn.write_paused:
                        conn.deadline = self.body_deadline()
                more = self.body_open
                if not more:
                    self.final_given = True
                return {"type": "http.request", "body": data, "more_body": more}
            if not self.body_open and not self.final_given and not self.gone:
                self.final_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.gone or self.complete or self.eof:
                return {"type": _DISCONNECT}
            if self.body_open and self.expect_continue:
                self.expect_continue = False
                if not self.started and not self.conn.parser.buffered:
                    self.conn.transport.write(CONTINUE)
            waiter = self.waiter
            if waiter is None:
                waiter = self.waiter = self.conn.shared.loop.create_future()
            await waiter

    # -- the response -----------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """ASGI ``send``: ``http.response.start``, ``http.response.body`` (streamed, with
        flow control), ``http.response.informational`` (103 Early Hints...)."""
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.complete:
                if self.gone:
                    return
                raise RuntimeError("http.response.body after the response was complete")
            body = message.get("body", b"")
            if body.__class__ is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    raise TypeError(f"http.response.body body must be bytes, not {type(body)}")
                body = bytes(body)
            more = bool(message.get("more_body", False))
            conn = self.conn
            if self.gone:  # the client went away: the application may still finish
                if not more:
                    self.complete = True
                return
            if not self.head_sent:
                self._send_head(body, more)  # with the last chunk when the body is whole
                if not more:
                    self._finish(False)
            else:
                if body:
                    self._send_body(body)
                if not more:
                    self._finish(True)
            if conn.write_paused:
                await conn.drain()
            return
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int:
                raise InvalidResponse(f"invalid status {status!r}")
            self.status_code = status
            self.start_headers = message.get("headers", ())
            self.started = True
            return
        if kind == "http.response.informational":
            if self.started:
                raise RuntimeError("http.response.informational after http.response.start")
            head = informational(message.get("status", 0), message.get("headers", ()))
            if self.req.version >= (1, 1) and not self.gone:
                self.conn.transport.write(head)
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r} for an http scope")

    def _send_head(self, body: bytes, more: bool) -> None:
        req = self.req
        known = None if more or req.method == "HEAD" else len(body)
        head, framing, self.headers = prepare_bytes(
            self.status_code,
            self.start_headers,
            req.version,
            req.method,
            self.keep_alive,
            SERVER,
            known,
        )
        self.head_sent = True
        self.framing = framing
        self.keep_alive = framing.keep_alive
        if not framing.body_allowed:
            self.conn.transport.write(head)
            return
        length = framing.length
        if length is not None and len(body) > length:
            body = body[:length]
            self.keep_alive = False
        self.sent = len(body)
        if framing.chunked:
            if body:
                head += b"%x\r\n%b\r\n" % (len(body), body)
            if not more:
                head += LAST_CHUNK
            self.conn.transport.write(head)
        elif len(body) < 65536:
            self.conn.transport.write(head + body)
        else:
            self.conn.transport.writelines((head, body))

    def _send_body(self, body: bytes) -> None:
        framing = self.framing
        assert framing is not None
        if not framing.body_allowed:
            return
        length = framing.length
        if length is not None:
            room = length - self.sent
            if room <= 0:
                self.keep_alive = False
                return
            if len(body) > room:
                body = body[:room]
                self.keep_alive = False
        self.sent += len(body)
        transport = self.conn.transport
        if not framing.chunked:
            transport.write(body)
        elif len(body) < 65536:
            transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))

    def _finish(self, last_chunk: bool) -> None:
        framing = self.framing
        assert framing is not None
        if framing.body_allowed:
            if framing.chunked:
                if last_chunk:
                    self.conn.transport.write(LAST_CHUNK)
            elif framing.length is not None and self.sent < framing.length:
                self.keep_alive = False  # the client would wait for bytes that never come
        self.complete = True
        if self.waiter is not None:
            self._wake()
        self.conn.response_complete(self)

    # -- the application ------------------------------------------------------------------

    async def run(self) -> None:
        """Call the application for this request, answer what it failed to, account."""
        conn = self.conn
        shared = conn.shared
        req = self.req
        try:
            scope = self.scope()
            if shared.pre_request:
                self.hook_req = hook_request(conn, req)
                if not hooks.call_request_hook(
                    shared.cfg, "pre_request", shared.worker, self.hook_req, log=shared.log
                ):
                    self._error(500, "Internal Server Error")
                    return
            await shared.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            shared.log.debug("Request %s %s cancelled: the client went away", req.method, req.uri)
        except BaseException as exc:  # SystemExit too: a request cannot end the worker
            self._failed(exc)
        else:
            if not self.complete and not self.gone:
                if not self.started:
                    shared.log.error(
                        "ASGI application returned without a response for %s %s",
                        req.method,
                        req.uri,
                    )
                    self._error(500, "Internal Server Error")
                else:
                    shared.log.error(
                        "ASGI application returned without completing the response for %s %s",
                        req.method,
                        req.uri,
                    )
                    if self.head_sent:
                        self.cut()
                    else:
                        self._error(500, "Internal Server Error")
        finally:
            self._account()

    def scope(self) -> dict[str, Any]:
        """The application's ``http`` scope for this request."""
        conn = self.conn
        shared = conn.shared
        req = self.req
        if shared.uwsgi and isinstance(req, UwsgiRequest):
            return uwsgi_scope(conn.template, req, shared.state, conn.scheme_for(req))
        return http_scope(conn.template, req, shared.state, conn.scheme_for(req))

    def cut(self) -> None:
        """End a response that cannot be completed (an error after its head): the client
        must not take it for a whole one. HTTP/1.1: drop the connection."""
        self.conn.abort()

    def _failed(self, exc: BaseException) -> None:
        conn = self.conn
        log = conn.shared.log
        req = self.req
        if self.complete and not self.gone:
            log.exception(
                "Error in ASGI application after its response to %s %s", req.method, req.uri
            )
            return
        if isinstance(exc, errors.HTTPError):  # conflicting scheme headers, a bad body...
            log.warning("Invalid request from ip=%s: %s", conn.remote_addr, exc)
            if not self.head_sent:
                self._error(exc.code, exc.reason, str(exc))
            return
        if isinstance(exc, ConflictingSchemeHeaders):
            log.warning("Invalid request from ip=%s: conflicting scheme headers", conn.remote_addr)
            self._error(400, "Bad Request", "conflicting scheme headers")
            return
        if isinstance(exc, InvalidResponse):
            log.error("Error handling request %s %s: %s", req.method, req.uri, exc)
        else:
            log.exception("Error handling request %s %s", req.method, req.uri)
        if self.gone:
            return
        if self.head_sent:
            self.cut()  # a truncated response rather than a wrong one
        else:
            self._error(500, "Internal Server Error")

    def _error(self, code: int, reason: str, message: str = "") -> None:
        conn = self.conn
        self.status_code = code
        self.keep_alive = False
        self.started = self.head_sent = True
        if conn.closed or self.gone:
            self.complete = True
            return
        conn.write_error(code, reason, message)
        self.complete = True
        if conn.cycle is self:
            conn.close(linger=self.body_open)

    def _account(self) -> None:
        conn = self.conn
        shared = conn.shared
        req = self.req
        task = self.task
        if task is not None:
            shared.cycles.pop(task, None)
        duration = _monotonic() - req.started_at
        status = self.status_code or 500
        shared.board.count(status, duration, self.sent)
        if shared.post_request or shared.access_enabled:
            if shared.uwsgi and isinstance(req, UwsgiRequest):
                environ = build_uwsgi_environ(shared.base_environ, req, conn, shared.no_body)
            else:
                environ = build_environ(shared.base_environ, req, conn, shared.no_body)
            if shared.post_request:
                view = getattr(self, "hook_req", None) or hook_request(conn, req)
                hooks.call_request_hook(
                    shared.cfg, "post_request", shared.worker, view, environ, self, log=shared.log
                )
            if shared.access_enabled:
                try:
                    shared.log.access(req, self, environ, duration)
                except BaseException:
                    shared.log.exception("Error writing the access log")
        worker = shared.worker  # worker.count_request(), inlined (every request's path)
        worker.nr += 1
        if worker.nr >= worker.max_requests:
            worker.max_requests_reached()
        if not self.complete and conn.cycle is self and not conn.closed:
            conn.close()
