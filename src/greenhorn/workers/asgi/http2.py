"""HTTP/2 on the asgi worker: one connection's streams, each an ASGI request run as a task.

Why a module of its own: what a frame means is decided by the sans-IO
``http.http2.session.Session``, the same one the thread and greenlet workers drive
(``workers/http2/connection.py``); what is here is how an event loop waits for it. An
``HttpConnection`` hands its bytes to an ``H2Link`` once it speaks HTTP/2 (the client
picked ``h2`` by ALPN, or a peer in ``forwarded_allow_ips`` opened with the h2c preface
under ``http2_cleartext``). Each stream is an ``H2Cycle``: the HTTP/1.1 ``RequestCycle``
with HTTP/2's ``receive`` and ``send``, so the scope, the hooks, the scoreboard, the error
answers and the access log (``HTTP/2.0``) are the same code. The response's rules (status
and header validation, HEAD/204/304, Content-Length, trailers) are WSGI's
``wsgi.h2response.H2Response``, written through the cycle.

Flow control, both ways:

- **Request bodies**: ``receive()`` takes what the session holds for the stream, and the
  session credits the stream's window only as it is taken: an application that reads
  slowly stops its client instead of growing the worker's memory. A body that does not
  advance for ``stall`` seconds (half of ``timeout``) resets the stream (CANCEL) and the
  application gets ``http.disconnect``.
- **Responses**: ``send()`` frames as much as the client's windows allow and then waits
  for WINDOW_UPDATE, at most ``stall`` seconds without progress: a stream the client never
  opens its window for is reset (CANCEL) and the application's later messages are
  dropped, as after a disconnect, so it never holds its task for ever. At most one
  message's bytes wait per stream; the transport's buffer is waited out as for HTTP/1.1
  (the sweep drops a connection whose client stops reading for ``timeout``).

Trailers: ``http.response.start`` with ``trailers: True``, then ``http.response.trailers``
(``more_trailers`` to send them in parts), as the ASGI extension says; an application that
announced trailers and sends none ends the stream with an empty DATA frame. 103 Early
Hints: ``http.response.informational``.

Ending: the worker's stop (TERM, HUP, ``max_requests``) says GOAWAY through
``HttpConnection.stop``: the streams in flight finish, later ones are refused, and the
connection closes once none is left (``graceful_timeout`` bounds it, as every request).
Floods and protocol errors end it at once with the session's GOAWAY (``guard``). A
connection without streams says GOAWAY and closes after ``keepalive`` seconds
(``header_timeout`` before its first stream).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import TYPE_CHECKING, Any

from greenhorn.asgi.scope import HTTP2_EXTENSIONS, http_scope
from greenhorn.http import errors
from greenhorn.http.http2.response import Fields, informational
from greenhorn.http.http2.session import CANCEL, Session, Stream, StreamGone
from greenhorn.http.response import InvalidResponse, reason_phrase
from greenhorn.ipc.scoreboard import REJECTED
from greenhorn.workers.asgi.cycle import RequestCycle
from greenhorn.wsgi.environ import settle_forwarded
from greenhorn.wsgi.h2response import H2Response

if TYPE_CHECKING:
    from greenhorn.asgi.app import Message
    from greenhorn.workers.asgi.shared import Host
    from greenhorn.workers.http2 import Policy
    from greenhorn.wsgi.h2response import StreamSender

__all__ = ["H2Cycle", "H2Link"]

_monotonic = time.monotonic
_LARGE = 16384  # body bytes past which a pending remainder is a view, not a copy
_Pending = tuple[bytes | memoryview, bool] | Fields  # DATA (bytes, end) or trailer fields


class H2Link:
    """One HTTP/2 connection of the asgi worker. See the module docstring."""

    __slots__ = (
        "closing",
        "conn",
        "cycles",
        "idle_since",
        "policy",
        "session",
        "template",
        "trusted",
    )

    def __init__(self, conn: Host, policy: Policy) -> None:
        self.conn = conn
        self.policy = policy
        self.session = Session(policy.config)
        self.cycles: set[H2Cycle] = set()  # streams whose application runs
        self.idle_since = _monotonic()
        template = dict(conn.template)
        template["http_version"] = "2"
        template["extensions"] = HTTP2_EXTENSIONS
        self.template = template
        self.trusted: bool | None = None  # the peer is in forwarded_allow_ips
        self.closing = False  # the connection is closing: nothing more is written

    # -- the connection's side ----------------------------------------------------------------

    def start(self, initial: bytes, upgraded: Stream | None = None) -> None:
        """Send the server's preface and take ``initial`` (bytes already read); after an
        ``Upgrade: h2c`` (its preface queued already), serve its request as ``upgraded``."""
        if upgraded is None:
            self.session.initiate()
        if self.conn.shared.stopping:
            self.session.goaway()
        if upgraded is not None:
            self._spawn(upgraded)
        if initial:
            self.data_received(initial)
        else:
            self.flush()
            self.settle()

    def data_received(self, data: bytes) -> None:
        session = self.session
        opened = session.receive(data, _monotonic())
        self.flush()
        for stream in opened:
            self._spawn(stream)
        if session.closed and session.reason:
            self.conn.shared.log.debug(
                "HTTP/2 connection from %s closing: %s", self.conn.remote_addr, session.reason
            )
        self.settle()

    def eof(self) -> None:
        """The client closed its side: the session is over, every stream is woken."""
        self.session.receive(b"", _monotonic())
        self.settle()

    def connection_lost(self) -> None:
        self.closing = True
        self.session.abort(0x2, "the connection was lost")  # wakes every stream
        for cycle in list(self.cycles):
            if not cycle.gone:
                cycle.disconnected()

    def flush(self) -> None:
        """Write what the session has queued."""
        data = self.session.output()
        if data and not self.closing:
            self.conn.transport.write(data)

    def settle(self) -> None:
        """Close the connection once the session is over (a flood, an error) or done with
        every stream (after a GOAWAY); else keep its idle deadline."""
        conn = self.conn
        if self.closing:
            return
        session = self.session
        if session.closed or (session.done and not self.cycles):
            self.closing = True
            conn.close(linger=True, seconds=1.0)  # the client reads our GOAWAY first
            return
        if conn.write_paused:
            return  # the deadline is the client's to read (see HttpConnection.pause_writing)
        if self.cycles or session.streams:
            conn.deadline = None
            return
        policy = self.policy
        limit = policy.idle if conn.requests else policy.first
        conn.deadline = self.idle_since + limit if limit else None

    def expire(self) -> None:
        """Idle past ``keepalive`` (``header_timeout`` before the first stream): GOAWAY."""
        if not self.cycles and not self.session.streams:
            self.goaway()

    def goaway(self) -> None:
        """A graceful GOAWAY (idempotent): streams in flight finish, new ones are refused."""
        self.session.goaway()
        self.flush()
        self.settle()

    # -- streams ------------------------------------------------------------------------------

    def _spawn(self, stream: Stream) -> None:
        conn = self.conn
        shared = conn.shared
        conn.requests += 1
        cycle = H2Cycle(conn, self, stream)
        stream.wake = cycle.woken
        self.cycles.add(cycle)
        task = shared.loop.create_task(cycle.run())
        cycle.task = task
        shared.cycles[task] = cycle

    def finished(self, cycle: H2Cycle) -> None:
        """``cycle``'s application returned: forget its stream."""
        self.cycles.discard(cycle)
        if self.closing:
            return
        self.session.finish(cycle.stream)
        if not self.cycles:
            self.idle_since = _monotonic()
        self.flush()
        self.settle()

    def trusts_peer(self) -> bool:
        """Whether the peer is in ``forwarded_allow_ips`` (asked once per connection)."""
        trusted = self.trusted
        if trusted is None:
            conn = self.conn
            trusted = self.trusted = conn.shared.trust.trusts(conn.peer)
        return trusted


