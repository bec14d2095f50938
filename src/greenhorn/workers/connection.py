"""One accepted client connection: the socket, its parser, and IO with deadlines.

Why a module of its own: the handler must read with deadlines (slow clients cannot hold a
sync worker) without paying for them on every call. Python's ``settimeout`` makes every
``recv``/``send`` poll before the system call; here the socket stays blocking and each call
first tries ``MSG_DONTWAIT``. Only when the kernel has nothing (or no room) do we ``poll``
with the time left. On the common path a request costs exactly one ``recv`` and one ``send``.

Green workers (gevent, eventlet) and TLS connections use ``TimeoutConnection``, which relies
on the socket's own timeouts (cooperative ones under gevent/eventlet) instead of
``MSG_DONTWAIT`` + ``poll``: ``ssl.SSLSocket`` refuses recv flags and ``sendmsg``.
"""

from __future__ import annotations

import _socket
import os
import select
import socket
import time
from typing import IO, TYPE_CHECKING, Any

from greenhorn.http.parser import Limits, Parser, Request
from greenhorn.http.uwsgi import UwsgiParser

if TYPE_CHECKING:
    from greenhorn.http.proxy import ProxyHeader
    from greenhorn.wsgi.environ import Client
    from greenhorn.wsgi.response import Sender

__all__ = ["Connection", "EarlyBody", "RequestParser", "SockAddr", "Timeout", "TimeoutConnection"]

# A peer's address as accept() returns it: (host, port[, flow, scope]), or a UNIX path.
SockAddr = tuple[Any, ...] | str
# What reads requests off a connection: HTTP/1.x, or uwsgi packets (``--protocol uwsgi``).
RequestParser = Parser | UwsgiParser

RECV_SIZE = 65536
LINGER_SECONDS = 0.5
# socket.socket.close() spends two Python frames on makefile() reference counting, which a
# server socket never uses: plain sockets are closed at the C level. Green and TLS sockets
# (other classes) keep their own close().
_PLAIN_SOCKET = socket.socket
_c_close = _socket.socket.close  # how long a close waits for a client still sending an unread body
_DONTWAIT = socket.MSG_DONTWAIT
_LAST = socket.MSG_DONTWAIT | getattr(socket, "MSG_MORE", 0)  # the FIN will follow (send_last)
_SHUT_WR = socket.SHUT_WR
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT | select.POLLERR | select.POLLHUP
_READY_ONLY = 0.001  # seconds a socket call past its deadline may wait (TimeoutConnection)


class Timeout(Exception):
    """A read or write did not complete before its deadline."""


class EarlyBody:
    """The start of a request body, read while the connection waited in the worker's poller
    (``handler.poll_request``): since when, and for a chunked body the decoded bytes so far
    and whether they are the whole body. A Content-Length body stays in the parser's buffer.
    """

    __slots__ = ("data", "done", "started", "trailers")

    def __init__(self, started: float) -> None:
        self.started = started
        self.data = bytearray()
        self.done = False
        self.trailers: list[tuple[str, str]] | None = None  # with done: the chunked trailer


