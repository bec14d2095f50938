"""The threaded worker: a pool of threads runs requests; every connection that is waiting for
bytes (a new one whose head is incomplete, a small body still arriving, an idle keep-alive
one) waits in ``epoll`` without holding a thread.

Why it is shaped like this:

- **Fair accept.** gunicorn's gthread worker accepts whenever its listener is readable, so
  under load one worker can hoard most connections while its siblings idle. Here a worker
  listens only while it has a free thread (and room under ``worker_connections``): when the
  pool is full the listeners leave the poller, and the kernel's backlog goes to a sibling
  that has capacity. Listeners use ``EPOLLEXCLUSIVE`` so one connection wakes one worker.
- **Threads only for complete requests.** The main loop accepts, receives what a new
  connection has sent and parses it (``Handler.poll_request``, never waiting); a request
  whose head (and small body) is complete goes to the pool, anything else is parked
  (``parking.py``) until it is readable again or its deadline passes. So a thousand silent
  or slowloris connections cost a thousand parked sockets, not the threads. After a
  response the thread that served it re-arms the connection in epoll itself (no wake-up
  round trip); pipelined requests already in the buffer are served at once by that thread.
- **Heartbeat from the loop; a slow request is not a stuck worker** (gunicorn's meaning of
  ``timeout`` for threads). The main loop beats even when every thread is busy, and the
  master aborts the worker only when that loop stops beating. A request that runs past
  ``timeout`` (a long stream, a slow backend) is logged once as a warning with its thread's
  stack, and runs on: aborting the worker would cut every other request in flight. The
  sync worker differs: its loop *is* the request, so there the request is aborted.
- **A pool that cannot shrink.** A thread contains whatever a request raises (SystemExit,
  CancelledError...); if one dies anyway, the worker stops and the master replaces it, so
  a worker never sits alive with fewer threads than it was given.

TLS connections are handshaken and read by a pool thread under the head deadline, as before.

HTTP/2 (``workers/http2``): a connection that speaks it (ALPN ``h2`` over TLS, or the h2c
preface from a trusted peer, peeked at by the main loop like a head) gets a reader thread
of its own, and each of its streams is a task for the pool, like a ready request.
"""

from __future__ import annotations

import queue
import select
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from greenhorn.ipc.scoreboard import BEAT_PERIOD
from greenhorn.workers.base import STOP_KEEPALIVE, Accepted, Worker
from greenhorn.workers.connection import Connection
from greenhorn.workers.handler import CLOSE, READY, WAIT, Handler
from greenhorn.workers.http2 import MATCH, MISMATCH, Http2, serve_stream_on
from greenhorn.workers.http2 import wanted as http2_wanted
from greenhorn.workers.parking import ParkingLot, connection_limit

if TYPE_CHECKING:
    import socket

    from greenhorn.config import Config
    from greenhorn.http.http2.session import Stream
    from greenhorn.workers.base import Listening
    from greenhorn.workers.connection import SockAddr
    from greenhorn.workers.http2.connection import H2Connection

__all__ = ["ThreadWorker"]

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)


class StreamTask:
    """An HTTP/2 stream for a pool thread (``workers/http2``): its connection and stream."""

    __slots__ = ("conn", "stream")

    def __init__(self, conn: H2Connection, stream: Stream) -> None:
        self.conn = conn
        self.stream = stream


