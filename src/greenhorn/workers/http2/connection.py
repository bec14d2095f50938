"""One HTTP/2 connection served by threads or greenlets: the socket, the lock, and the waits.

Why it is shaped like this: an HTTP/2 connection carries many requests at once, each served
by its own thread (gthread) or greenlet (gevent, eventlet), while frames keep arriving for
all of them: window updates a response waits for, request bodies, resets. So one *reader*
(a thread of its own under gthread, the connection's greenlet under gevent) owns reading:
it waits for the socket, feeds what arrived to the sans-IO ``http.http2.session.Session``,
and hands each new stream to the worker's ``dispatch``. Stream handlers only call the
methods below. One lock guards the session and every use of the socket; the socket is
non-blocking, so nobody ever holds the lock while waiting: a TLS socket is never read and
written by two threads at once (OpenSSL forbids it), and the reader is never stuck behind
a slow writer.

Waits, each bounded:

- a response waits for the peer's flow-control window (``Stream.wake`` on a WINDOW_UPDATE)
  at most ``stall`` seconds without progress; then the stream is reset (CANCEL) and its
  thread is free: a client that never opens its window holds no thread for ever;
- bytes that do not fit in the socket are waited out (poll for POLLOUT) by the thread that
  queued them, ``stall`` seconds at most, after which the connection is closed: a client
  that stops reading altogether loses its connection, and the output buffer never grows
  past what one response wrote;
- a request body read waits for DATA ``stall`` seconds at most (then 408);
- an idle connection (no stream open) is closed after ``keepalive`` seconds with a GOAWAY
  (``header_timeout`` before its first request).

The connection ends when the session is ``done``: after a GOAWAY (the worker's, on TERM,
HUP or max_requests, or the peer's) once the streams in flight are finished, or at once on
a protocol error, a flood (ENHANCE_YOUR_CALM) or the peer closing.
"""

from __future__ import annotations

import select
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from greenhorn.http import errors
from greenhorn.http.http2.session import CANCEL, Session, Stream, StreamGone

if TYPE_CHECKING:
    import socket

    from greenhorn.http.http2.response import Fields
    from greenhorn.http.http2.session import H2Config
    from greenhorn.http.parser import Request
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.connection import Connection
    from greenhorn.wsgi.trust import ProxyTrust

__all__ = ["H2Connection", "Hub", "StreamIO"]

READ_CAP = 256 * 1024  # bytes read in one go before the session sees them
OUT_HIGH = 1 << 20  # queued output over which the reader stops reading
_WANT = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT | select.POLLERR | select.POLLHUP
_monotonic = time.monotonic


class Hub(Protocol):
    """What a connection needs from its worker's HTTP/2 part (``workers.http2.Http2``)."""

    config: H2Config
    log: Logger
    stall: float  # seconds a stream may wait on the peer
    idle: float | None  # keepalive: an idle connection closes after it
    first: float | None  # header_timeout: before the first request
    stopping: bool

    def dispatch(self, conn: H2Connection, stream: Stream) -> None: ...

    def closed(self, conn: H2Connection) -> None: ...


def _wait(fd: int, events: int, timeout: float | None) -> int:
    """Wait until ``fd`` is ready for ``events`` (poll flags) or ``timeout``; the flags
    that fired (0: timed out). Cooperative under gevent, whose monkey-patching replaces
    ``select.poll``; eventlet removes ``poll``, and gets ``select.select``."""
    poll = getattr(select, "poll", None)
    if poll is not None:
        poller = poll()
        poller.register(fd, events)
        try:
            ready = poller.poll(None if timeout is None else max(timeout, 0.0) * 1000.0)
        except InterruptedError:
            return 0
        return ready[0][1] if ready else 0
    reading = [fd] if events & select.POLLIN else []
    writing = [fd] if events & select.POLLOUT else []
    r, w, _ = select.select(reading, writing, [], None if timeout is None else max(timeout, 0))
    return (select.POLLIN if r else 0) | (select.POLLOUT if w else 0)