class Connection:
    """A client socket, what the environ needs to know about it, and its parser.

    ``remote_addr``/``remote_port`` are the client's (replaced by a trusted PROXY header);
    ``peer`` stays the socket's real peer, by which forwarded headers are trusted.
    """

    __slots__ = (
        "accepted_at",
        "began",
        "closed",
        "deadline",
        "early",
        "linger",
        "parser",
        "peer",
        "proxy",
        "proxy_bytes",
        "registered",
        "remote_addr",
        "remote_port",
        "request",
        "requests",
        "scheme",
        "server_name",
        "server_port",
        "sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        addr: SockAddr,
        server: tuple[str, str],
        limits: Limits,
        now: float,
        scheme: str = "http",
        parser: RequestParser | None = None,
    ) -> None:
        """``parser``: the connection's request parser when it is not HTTP/1.x's."""
        self.sock = sock
        if addr.__class__ is tuple:
            self.peer = self.remote_addr = addr[0]
            self.remote_port = str(addr[1])
        else:  # UNIX socket peers have no address
            self.peer = self.remote_addr = self.remote_port = ""
        self.server_name, self.server_port = server
        self.scheme = scheme
        self.proxy: tuple[str, str, str] | None = None  # PROXY_PROTOCOL, _ADDR, _PORT
        self.parser: RequestParser = Parser(limits) if parser is None else parser
        self.accepted_at = now
        self.requests = 0
        self.closed = False
        self.registered = False  # known to a poller (parked at least once)
        self.linger = False  # request body left unread: drain briefly on close (no RST)
        # waiting for a request without holding a worker (handler.poll_request):
        self.began = now  # when this request's first byte came (0.0: none yet); accept time
        self.deadline: float | None = None  # when waiting for more bytes gives up
        self.request: Request | None = None  # a parsed head, ready or waiting for its body
        self.early: EarlyBody | None = None  # the part of its body read before the app runs
        self.proxy_bytes: bytes | None = b""  # a PROXY header in progress; None once settled

    def apply_proxy(self, header: ProxyHeader) -> None:
        """Take the client's address from a PROXY protocol header (``http.proxy``)."""
        if header.local:
            return
        self.remote_addr = header.src_addr
        self.remote_port = str(header.src_port)
        family = "TCP6" if ":" in header.src_addr else "TCP4"
        self.proxy = (family, header.dst_addr, str(header.dst_port))

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, deadline: float | None, size: int = RECV_SIZE) -> bytes:
        """Bytes from the peer (``b""`` at EOF); raise ``Timeout`` after ``deadline``."""
        sock = self.sock
        try:
            return sock.recv(size, _DONTWAIT)
        except BlockingIOError:
            pass
        while True:
            self._wait(_POLLIN, deadline)
            try:
                return sock.recv(size, _DONTWAIT)
            except BlockingIOError:
                continue

    def recv_into(self, view: memoryview, deadline: float | None) -> int:
        """Receive into ``view`` (0 at EOF); raise ``Timeout`` after ``deadline``."""
        sock = self.sock
        while True:
            try:
                return sock.recv_into(view, 0, _DONTWAIT)
            except BlockingIOError:
                self._wait(_POLLIN, deadline)

    def send(self, data: bytes, deadline: float | None = None, flags: int = _DONTWAIT) -> int:
        """Send all of ``data``; return its length."""
        sock = self.sock
        total = len(data)
        try:
            sent = sock.send(data, flags)
        except BlockingIOError:
            sent = 0
        if sent == total:
            return total
        view = memoryview(data)
        while sent < total:
            try:
                sent += sock.send(view[sent:], flags)
            except BlockingIOError:
                self._wait(_POLLOUT, deadline)
        return total

    def send_last(self, data: bytes, deadline: float | None = None) -> int:
        """Send the end of a response on a connection that closes after it, FIN included.

        ``MSG_MORE`` keeps the last partial segment in the kernel until ``shutdown`` tacks
        the FIN onto it: the client gets the data and the end of the stream in one segment
        and acknowledges both at once. Against a send and a close that each emit a segment,
        this saves about a tenth of the kernel's work for a small request, although it costs
        one more system call. It also sends the FIN before the iterable's ``close()``, the
        access log and the hooks run. The socket is closed later, as usual."""
        sock = self.sock
        try:
            sent = sock.send(data, _LAST)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.send(data[sent:], deadline, _LAST)
        try:  # end_output(), inlined: this is every sync request's path
            sock.shutdown(_SHUT_WR)
        except OSError:
            pass
        return len(data)

    def sendv_last(self, buffers: tuple[bytes, ...], deadline: float | None = None) -> int:
        """``sendv`` for the end of a response, FIN included (see ``send_last``)."""
        total = self.sendv(buffers, deadline, _LAST)
        self.end_output()
        return total

    def end_output(self) -> None:
        """Half-close: nothing more will be sent on this connection."""
        try:
            self.sock.shutdown(_SHUT_WR)
        except OSError:
            pass

    def sendv(
        self, buffers: tuple[bytes, ...], deadline: float | None = None, flags: int = _DONTWAIT
    ) -> int:
        """Send every buffer, gathered in one system call when possible; return bytes sent."""
        sock = self.sock
        total = sum(map(len, buffers))
        pending = [memoryview(b) for b in buffers if b]
        while pending:
            try:
                n = sock.sendmsg(pending, (), flags)
            except BlockingIOError:
                self._wait(_POLLOUT, deadline)
                continue
            while n and pending:
                first = len(pending[0])
                if n >= first:
                    n -= first
                    pending.pop(0)
                else:
                    pending[0] = pending[0][n:]
                    n = 0
        return total

    def sendfile(self, fileobj: IO[bytes], offset: int, count: int, deadline: float | None) -> int:
        """Send ``count`` bytes of ``fileobj`` with ``os.sendfile``; return bytes sent."""
        sent = 0
        fd = fileobj.fileno()
        out = self.sock.fileno()
        while sent < count:
            try:
                n = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 30))
            except BlockingIOError:
                self._wait(_POLLOUT, deadline)
                continue
            if n == 0:
                break
            sent += n
        return sent

    def _wait(self, events: int, deadline: float | None) -> None:
        if deadline is None:
            timeout = None
        else:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise Timeout()
        poller = select.poll()
        poller.register(self.sock, events)
        if not poller.poll(None if timeout is None else timeout * 1000.0):
            raise Timeout()

    def close(self) -> None:
        """Close the socket; linger briefly first when the request body was left unread."""
        if self.closed:
            return
        if self.linger:
            self.linger = False
            self.lingering_close(seconds=LINGER_SECONDS)
            return
        self.closed = True
        sock = self.sock
        try:
            if sock.__class__ is _PLAIN_SOCKET:
                _c_close(sock)
            else:
                sock.close()
        except OSError:
            pass

    def lingering_close(self, seconds: float = 1.0, limit: int = 1 << 20) -> None:
        """Half-close, read and discard what the client still sends (bounded), then close.

        Closing a socket with unread data makes the kernel send RST, which can destroy the
        response the client has not read yet (RFC 9112 §9.6). Used only when data is left.
        """
        if self.closed:
            return
        self.linger = False
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            seen = 0
            while seen < limit:
                data = self.recv(deadline)
                if not data:
                    break
                seen += len(data)
        except (OSError, Timeout):
            pass
        self.close()