class Blocking:
    """A plain connection a pool thread reads itself, under the head deadline, as TLS ones:
    with ``--proxy-protocol`` and h2c, the PROXY header and then the HTTP/2 preface."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn


class ThreadWorker(Worker):
    """Threads serve requests; the main loop accepts, reads heads, parks and heartbeats."""

    speaks_http2 = True

    @classmethod
    def slots_for(cls, cfg: Config) -> int:
        return max(1, int(cfg.threads))

    def run(self) -> None:
        cfg = self.cfg
        self.threads = max(1, int(cfg.threads))
        self.max_conns = max(self.threads, connection_limit(int(cfg.worker_connections)))
        self.keepalive = float(cfg.keepalive)
        self.handler = Handler.for_worker(self, keep_alive=self.keepalive > 0, multithread=True)
        self.poller = select.epoll()
        self.lock = threading.Lock()
        self.active = 0  # connections queued for or being served by a thread
        self.lot = ParkingLot(self.poller, self.max_conns, self.log)  # waiting for bytes
        self.listening = False
        self.tasks: queue.SimpleQueue[Connection | Accepted | StreamTask | Blocking | None] = (
            queue.SimpleQueue()
        )
        self.http2: Http2 | None = None
        self.h2c = False  # the main loop peeks for the h2c preface
        if http2_wanted(cfg):  # each connection reads in a thread of its own, streams use the pool
            self.http2 = Http2(self, self.handler, self._read_h2, self._submit_stream)
            self.handler.http2 = self.http2
            self.serve_stream = serve_stream_on(self.handler)
            self.h2c = self.http2.prior_knowledge and self.ssl_context is None
        with self._closing:  # a TERM during boot may already have closed the listeners
            open_now = self._listeners_open
            self.listener_fds = {
                listener.sock.fileno(): listener for listener in self.listeners if open_now
            }
            for listener in self.listener_fds.values():
                listener.sock.setblocking(False)
        self.poller.register(self._wake_r, select.EPOLLIN)
        self.thread_died: str | None = None  # set by a pool thread that ends unexpectedly
        self.idents: dict[int, int] = {}  # slot -> the pool thread serving it
        pool = [
            threading.Thread(target=self._thread, args=(i,), name=f"greenhorn-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in pool:
            thread.start()
        self.stack_of = self._stack_of
        with self.lock:
            self._update_listening()
        try:
            self._main_loop()
        finally:
            self._shutdown(pool)
        if self.thread_died is not None:  # exit with a failure status: the master replaces us
            raise RuntimeError(f"pool thread {self.thread_died} died")

    # -- main thread -------------------------------------------------------------------------

    def _main_loop(self) -> None:
        monotonic = time.monotonic
        timeout = BEAT_PERIOD if not self.timeout else min(BEAT_PERIOD, self.timeout / 2.0)
        poll = self.poller.poll
        lot = self.lot
        while self.alive:
            now = monotonic()
            self.beat(now)
            longest = timeout
            if self.accept_paused_until:  # out of descriptors: listen again once it ends
                longest = min(longest, self.accept_pause_left(now))
                if not longest:
                    self.accept_paused_until = 0.0
                    with self.lock:
                        self._update_listening()
                    longest = timeout
            with self.lock:
                wait = lot.wait_time(now, longest)
            try:
                events = poll(wait)
            except InterruptedError:
                continue
            if not events and self.heap_pending and not self.active:  # idle for a whole wait
                self.release_heap()
            self._dispatch(events)

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        for fd, _ in events:
            if fd in self.listener_fds:
                self._accept(self.listener_fds[fd])
            elif fd == self._wake_r:
                self.drain_wake()
            else:
                with self.lock:
                    conn = self.lot.take(fd)
                if conn is not None:
                    self._advance(conn, expired=False)
        with self.lock:
            expired = self.lot.expired(time.monotonic())
        for conn in expired:
            self._advance(conn, expired=True)

    def _accept(self, listener: Listening) -> None:
        """Take connections while there is room (one wake-up may cover several)."""
        while True:
            with self.lock:
                if not self.listening:
                    return
            accepted = self.accept(listener)
            if accepted is None:
                if self.accept_paused_until:  # out of descriptors: stop watching a while
                    with self.lock:
                        self._update_listening()
                return
            self._take_new(accepted[0], accepted[1], listener, time.monotonic())

    def _take_new(
        self, client: socket.socket, addr: SockAddr, listener: Listening, accepted_at: float
    ) -> None:
        if self.ssl_context is not None:  # the handshake is made by the pool thread
            self._submit((client, addr, listener, accepted_at))
            return
        conn = self.make_connection(client, addr, listener, accepted_at)
        if conn is None:
            return
        h2c_proxied = self.h2c and self.handler.proxy_gate.on and self.http2 is not None
        if h2c_proxied and self.http2 is not None and self.http2.trust.trusts(conn.peer):
            self._submit(Blocking(conn))  # the PROXY header first, then the preface
            return
        self._advance(conn, expired=False)

    def _advance(self, conn: Connection, expired: bool) -> None:
        """A parked or new connection: to a thread when its request is ready, else park it
        again or close it."""
        if conn.__class__ is not Connection:  # TLS: its thread reads the head under deadline
            if expired:
                conn.close()
                with self.lock:
                    self._update_listening()
            else:
                self._submit(conn)
            return
        handler = self.handler
        fresh = self.h2c and not conn.requests and not conn.parser.buffered
        if fresh and self._h2c_preface(conn, expired):
            return
        try:
            state = handler.expire(conn) if expired else handler.poll_request(conn)
        except Exception:  # the handler contains what a request raises: a bug
            self.log.exception("Unexpected error serving a connection")
            state = CLOSE
        if state == READY:
            self._submit(conn)
            return
        with self.lock:
            if state == WAIT:
                if not self.alive and not conn.began:  # stopping: idle not for long
                    self._linger(conn, time.monotonic())
                self.lot.park(conn)
            else:
                conn.close()
            self._update_listening()

    def _h2c_preface(self, conn: Connection, expired: bool) -> bool:
        """A new plain connection from a trusted peer: True when it was dealt with here (it
        opened with the HTTP/2 preface and is HTTP/2's now, or is parked until the preface
        is whole, or was refused); False: serve it as HTTP/1.1."""
        http2 = self.http2
        assert http2 is not None
        peeked = http2.peek(conn)
        if peeked is None:  # not a peer h2c is for
            return False
        verdict, seen = peeked
        if verdict == MATCH:
            http2.start(conn, b"")
            with self.lock:
                self._update_listening()
            return True
        if verdict == MISMATCH:
            if http2.cleartext != "prior-knowledge":
                return False
            http2.refuse(conn)
            with self.lock:
                self._update_listening()
            return True
        if expired:  # a preface begun and never finished: 400, as gunicorn; nothing: close
            if seen:
                http2.refuse(conn)
            else:
                conn.close()
            with self.lock:
                self._update_listening()
            return True
        with self.lock:  # PARTIAL: wait for the rest under the head deadline
            if not conn.began:
                conn.began = conn.accepted_at
            header_timeout = self.handler.header_timeout
            conn.deadline = conn.began + header_timeout if header_timeout else None
            self.lot.park(conn)
            self._update_listening()
        return True

    def _read_h2(self, conn: H2Connection) -> None:
        threading.Thread(target=conn.serve, name="greenhorn-h2", daemon=True).start()

    def _submit_stream(self, conn: H2Connection, stream: Stream) -> None:
        with self.lock:
            self.active += 1
            self._update_listening()
        self.tasks.put(StreamTask(conn, stream))

    def _submit(self, conn: Connection | Accepted | Blocking) -> None:
        with self.lock:
            self.active += 1
            self._update_listening()
        self.tasks.put(conn)

    def _update_listening(self) -> None:
        """Listen only while a thread is free and connections are under the cap, and accept()
        is not paused for want of file descriptors (lock held)."""
        conns = self.active + len(self.lot) + (len(self.http2) if self.http2 else 0)
        room = self.active < self.threads and conns < self.max_conns
        want = room and self.alive and self._listeners_open and not self.accept_paused_until
        if want == self.listening:
            return
        self.listening = want
        for fd in self.listener_fds:
            try:
                if want:
                    self.poller.register(fd, select.EPOLLIN | _EXCLUSIVE)
                else:
                    self.poller.unregister(fd)
            except (OSError, ValueError, KeyError):
                pass

    def forget_listener(self, sock: socket.socket) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            lock = getattr(self, "lock", None)
            if lock is not None:
                with lock:
                    self.listening = False
            try:
                poller.unregister(sock)
            except (OSError, ValueError, KeyError):
                pass

    def _linger(self, conn: Connection, now: float) -> None:
        """Stopping: a connection idle between two requests closes ``STOP_KEEPALIVE``
        seconds from now at the latest, not at once (its client may be sending the next
        request already; that one is answered with ``Connection: close``). Lock held."""
        cap = now + STOP_KEEPALIVE
        if conn.deadline is None or conn.deadline > cap:
            conn.deadline = cap

    def _shutdown(self, pool: list[threading.Thread]) -> None:
        """Stop: requests in flight, connections taken from the backlog and new ones still
        arriving are served (or expire); idle keep-alive ones linger a moment (``_linger``)
        and close between two requests. Then the pool ends."""
        now = time.monotonic()
        with self.lock:
            parked = self.lot.all()
            for conn in parked:
                if conn.requests and not conn.parser.buffered:  # idle between two requests
                    self._linger(conn, now)
                self.lot.park(conn)
        while self.pending:
            self._take_new(*self.pending.popleft())
        if self.http2 is not None:  # GOAWAY: streams in flight finish, new ones are refused
            self.http2.stop()
        while not self.thread_died:
            with self.lock:
                if not self.lot and not self.active:
                    break
                wait = self.lot.wait_time(time.monotonic(), 0.5)
            self.beat(time.monotonic())
            try:
                events = self.poller.poll(wait)
            except InterruptedError:
                continue
            self._dispatch(events)
        while self.http2 is not None and len(self.http2):  # graceful_timeout bounds it
            self.beat(time.monotonic())
            time.sleep(0.05)
        for _ in pool:
            self.tasks.put(None)
        for thread in pool:
            while thread.is_alive():
                self.beat(time.monotonic())
                thread.join(0.5)

    # -- pool threads ------------------------------------------------------------------------

    def _thread(self, slot: int) -> None:
        """A pool thread's life: serve until told to stop. Should it end any other way, the
        worker stops (and the master replaces it) rather than serve on with fewer threads."""
        self.idents[slot] = threading.get_ident()
        try:
            self._serve_loop(slot)
        except BaseException:
            self.thread_died = threading.current_thread().name
            try:
                self.log.critical("Pool thread %s died; the worker stops", self.thread_died)
                self.log.exception("The pool thread's exception")
            except BaseException:
                pass
            self.alive = False
            self.close_listeners(drain=False)
            self.wake()

    def _run_stream(self, task: StreamTask, slot: int) -> None:
        try:
            self.serve_stream(task.conn, task.stream, slot)
            self.count_request()
        finally:
            with self.lock:
                self.active -= 1
                self._update_listening()

    def _stack_of(self, slot: int) -> str | None:
        """The stack of the pool thread serving ``slot`` (the late-request warning)."""
        ident = self.idents.get(slot)
        frame = sys._current_frames().get(ident) if ident is not None else None
        return "".join(traceback.format_stack(frame)) if frame is not None else None

    def _serve_loop(self, slot: int) -> None:
        handler = self.handler
        get = self.tasks.get
        while True:
            item = get()
            if item is None:
                return
            keep = False
            if isinstance(item, StreamTask):  # an HTTP/2 stream
                self._run_stream(item, slot)
                continue
            conn: Connection | None = None
            try:
                # TLS (a tuple from the main loop): the handshake, then the head under its
                # deadline; a plain connection comes with its request ready
                blocking = isinstance(item, Blocking)
                if isinstance(item, Blocking):
                    conn = item.conn
                else:
                    conn = self.make_connection(*item) if isinstance(item, tuple) else item
                if conn is not None:
                    keep = self._serve(handler, conn, slot, blocking)
            except BaseException:  # the handler contains what a request raises: a bug
                self.log.exception("Unexpected error serving a connection")
                keep = False
            if conn is None:
                with self.lock:
                    self.active -= 1
                    self._update_listening()
                continue
            with self.lock:
                self.active -= 1
                # kept alive while stopping too, briefly: the response said keep-alive,
                # and the client may be sending its next request already
                if keep:
                    if not conn.began:  # idle until the next request's first byte
                        now = time.monotonic()
                        conn.deadline = now + self.keepalive
                        if not self.alive:
                            self._linger(conn, now)
                    self.lot.park(conn)
                else:
                    conn.close()
                self._update_listening()

    def _serve(self, handler: Handler, conn: Connection, slot: int, blocking: bool) -> bool:
        """Serve the connection's requests while they are ready; True to park it."""
        if blocking or conn.__class__ is not Connection:  # TLS
            while True:
                requests = conn.requests
                keep = handler.serve(conn, slot)
                if conn.requests != requests:  # a request was served (see green.py)
                    self.count_request()
                if not keep or not conn.parser.buffered:
                    return keep
        while True:
            requests = conn.requests  # its head is in: run() gives it back to HTTP/2 (h2c)
            keep = handler.run(conn, slot)
            if conn.requests == requests:
                self.count_request()
            # pipelined requests are served now, also while stopping (then with
            # Connection: close): epoll does not see what the parser already holds
            if not keep or not conn.parser.buffered:
                return keep
            state = handler.poll_request(conn)  # pipelined: the next head is (partly) here
            if state != READY:
                return state == WAIT