class H2Cycle(RequestCycle):
    """One stream: ``RequestCycle`` with HTTP/2's ``receive`` and ``send``; also the
    ``StreamSender`` its ``H2Response`` writes through."""

    __slots__ = ("body_done", "link", "pending", "resp", "stream", "trailer_list", "waiters")

    def __init__(self, conn: Host, link: H2Link, stream: Stream) -> None:
        req = stream.req
        req.accepted_at = req.started_at = _monotonic()
        super().__init__(conn, req)
        self.keep_alive = False  # (HTTP/1.1's: the link decides when the connection ends)
        self.expect_continue = req.expect_continue and not stream.ended
        self.link = link
        self.stream = stream
        self.resp = H2Response(self, req.method)
        self.pending: collections.deque[_Pending] = collections.deque()
        self.body_done = False  # the application's last body message came
        self.trailer_list: list[tuple[str, str]] | None = None  # announced, not all sent
        self.waiters: list[asyncio.Future[None]] = []

    # -- waking -------------------------------------------------------------------------------

    def woken(self) -> None:
        """The session's call: body data, the body's end, a window update, or a reset."""
        if self.stream.reset is not None and not self.gone:
            self.disconnected()  # gone; the application is cancelled after the grace period
        else:
            self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait(self, timeout: float | None) -> bool:
        """Until woken (True) or ``timeout`` seconds pass (False). A waiter each: the
        application may wait in ``receive`` and ``send`` at once."""
        fut: asyncio.Future[None] = self.conn.shared.loop.create_future()
        self.waiters.append(fut)
        try:
            if timeout is None:
                await fut
            else:
                await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        finally:
            if not fut.done() or fut.cancelled():
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
        return True

    # -- the application's side -----------------------------------------------------------------

    def scope(self) -> dict[str, Any]:
        stream = self.stream
        if stream.body_error is not None:  # refused with a status (431, 413...): no app call
            raise stream.body_error
        req = self.req
        conn = self.conn
        link = self.link
        shared = conn.shared
        if req.forwarded is not None:
            settle_forwarded(req, link.trusts_peer(), shared.header_map)
        scheme = conn.scheme_for(req)
        if scheme is None and stream.scheme in ("http", "https") and link.trusts_peer():
            scheme = stream.scheme  # a trusted proxy's :scheme
        return http_scope(link.template, req, shared.state, scheme)

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the body as it arrives (crediting the client's window), then
        ``http.disconnect`` once the response is complete or the stream is gone."""
        stream = self.stream
        link = self.link
        session = link.session
        while True:
            if self.gone or (self.final_given and self.complete):
                return {"type": "http.disconnect"}
            if not self.final_given:
                try:
                    data = session.read(stream)
                except StreamGone:
                    self.gone = True
                    continue
                except errors.HTTPError as exc:  # over limit_request_body, a bad length
                    self._refused(exc)
                    continue
                link.flush()  # the window credit the read gave back
                if data is not None:
                    more = bool(data) and not (stream.ended and not stream.buffered)
                    if not more:
                        self.final_given = True
                    return {"type": "http.request", "body": data, "more_body": more}
                if self.expect_continue:  # the client waits for 100 Continue to send it
                    self.expect_continue = False
                    if not self.resp.head_sent:
                        session.send_informational(stream, [(b":status", b"100")])
                        link.flush()
                    continue
                if not await self._wait(link.policy.stall):
                    conn = self.conn
                    conn.shared.log.debug(
                        "HTTP/2 stream %d: no request body from %s for %.0fs",
                        stream.sid,
                        conn.remote_addr,
                        link.policy.stall,
                    )
                    self.reset(CANCEL)
                continue
            await self._wait(None)  # until the response is complete or the stream gone

    def _refused(self, exc: errors.HTTPError) -> None:
        shared = self.conn.shared
        shared.log.warning("Invalid request from ip=%s: %s", self.conn.remote_addr, exc)
        shared.board.counters[REJECTED] += 1
        if not self.head_sent:
            self._error(exc.code, exc.reason, str(exc))
        self.gone = True

    async def send(self, message: Message) -> None:
        """ASGI ``send``: the response (streamed with flow control), trailers, 103."""
        if self.gone:  # reset, stalled or disconnected: the application may still finish
            return
        resp = self.resp
        kind = message["type"]
        try:
            if kind == "http.response.body":
                if not self.started:
                    raise RuntimeError("http.response.body before http.response.start")
                if self.body_done:
                    raise RuntimeError("http.response.body after the response was complete")
                body = message.get("body", b"")
                if body.__class__ is not bytes:
                    if not isinstance(body, (bytearray, memoryview)):
                        raise TypeError(f"http.response.body body must be bytes, not {type(body)}")
                    body = bytes(body)
                more = bool(message.get("more_body", False))
                if not resp.head_sent:
                    known = None if more or self.req.method == "HEAD" else len(body)
                    resp.send_head(body, known, not more and self.trailer_list is None)
                elif body:
                    resp.write(body)
                if not more:
                    self.body_done = self.complete = True
                    if self.trailer_list is None:
                        resp.finish()
                self._sync()
                await self._drain()
                if self.complete:
                    self._wake()  # a receive() waiting for the end says http.disconnect
                return
            if kind == "http.response.start":
                if self.started:
                    raise RuntimeError("http.response.start sent twice")
                status = message["status"]
                if type(status) is not int or not 100 <= status <= 999:
                    raise InvalidResponse(f"invalid status {status!r}")
                resp.start_response(
                    f"{status} {reason_phrase(status)}", _text_pairs(message.get("headers", ()))
                )
                self.status_code = status
                self.started = True
                if message.get("trailers", False):
                    self.trailer_list = []
                    resp.awaiting_trailers = True
                return
            if kind == "http.response.trailers":
                trailers = self.trailer_list
                if trailers is None:
                    raise RuntimeError("http.response.trailers not announced in the start")
                if not self.body_done:
                    raise RuntimeError("http.response.trailers before the body's end")
                trailers += _text_pairs(message.get("headers", ()))
                if message.get("more_trailers", False):
                    return
                self.trailer_list = None
                resp.awaiting_trailers = False
                resp.set_trailers(trailers)
                resp.finish()
                await self._drain()
                return
            if kind == "http.response.informational":
                if self.started:
                    raise RuntimeError("http.response.informational after http.response.start")
                self.informational(
                    informational(message.get("status", 0), message.get("headers", ()))
                )
                return
            raise RuntimeError(f"unexpected ASGI message {kind!r} for an http scope")
        except StreamGone as exc:
            self.gone = True
            self.conn.shared.log.debug("HTTP/2 client %s: %s", self.conn.remote_addr, exc)

    def _sync(self) -> None:
        """What hooks and the access log read, from the response."""
        resp = self.resp
        self.head_sent = resp.head_sent
        self.headers = resp.headers
        self.sent = resp.sent
        if resp.status_code:
            self.status_code = resp.status_code

    async def _drain(self) -> None:
        """Wait until what ``send`` framed is out: the client's window (at most ``stall``
        seconds without progress, then the stream is reset) and the transport's buffer."""
        pending = self.pending
        stall = self.link.policy.stall
        while pending:
            if self.stream.gone or self.link.session.closed:
                raise StreamGone(f"stream {self.stream.sid} is gone")
            if not await self._wait(stall) and pending:
                conn = self.conn
                conn.shared.log.debug(
                    "HTTP/2 stream %d stalled: no window from %s for %.0fs",
                    self.stream.sid,
                    conn.remote_addr,
                    stall,
                )
                self.reset(CANCEL)
                raise StreamGone(f"stream {self.stream.sid} stalled: no flow-control window")
            self._push()
        conn = self.conn
        if conn.write_paused:
            await conn.drain()

    # -- what H2Response writes through (StreamSender) ------------------------------------

    def head(self, fields: Fields, body: bytes, end: bool) -> None:
        self.link.session.send_headers(self.stream, fields, end and not body)
        if body:
            self._queue(body, end)
        else:
            self.link.flush()

    def body(self, data: bytes, end: bool) -> None:
        if data or end:
            self._queue(data, end)

    def trailers(self, fields: Fields) -> None:
        self.pending.append(fields)
        self._push()

    def informational(self, fields: Fields) -> None:
        self.link.session.send_informational(self.stream, fields)
        self.link.flush()

    def reset(self, code: int) -> None:
        self.pending.clear()
        self.link.session.reset(self.stream, code)
        self.link.flush()

    def _queue(self, data: bytes, end: bool) -> None:
        self.pending.append((memoryview(data) if len(data) > _LARGE else data, end))
        self._push()

    def _push(self) -> None:
        """Frame what the windows allow, in order."""
        pending = self.pending
        session = self.link.session
        stream = self.stream
        while pending:
            item = pending[0]
            if isinstance(item, list):
                session.send_trailers(stream, item)
                pending.popleft()
                continue
            data, end = item
            sent = session.send_data(stream, data, end)
            if sent < len(data):
                if sent:
                    pending[0] = (data[sent:], end)
                break
            pending.popleft()
        self.link.flush()

    # -- ending -------------------------------------------------------------------------------

    def cut(self) -> None:
        with contextlib.suppress(StreamGone):
            self.resp.cut()

    def _error(self, code: int, reason: str, message: str = "") -> None:
        self.status_code = code
        self.started = self.head_sent = self.complete = True
        if self.gone:
            return
        with contextlib.suppress(StreamGone):
            self.resp.error(code, reason, message)
        self._sync()

    def _account(self) -> None:
        resp = self.resp
        if self.body_done and not resp.ended and not self.gone:  # trailers never came
            resp.awaiting_trailers = False
            with contextlib.suppress(StreamGone):
                resp.finish()
        try:
            super()._account()
        finally:
            self.link.finished(self)


def _text_pairs(headers: object) -> list[tuple[str, str]]:
    """ASGI's ``(bytes, bytes)`` header pairs as text (latin-1); validated by the caller."""
    out: list[tuple[str, str]] = []
    try:
        for name, value in headers:  # type: ignore[attr-defined]
            if name.__class__ is not str:
                name = bytes(name).decode("latin-1")
            if value.__class__ is not str:
                value = bytes(value).decode("latin-1")
            out.append((name, value))
    except (TypeError, ValueError) as exc:
        raise InvalidResponse(f"invalid headers {headers!r}: {exc}") from None
    return out


if TYPE_CHECKING:  # H2Response writes through a cycle

    def _a_cycle_sends(cycle: H2Cycle) -> StreamSender:
        return cycle