class TimeoutConnection(Connection):
    """Connection over a socket that handles timeouts itself (green sockets, TLS)."""

    __slots__ = ()

    def recv(self, deadline: float | None, size: int = RECV_SIZE) -> bytes:
        self.sock.settimeout(_remaining(deadline))
        try:
            return self.sock.recv(size)
        except TimeoutError as exc:
            raise Timeout() from exc

    def recv_into(self, view: memoryview, deadline: float | None) -> int:
        self.sock.settimeout(_remaining(deadline))
        try:
            return self.sock.recv_into(view)
        except TimeoutError as exc:
            raise Timeout() from exc

    def send(self, data: bytes, deadline: float | None = None, flags: int = 0) -> int:
        self.sock.settimeout(_remaining(deadline))
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise Timeout() from exc
        return len(data)

    def sendv(
        self, buffers: tuple[bytes, ...], deadline: float | None = None, flags: int = 0
    ) -> int:
        return self.send(b"".join(buffers), deadline)

    # TLS sockets take no send flags, and ``SSLSocket.shutdown`` drops the TLS layer: the
    # response ends with the close, as before.
    send_last = send
    sendv_last = sendv

    def sendfile(self, fileobj: IO[bytes], offset: int, count: int, deadline: float | None) -> int:
        self.sock.settimeout(_remaining(deadline))
        fileobj.seek(offset)
        sent = 0
        while sent < count:
            data = fileobj.read(min(65536, count - sent))
            if not data:
                break
            self.sock.sendall(data)
            sent += len(data)
        return sent


def _remaining(deadline: float | None) -> float | None:
    """The socket timeout for a call due by ``deadline``. Past it, the call may still take
    what is ready (as ``Connection`` does with ``MSG_DONTWAIT``) but not wait for more: a
    client reading a long stream as fast as it comes is never cut, a slow reader is."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), _READY_ONLY)


if TYPE_CHECKING:  # a connection is what the environ and the response write through

    def _the_environ_reads_a_connection(conn: Connection) -> Client:
        return conn

    def _responses_go_through_a_connection(conn: Connection) -> Sender:
        return conn
