"""One WebSocket of the asgi worker: the upgrade request handed to the application as a
``websocket`` scope, its messages both ways, and the closing handshake.

Why a module of its own: after the 101 answer the connection speaks frames, not HTTP; the
frames themselves are the sans-IO ``http/websocket`` package's (reader, writer,
handshake, permessage-deflate), and this session only moves its events between the
transport and the application, with the connection's flow control.

The rules:

- **Handshake.** A bad upgrade request is answered 400 (426 for a version other than 13)
  before the application sees it. ``websocket.accept`` sends the 101 with the application's
  subprotocol (one the client offered) and extra headers (validated like any response
  header), and permessage-deflate when the client offered it.
- **Denial.** ``websocket.close`` before accepting answers ``403 Forbidden``; with the
  ``websocket.http.response`` extension the application sends a response of its own
  instead (``websocket.http.response.start`` and ``.body``). An application that returns
  or raises before accepting gets a 500.
- **Messages.** Text and binary messages arrive whole (fragments joined, UTF-8 checked, at
  most ``websocket_max_message_size`` bytes); pings are answered with pongs here. A frame
  that breaks the protocol closes with 1002 (1007 for bad UTF-8, 1009 for a message too
  big) and the application gets ``websocket.disconnect`` with that code.
- **Closing.** The peer's close frame is answered with the same code, then the connection
  closes; ``websocket.close`` from the application sends its code and waits (at most
  ``CLOSE_TIMEOUT``) for the peer's answer. When the worker stops, open WebSockets are
  closed at once with 1001 (going away) and the application is told.
- **Back-pressure.** Past ``QUEUE_HIGH`` messages waiting for the application, reading
  pauses; ``send`` waits while the transport's buffer is full.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from greenhorn.asgi.app import Message
from greenhorn.asgi.scope import template, websocket_scope
from greenhorn.config import hooks
from greenhorn.http.parser import Request
from greenhorn.http.response import LAST_CHUNK, InvalidResponse, chunk, prepare_bytes
from greenhorn.http.websocket import (
    BytesMessage,
    Close,
    DeflateOptions,
    FrameReader,
    FrameWriter,
    Handshake,
    HandshakeError,
    Ping,
    TextMessage,
    UnsupportedWebSocketVersion,
    WebSocketError,
    accept_response,
    handshake,
    negotiate_deflate,
    rejection_response,
)
from greenhorn.ipc.scoreboard import REJECTED, WS_TOTAL
from greenhorn.workers.asgi.shared import Host, hook_request
from greenhorn.wsgi.environ import build_environ
from greenhorn.wsgi.response import SERVER

__all__ = ["ClientDisconnected", "WebSocketSession", "upgrade"]

QUEUE_HIGH = 32  # messages waiting for the application before reading pauses
CLOSE_TIMEOUT = 5.0  # seconds to wait for the peer's answer to our close frame
_monotonic = time.monotonic

# session states
CONNECTING, RESPONDING, OPEN, CLOSING, CLOSED = range(5)


class ClientDisconnected(OSError):
    """``send`` on a WebSocket that is closed (ASGI asks for an ``OSError`` subclass)."""


def upgrade(conn: Host, req: Request) -> WebSocketSession:
    """Take over ``conn`` for the WebSocket ``req`` asks for (validated here)."""
    session = WebSocketSession(conn, req)
    session.start()
    return session


class WebSocketSession:
    """One WebSocket connection: see the module docstring. The access log reads it as the
    response (``status_code``, ``sent``, ``headers``) when it ends."""

    def __init__(self, conn: Host, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.state = CONNECTING
        self.hs: Handshake | None = None
        self.reader: FrameReader | None = None
        self.writer = FrameWriter()
        self.queue: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.close_code: int | None = None  # given to the application in its disconnect
        self.reason = ""
        self.status_code = 101
        self.headers: list[tuple[str, str]] = []
        self.sent = 0
        self.response_more = False  # a websocket.http.response body is under way
        self.response_chunked = False  # ... framed in chunks (no Content-Length given)
        self.counted = False

    # -- opening ----------------------------------------------------------------------------

    def start(self) -> None:
        conn = self.conn
        shared = conn.shared
        try:
            self.hs = hs = handshake(self.req)
        except (HandshakeError, UnsupportedWebSocketVersion) as exc:
            shared.log.warning("Invalid request from ip=%s: %s", conn.remote_addr, exc)
            shared.board.counters[REJECTED] += 1
            conn.transport.write(rejection_response(exc, SERVER))
            self.state = CLOSED
            conn.close(linger=True)
            return
        secure = conn.template["scheme"] == "https"
        base = template("websocket", conn.template["server"], conn.template["client"], secure, "")
        base["root_path"] = conn.template["root_path"]
        scheme = conn.scheme_for(self.req)
        if scheme is not None:
            scheme = "wss" if scheme == "https" else "ws"
        scope = websocket_scope(base, self.req, hs.subprotocols, shared.state, scheme)
        self.queue.append({"type": "websocket.connect"})
        shared.websockets.add(self)
        task = shared.loop.create_task(self.run(scope))
        self.task = task
        shared.cycles[task] = self

    async def run(self, scope: dict[str, Any]) -> None:
        conn = self.conn
        shared = conn.shared
        req = self.req
        try:
            if shared.pre_request:
                self.hook_req = hook_request(conn, req)
                if not hooks.call_request_hook(
                    shared.cfg, "pre_request", shared.worker, self.hook_req, log=shared.log
                ):
                    self._deny(500, "Internal Server Error")
                    return
            await shared.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            shared.log.debug("WebSocket %s cancelled", req.uri)
        except ClientDisconnected:
            shared.log.debug("WebSocket %s: the application sent after the close", req.uri)
        except BaseException as exc:  # SystemExit too: a connection cannot end the worker
            if isinstance(exc, InvalidResponse):
                shared.log.error("Error handling WebSocket %s: %s", req.uri, exc)
            else:
                shared.log.exception("Error handling WebSocket %s", req.uri)
            self._app_failed()
        else:
            if self.state == CONNECTING:
                shared.log.error(
                    "ASGI application returned without accepting WebSocket %s", req.uri
                )
                self._deny(500, "Internal Server Error")
            elif self.state == RESPONDING:
                conn.abort()  # its denial response was cut short
            elif self.state == OPEN:
                self._close(1000)
        finally:
            self._account()

    def _app_failed(self) -> None:
        if self.state == CONNECTING:
            self._deny(500, "Internal Server Error")
        elif self.state == RESPONDING:
            self.conn.abort()
        elif self.state == OPEN:
            self._close(1011)

    def _deny(self, code: int, reason: str) -> None:
        """Refuse the handshake with an HTTP response and close."""
        conn = self.conn
        self.status_code = code
        self.state = CLOSED
        self._gone(None)
        conn.write_error(code, reason, "WebSocket handshake refused")
        conn.close(linger=True)

    # -- the application's side -------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: ``websocket.connect``, ``websocket.receive``...,
        ``websocket.disconnect``."""
        while True:
            queue = self.queue
            if queue:
                message = queue.popleft()
                conn = self.conn
                if not conn.reading and len(queue) < QUEUE_HIGH // 2 and self.state == OPEN:
                    conn.resume_reading()
                return message
            if self.state == CLOSED or self.close_code is not None:
                code = self.close_code or 1006
                return {"type": "websocket.disconnect", "code": code, "reason": self.reason}
            waiter = self.waiter
            if waiter is None:
                waiter = self.waiter = self.conn.shared.loop.create_future()
            await waiter

    async def send(self, message: Message) -> None:
        """ASGI ``send``: accept, send, close, or an HTTP response instead of the handshake."""
        kind = message["type"]
        conn = self.conn
        state = self.state
        if kind == "websocket.send":
            if state != OPEN:
                if state == CONNECTING:
                    raise RuntimeError("websocket.send before websocket.accept")
                raise ClientDisconnected("the WebSocket is closed")
            text = message.get("text")
            if text is not None:
                frame = self.writer.text(text)
            else:
                data = message.get("bytes")
                if data is None:
                    raise TypeError("websocket.send needs bytes or text")
                frame = self.writer.binary(data)
            self.sent += len(frame)
            conn.transport.write(frame)
            if conn.write_paused:
                await conn.drain()
            return
        if kind == "websocket.accept":
            if state != CONNECTING:
                raise RuntimeError(f"websocket.accept in the wrong state ({_STATES[state]})")
            self._accept(message)
            return
        if kind == "websocket.close":
            if state == CONNECTING:
                self._deny(403, "Forbidden")
            elif state == OPEN:
                code = message.get("code")
                self._close(1000 if code is None else int(code), str(message.get("reason") or ""))
            elif state == RESPONDING:
                raise RuntimeError("websocket.close during a websocket.http.response")
            return
        if kind == "websocket.http.response.start":
            if state != CONNECTING:
                raise RuntimeError("websocket.http.response.start after the handshake")
            head, framing, self.headers = prepare_bytes(
                message["status"], message.get("headers", ()), (1, 1), "GET", False, SERVER
            )
            self.status_code = framing.code
            self.state = RESPONDING
            self.response_more = True
            self.response_chunked = framing.chunked
            self._gone(None)
            conn.transport.write(head)
            return
        if kind == "websocket.http.response.body":
            if state != RESPONDING or not self.response_more:
                raise RuntimeError("websocket.http.response.body without a response started")
            body = bytes(message.get("body", b""))
            if body:
                self.sent += len(body)
                conn.transport.write(chunk(body) if self.response_chunked else body)
            if not message.get("more_body", False):
                if self.response_chunked:
                    conn.transport.write(LAST_CHUNK)
                self.response_more = False
                self.state = CLOSED
                conn.close(linger=True)
            elif conn.write_paused:
                await conn.drain()
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r} for a websocket scope")

    def _accept(self, message: Message) -> None:
        conn = self.conn
        shared = conn.shared
        hs = self.hs
        assert hs is not None
        headers = []
        for item in message.get("headers", ()):
            try:
                name, value = item
                headers.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
            except (TypeError, ValueError):
                raise InvalidResponse(f"header {item!r} is not a pair of bytes") from None
        subprotocol = message.get("subprotocol")
        deflate = negotiate_deflate(hs.extensions, DeflateOptions())
        head = accept_response(hs, subprotocol, headers, deflate, SERVER)
        self.headers = headers
        self.reader = FrameReader(shared.max_message_size, deflate)
        self.writer = FrameWriter(deflate)
        self.state = OPEN
        self.counted = True
        shared.board.counters[WS_TOTAL] += 1
        shared.log.increment("gunicorn.websocket.connections")
        conn.transport.write(head)
        rest = conn.parser.take_buffered()  # frames that came with the handshake
        if rest:
            self.data_received(rest)

    def _close(self, code: int, reason: str = "") -> None:
        """Send our close frame and wait (bounded) for the peer's."""
        conn = self.conn
        if self.state != OPEN:
            return
        self.state = CLOSING
        try:
            frame = self.writer.close(code, reason)
        except ValueError:
            frame = self.writer.close(1000)
        conn.transport.write(frame)
        if self.close_code is None:
            self._gone(code)
        conn.deadline = _monotonic() + CLOSE_TIMEOUT
        conn.resume_reading()

    def going_away(self) -> None:
        """The worker stops: close now with 1001 and tell the application."""
        if self.state == OPEN:
            self._close(1001)
        elif self.state == CONNECTING:
            self._gone(1001)

    # -- the transport's side -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None or self.state == CLOSED:
            return  # before the accept (or after): the client must wait for the 101
        reader.feed(data)
        conn = self.conn
        try:
            while (event := reader.next_event()) is not None:
                if event.__class__ is TextMessage:
                    self._deliver({"type": "websocket.receive", "text": event.data})
                elif event.__class__ is BytesMessage:
                    self._deliver({"type": "websocket.receive", "bytes": event.data})
                elif event.__class__ is Ping:
                    if self.state == OPEN:
                        conn.transport.write(self.writer.pong(event.payload))
                elif event.__class__ is Close:
                    self._peer_closed(event)
                    return
        except WebSocketError as exc:
            conn.shared.log.info("WebSocket %s closed: %s", self.req.uri, exc)
            if self.state == OPEN:
                conn.transport.write(self.writer.close(exc.code))
            self.state = CLOSED
            self._gone(exc.code)
            conn.close(linger=True)
            return
        if len(self.queue) >= QUEUE_HIGH:
            conn.pause_reading()

    def _deliver(self, message: dict[str, Any]) -> None:
        if self.state != OPEN:
            return  # after our close frame, data is ignored (RFC 6455 §5.5.1)
        self.queue.append(message)
        self._wake()

    def _peer_closed(self, event: Close) -> None:
        conn = self.conn
        if self.state == OPEN:  # answer with the same code (none for 1005, 1006)
            code = event.code if event.code not in (1005, 1006) else None
            conn.transport.write(self.writer.close(code))
        self.state = CLOSED
        if self.close_code is None:
            self.reason = event.reason
            self._gone(event.code)
        conn.close()

    def expire(self) -> None:
        """Our close frame went unanswered (the connection's deadline)."""
        self.state = CLOSED
        self._gone(1006)
        self.conn.abort()

    def connection_lost(self) -> None:
        self.state = CLOSED
        self._gone(1006)

    def _gone(self, code: int | None) -> None:
        """The WebSocket is over: the application's next ``receive`` says so."""
        shared = self.conn.shared
        shared.websockets.discard(self)
        if code is not None and self.close_code is None:
            self.close_code = code
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _account(self) -> None:
        conn = self.conn
        shared = conn.shared
        req = self.req
        task = self.task
        if task is not None:
            shared.cycles.pop(task, None)
        shared.websockets.discard(self)
        if self.state == OPEN:
            self._close(1000)
        duration = _monotonic() - req.started_at
        shared.board.count(self.status_code, duration, self.sent)
        if shared.post_request or shared.access_enabled:
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
        worker = shared.worker
        worker.nr += 1
        if worker.nr >= worker.max_requests:
            worker.max_requests_reached()


_STATES = {
    CONNECTING: "connecting",
    RESPONDING: "responding",
    OPEN: "open",
    CLOSING: "closing",
    CLOSED: "closed",
}
