"""Accepting connections for the asgi worker: a few per wakeup, pausable, and a PROXY
protocol header read before a TLS handshake.

Why not the loop's own server (``loop.create_server``): it accepts everything the kernel
has queued at every wakeup (asyncio up to the listen backlog, libuv until the queue is
empty), so one worker takes a whole burst of new connections, which TCP_DEFER_ACCEPT makes
common, while its siblings idle; it cannot pause (only close) at ``worker_connections``;
and its TLS reads the bytes of a PROXY header as a handshake. Here each listener is a
duplicate of the listening socket watched with ``add_reader``: at most ``ACCEPT_BATCH``
connections per wakeup (the siblings, woken too, take the rest), pausing is
``remove_reader``, and each accepted socket is handed to the loop with
``connect_accepted_socket``, with TLS when configured.

With both TLS and the PROXY protocol, ``ProxyFirst`` reads the header off the plain socket
before the handshake: it peeks at what arrived, lets ``workers/proxy_gate.py`` decide, and
consumes exactly the header's bytes, so the handshake that follows is untouched.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import TYPE_CHECKING, Protocol

from greenhorn.http.proxy import MAX_V2_LENGTH, ProxyHeader
from greenhorn.workers.base import ACCEPT_PAUSE, NO_RESOURCES

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.asgi.shared import Shared
    from greenhorn.workers.base import Listening


class AcceptingWorker(Protocol):
    """The worker as its acceptors see it (``worker.AsgiWorker``)."""

    loop: asyncio.AbstractEventLoop
    log: Logger
    cfg: Config
    shared: Shared
    accepting: bool
    _closing: threading.Lock
    _listeners_open: bool

    def adopt(self, client: socket.socket) -> None: ...

    @property
    def refused(self) -> int: ...

    def pause_accepting(self, exc: OSError) -> None: ...

    def accepting_again(self) -> None: ...

    def connect(self, client: socket.socket, header: ProxyHeader | None) -> None: ...


__all__ = ["ACCEPT_BATCH", "AcceptingWorker", "Acceptor", "ProxyFirst"]

ACCEPT_BATCH = 4  # connections accepted per wakeup of one listener
_PEEK = MAX_V2_LENGTH + 16  # the largest PROXY header, v2 (v1 is at most 107 bytes)
_PEEK_FLAG = socket.MSG_PEEK


class Acceptor:
    """One listener of one worker: ``start``, ``pause``, ``close``."""

    def __init__(self, worker: AcceptingWorker, listener: Listening) -> None:
        self.worker = worker
        self.listener = listener
        self.reading = False
        self.resting = False  # accept() failed for want of descriptors: not for a while
        self.sock: socket.socket | None = None
        with worker._closing:
            if worker._listeners_open:
                self.sock = socket.socket(fileno=os.dup(listener.sock.fileno()))
                self.sock.setblocking(False)

    def start(self) -> None:
        sock = self.sock
        if sock is not None and not self.reading and not self.resting:
            self.worker.loop.add_reader(sock.fileno(), self._ready)
            self.reading = True

    def pause(self) -> None:
        sock = self.sock
        if sock is not None and self.reading:
            self.worker.loop.remove_reader(sock.fileno())
            self.reading = False

    def close(self) -> None:
        self.pause()
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _ready(self) -> None:
        sock = self.sock
        worker = self.worker
        if sock is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                client, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in NO_RESOURCES:
                    worker.log.warning("accept() failed: %s", exc)
                    return
                # EMFILE...: stop watching the listener a while (retrying at once spins)
                worker.pause_accepting(exc)
                self.pause()
                self.resting = True
                worker.loop.call_later(ACCEPT_PAUSE, self._rested)
                return
            if worker.refused:
                worker.accepting_again()
            worker.adopt(client)
            if not worker.accepting:
                return

    def _rested(self) -> None:
        self.resting = False
        if self.worker.accepting:
            self.start()


class _NeedMore(Exception):
    """The PROXY header is not complete yet."""


class ProxyFirst:
    """Read an optional PROXY header off ``client`` before its TLS handshake."""

    def __init__(self, worker: AcceptingWorker, client: socket.socket) -> None:
        self.worker = worker
        self.client = client
        self.seen = b""  # header bytes consumed so far
        timeout = float(worker.cfg.header_timeout) or 30.0
        self.timer = worker.loop.call_later(timeout, self._drop)
        self.peer = ""
        try:
            peer = client.getpeername()
            self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        except OSError:
            pass
        worker.loop.add_reader(client.fileno(), self._readable)

    def _readable(self) -> None:
        client = self.client
        try:
            data = client.recv(_PEEK, _PEEK_FLAG)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop()
            return
        if not data:
            self._drop()
            return
        seen = self.seen + data

        def more(have: bytes) -> bytes | None:
            if len(have) < len(seen):
                return seen
            raise _NeedMore

        try:
            got = self.worker.shared.proxy_gate.read(self.peer, more)
        except _NeedMore:  # every byte so far belongs to the header: take them, wait
            client.recv(len(data))
            self.seen = seen
            return
        if got is None:  # refused (logged) or closed
            self._drop()
            return
        header = got[0]
        if header is not None:
            left = header.consumed - len(self.seen)
            if left > 0 and len(client.recv(left)) != left:  # it was peeked: it is there
                self._drop()
                return
        self._done(header)

    def _done(self, header: ProxyHeader | None) -> None:
        worker = self.worker
        self.timer.cancel()
        worker.loop.remove_reader(self.client.fileno())
        worker.connect(self.client, header)

    def _drop(self) -> None:
        worker = self.worker
        self.timer.cancel()
        try:
            worker.loop.remove_reader(self.client.fileno())
        except (OSError, ValueError):
            pass
        self.client.close()