class H2Connection:
    """One HTTP/2 connection. ``serve()`` is its reader; streams use ``StreamIO``."""

    def __init__(
        self,
        hub: Hub,
        conn: Connection,
        initial: bytes = b"",
        upgrade: tuple[bytes, Request] | None = None,
    ) -> None:
        self.hub = hub
        self.conn = conn  # addresses for the environ; its socket is ours now
        self.sock: socket.socket = conn.sock
        self.session = Session(hub.config)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.out = bytearray()
        self.closed = False
        self.running = 0  # streams dispatched and not yet finished
        self.idle_since = _monotonic()
        self.requests = 0
        self._initial = initial
        # an HTTP/1.1 ``Upgrade: h2c`` request: stream 1 (ValueError: bad HTTP2-Settings)
        self._upgraded = self.session.upgrade(*upgrade) if upgrade is not None else None
        self._wake = self.cond.notify_all
        self._trusted: bool | None = None

    # -- the reader -------------------------------------------------------------------------

    def serve(self) -> None:
        """Read and dispatch until the connection ends (the calling thread or greenlet)."""
        try:
            self._serve()
        except Exception:
            self.hub.log.exception("Unexpected error on an HTTP/2 connection")
        finally:
            self._teardown()

    def _serve(self) -> None:
        session = self.session
        sock = self.sock
        sock.setblocking(False)
        fd = sock.fileno()
        with self.lock:
            if self._upgraded is None:
                session.initiate()  # (an upgrade queued it already)
            if self.hub.stopping:
                session.goaway()
            opened = session.receive(self._initial, _monotonic()) if self._initial else []
            if self._upgraded is not None:
                opened.insert(0, self._upgraded)
                self._upgraded = None
            self._initial = b""
            self._queue()
            self._send_some()
        self._dispatch(opened)
        while True:
            with self.lock:
                if self.closed:
                    return
                if session.done and (not self.out or session.closed):
                    return
                events = _POLLOUT if self.out else 0
                if len(self.out) < OUT_HIGH:
                    events |= _POLLIN
                timeout = self._timeout(_monotonic())
            ready = _wait(fd, events, timeout)
            now = _monotonic()
            opened = []
            with self.lock:
                if self.closed:
                    return
                if ready & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    opened = self._read(now)
                elif not ready:
                    self._tick(now)
                if self.out:
                    self._send_some()
            if opened:
                self._dispatch(opened)

    def _timeout(self, now: float) -> float | None:
        """How long the reader may wait (lock held)."""
        session = self.session
        if session.goaway_at is not None or session.peer_going:
            return 0.25  # draining: notice soon when the last stream is done
        if self.running or session.streams:
            return 1.0
        limit = self.hub.idle if self.requests else self.hub.first
        if limit is None:
            return 1.0
        return min(1.0, max(0.0, self.idle_since + limit - now))

    def _tick(self, now: float) -> None:
        """A wait ended with nothing to read: close an idle connection (lock held)."""
        session = self.session
        if self.running or session.streams:
            return
        if self.hub.stopping and session.goaway_at is None:
            session.goaway()
            self._queue()
            return
        limit = self.hub.idle if self.requests else self.hub.first
        if limit is not None and now - self.idle_since >= limit and session.goaway_at is None:
            session.goaway()
            self._queue()

    def _read(self, now: float) -> list[Stream]:
        """Receive what the socket has (bounded) and let the session take it (lock held)."""
        sock = self.sock
        parts: list[bytes] = []
        total = 0
        eof = False
        while total < READ_CAP:
            try:
                data = sock.recv(65536)
            except _WANT:
                break
            except OSError:
                eof = True
                break
            if not data:
                eof = True
                break
            parts.append(data)
            total += len(data)
        session = self.session
        opened: list[Stream] = []
        if parts:
            opened = session.receive(parts[0] if len(parts) == 1 else b"".join(parts), now)
        if eof:
            session.receive(b"", now)
        self._queue()
        if session.closed and session.reason:
            self.hub.log.debug(
                "HTTP/2 connection from %s closing: %s", self.conn.remote_addr, session.reason
            )
        return opened

    def _dispatch(self, opened: list[Stream]) -> None:
        for stream in opened:
            stream.wake = self._wake
            with self.lock:
                self.running += 1
                self.requests += 1
            self.hub.dispatch(self, stream)

    def _teardown(self) -> None:
        with self.lock:
            session = self.session
            if not session.closed and (session.streams or self.running):
                session.abort(0x2, "the server closed the connection")  # unexpected
            self._queue()
            done = self._send_some() and not session.closed
            self.closed = True
            self.cond.notify_all()
        if done:  # a graceful end: let the client read our GOAWAY before closing
            self._linger()
        try:
            self.sock.close()
        except OSError:
            pass
        self.hub.closed(self)

    def _linger(self, seconds: float = 1.0, limit: int = 1 << 16) -> None:
        """Read and discard what the client still sends until it closes (bounded): closing
        on unread bytes would reset the connection, and the reset could destroy the GOAWAY
        before the client reads it."""
        deadline = _monotonic() + seconds
        seen = 0
        fd = self.sock.fileno()
        while seen < limit:
            left = deadline - _monotonic()
            if left <= 0 or not _wait(fd, _POLLIN, left):
                return
            try:
                data = self.sock.recv(65536)
            except _WANT:
                continue
            except OSError:
                return
            if not data:
                return
            seen += len(data)

    # -- output (lock held) -----------------------------------------------------------------

    def _queue(self) -> None:
        data = self.session.output()
        if data:
            self.out += data

    def _send_some(self) -> bool:
        """Send what the socket takes now; True when nothing is left."""
        out = self.out
        sock = self.sock
        while out:
            try:
                n = sock.send(out)
            except _WANT:
                return False
            except OSError:
                self._broken()
                return True
            del out[:n]
        return True

    def _flush(self, deadline: float) -> None:
        """Send everything queued, waiting (without the lock) for the socket as needed;
        past ``deadline`` the client is not reading: close the connection."""
        self._queue()
        while not self._send_some():
            left = deadline - _monotonic()
            if left <= 0:
                self.hub.log.debug(
                    "HTTP/2 client %s stopped reading: closing", self.conn.remote_addr
                )
                self._broken()
                return
            fd = self.sock.fileno()
            self.lock.release()
            try:
                _wait(fd, _POLLOUT, min(left, 1.0))
            finally:
                self.lock.acquire()
            if self.closed:
                return

    def _broken(self) -> None:
        """The socket failed: the session is over, every stream is woken."""
        self.out.clear()
        self.session.abort(0x2, "the connection broke")
        self.session.output()
        self.closed = True
        self.cond.notify_all()

    def goaway(self) -> None:
        """A graceful GOAWAY now (the worker stops): streams in flight finish."""
        with self.lock:
            if not self.closed:
                self.session.goaway()
                self._queue()
                self._send_some()

    # -- for streams ------------------------------------------------------------------------

    def trusted(self, trust: ProxyTrust) -> bool:
        """Whether the peer is in ``forwarded_allow_ips`` (asked once per connection, not
        per stream: parsing the address was 5% of a small request's cost)."""
        known = self._trusted
        if known is None:
            known = self._trusted = trust.trusts(self.conn.peer)
        return known

    def finish(self, stream: Stream) -> None:
        """The stream's handler is done (whatever happened)."""
        with self.lock:
            self.running -= 1
            if self.closed:
                return
            self.session.finish(stream)
            if not self.session.streams and not self.running:
                self.idle_since = _monotonic()
            self._flush(_monotonic() + self.hub.stall)


