"""The connection state machine the master's own endpoints are built on.

Why a module of its own: the master serves two things itself, Prometheus metrics
(``metrics.py``) and the ``greenhorn ctl`` control socket (``control.py``), and it must
never block on either. ``StreamEndpoint`` is the one non-blocking machine both use: a
listener, its clients, and ``respond``, which turns the bytes received into the whole reply.
``metrics.MetricsServer`` and ``control.ControlServer`` are this machine with a way to bind
and a ``respond`` of their own; nothing else is written twice.

Why a hand-written state machine instead of ``http.server`` or a thread: the master is
single-threaded (it forks) and its ``select`` loop must never block on a client. The master
selects on ``fds()`` for reading (and, optionally, ``wfds()`` for writing), calls
``handle(fd, ...)`` for each ready fd and ``expire(time.monotonic())`` once per turn. Every
connection is non-blocking, serves exactly one request, may send at most a few KiB and must
be done within ``TIMEOUT`` seconds, so a slow, silent or hostile client costs at most one
fd for two seconds and the loop never waits on it.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Responder", "StreamEndpoint"]

TIMEOUT = 2.0  # seconds a client may take from accept to the last byte of the reply
MAX_CLIENTS = 64  # connections open at once; more are accepted and closed at once
ACCEPT_BATCH = 16  # accepts per handle() call, so one busy listener cannot hog the loop
SEND_BUFFER = 256 * 1024  # asked of the kernel so a reply almost always leaves in one send()
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)

Responder = Callable[[bytes, bool], "bytes | None"]
"""(bytes received so far, peer closed?) → the whole reply, or None to wait for more."""


@dataclass(slots=True)
class _Client:
    sock: socket.socket
    deadline: float
    inbuf: bytearray = field(default_factory=bytearray)
    out: memoryview | None = None  # None while reading the request; then the unsent reply


class StreamEndpoint:
    """A listening socket and its clients, driven by someone else's ``select`` loop.

    ``respond(data, eof)`` answers one request (see ``Responder``). ``max_request``: bytes
    a client may send before it is answered ``overflow_reply`` and cut off. ``name`` is how
    the log shows the endpoint. The listener must be bound, listening and non-blocking.
    """

    def __init__(
        self,
        listener: socket.socket,
        respond: Responder,
        *,
        name: str,
        max_request: int,
        overflow_reply: bytes,
        timeout: float = TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.listener: socket.socket | None = listener
        self.respond = respond
        self.name = name
        self.max_request = max_request
        self.overflow_reply = overflow_reply
        self.timeout = timeout
        self.max_clients = max_clients
        self.clients: dict[int, _Client] = {}

    def fds(self) -> list[int]:
        """The listener and every client still sending its request (select for reading)."""
        if self.listener is None:
            return []
        return [self.listener.fileno()] + [f for f, c in self.clients.items() if c.out is None]

    def wfds(self) -> list[int]:
        """Clients whose reply did not fit in one send (select for writing; optional, as
        ``expire`` also pushes them)."""
        return [f for f, c in self.clients.items() if c.out is not None]

    def handle(self, fd: int) -> None:
        """Make progress on ``fd`` (one of ``fds()``/``wfds()``); never blocks, never raises
        for a client's misbehaviour. Unknown fds are ignored."""
        if self.listener is not None and fd == self.listener.fileno():
            self._accept()
            return
        client = self.clients.get(fd)
        if client is None:
            return
        if client.out is not None:
            self._flush(fd, client)
        else:
            self._read(fd, client)

    def expire(self, now: float) -> None:
        """Push pending replies and drop every client past its deadline (``now`` is
        ``time.monotonic()``)."""
        for fd, client in list(self.clients.items()):
            if client.out is not None:
                self._flush(fd, client)
            if fd in self.clients and now >= client.deadline:
                self._drop(fd)

    def close_in_child(self) -> None:
        """In a freshly forked worker: close our fds (the master keeps its own copies)."""
        StreamEndpoint.close(self)

    def close(self) -> None:
        """Close the listener and every client."""
        for fd in list(self.clients):
            self._drop(fd)
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
            self.listener = None

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError:
                return  # EMFILE and friends: the next turn tries again
            if len(self.clients) >= self.max_clients:
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            self.clients[sock.fileno()] = _Client(sock, time.monotonic() + self.timeout)

    def _read(self, fd: int, client: _Client) -> None:
        eof = False
        while len(client.inbuf) <= self.max_request:
            try:
                data = client.sock.recv(min(65536, self.max_request + 1 - len(client.inbuf)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(fd)
                return
            if not data:
                eof = True
                break
            client.inbuf += data
        reply = self.respond(bytes(client.inbuf[: self.max_request]), eof)
        if reply is None:
            if len(client.inbuf) > self.max_request:
                reply = self.overflow_reply
            elif eof:
                self._drop(fd)
                return
            else:
                return
        client.inbuf = bytearray()
        client.out = memoryview(reply)
        client.deadline = time.monotonic() + self.timeout
        self._flush(fd, client)

    def _flush(self, fd: int, client: _Client) -> None:
        out = client.out
        while out:
            try:
                sent = client.sock.send(out, _NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                client.out = out
                return
            except OSError:
                break
            out = out[sent:]
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        client = self.clients.pop(fd, None)
        if client is not None:
            with contextlib.suppress(OSError):
                client.sock.close()