class StreamIO:
    """What one stream's handler sends and reads through (``wsgi.h2response.StreamSender``
    and the body source of ``wsgi.input``)."""

    __slots__ = ("conn", "expect_continue", "stream")

    def __init__(self, conn: H2Connection, stream: Stream) -> None:
        self.conn = conn
        self.stream = stream
        self.expect_continue = stream.req.expect_continue and not stream.ended

    def _gone(self) -> StreamGone:
        return StreamGone(f"stream {self.stream.sid} is gone")

    def head(self, fields: Fields, body: bytes, end: bool) -> None:
        """The final response head, with the first body bytes; ``end``: nothing follows."""
        conn = self.conn
        with conn.lock:
            if conn.closed:
                raise self._gone()
            self.expect_continue = False
            conn.session.send_headers(self.stream, fields, end and not body)
            if body or not end:
                self._body(body, end)
            else:
                conn._flush(_monotonic() + conn.hub.stall)

    def body(self, data: bytes, end: bool) -> None:
        """Body bytes (``end``: the last); waits for flow-control credit as needed."""
        conn = self.conn
        with conn.lock:
            if conn.closed:
                raise self._gone()
            self._body(data, end)

    def _body(self, data: bytes, end: bool) -> None:
        conn = self.conn
        session = conn.session
        stream = self.stream
        stall = conn.hub.stall
        view = memoryview(data) if len(data) > 16384 else data
        total = len(data)
        sent = 0
        while True:
            sent += session.send_data(stream, view[sent:] if sent else view, end)
            conn._flush(_monotonic() + stall)
            if conn.closed:
                raise self._gone()
            if sent >= total:
                return
            deadline = _monotonic() + stall
            while session.window(stream) <= 0:  # raises StreamGone once reset
                left = deadline - _monotonic()
                if left <= 0:
                    conn.hub.log.debug(
                        "HTTP/2 stream %d stalled: no window from %s for %.0fs",
                        stream.sid,
                        conn.conn.remote_addr,
                        stall,
                    )
                    session.reset(stream, CANCEL)
                    conn._flush(_monotonic() + stall)
                    raise StreamGone(f"stream {stream.sid} stalled: no flow-control window")
                session.window_waiters.add(stream)
                conn.cond.wait(left)
                if conn.closed:
                    raise self._gone()

    def trailers(self, fields: Fields) -> None:
        conn = self.conn
        with conn.lock:
            if conn.closed:
                raise self._gone()
            conn.session.send_trailers(self.stream, fields)
            conn._flush(_monotonic() + conn.hub.stall)

    def informational(self, fields: Fields) -> None:
        conn = self.conn
        with conn.lock:
            if conn.closed:
                raise self._gone()
            conn.session.send_informational(self.stream, fields)
            conn._flush(_monotonic() + conn.hub.stall)

    def reset(self, code: int) -> None:
        conn = self.conn
        with conn.lock:
            if conn.closed:
                return
            conn.session.reset(self.stream, code)
            conn._flush(_monotonic() + conn.hub.stall)

    def read(self) -> bytes:
        """The next piece of the request body, ``b""`` at its end. Raises the body's
        ``errors.HTTPError`` (408 after ``stall`` seconds without data) or ``StreamGone``."""
        conn = self.conn
        session = conn.session
        stream = self.stream
        with conn.lock:
            deadline = _monotonic() + conn.hub.stall
            while True:
                if conn.closed:
                    raise self._gone()
                data = session.read(stream)
                conn._queue()  # window credit the read gave back
                if conn.out:
                    conn._flush(_monotonic() + conn.hub.stall)
                if data is not None:
                    return data
                if self.expect_continue:  # the client waits for 100 Continue to send it
                    self.expect_continue = False
                    session.send_informational(stream, [(b":status", b"100")])
                    conn._flush(_monotonic() + conn.hub.stall)
                    continue
                left = deadline - _monotonic()
                if left <= 0:
                    session.reset(stream, CANCEL)
                    conn._flush(_monotonic() + conn.hub.stall)
                    raise errors.BodyTimeout("request body did not arrive in time")
                conn.cond.wait(left)


if TYPE_CHECKING:
    from greenhorn.wsgi.h2response import StreamSender

    def _a_stream_io_sends(io: StreamIO) -> StreamSender:
        return io

    _Dispatch = Callable[[H2Connection, Stream], None]
