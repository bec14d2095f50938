"""The threaded worker: a pool of threads serves requests; idle keep-alive connections wait
in ``epoll`` without holding a thread.

Why it is shaped like this:

- **Fair accept.** gunicorn's gthread worker accepts whenever its listener is readable, so
  under load one worker can hoard most connections while its siblings idle. Here a worker
  listens only while it has a free thread (and room under ``worker_connections``): when the
  pool is full the listeners leave the poller, and the kernel's backlog goes to a sibling
  that has capacity. Listeners use ``EPOLLEXCLUSIVE`` so one connection wakes one worker.
- **Keep-alive without a thread.** After a response the connection is re-armed in epoll
  (``EPOLLONESHOT``) by the thread that served it, so no wake-up round trip through the main
  loop is needed; the main loop hands readable connections back to the pool and closes those
  idle for longer than ``keepalive`` seconds. Pipelined requests already in the buffer are
  served at once by the same thread.
- **Heartbeat from the loop; a slow request is not a stuck worker** (gunicorn's meaning of
  ``timeout`` for threads). The main loop beats even when every thread is busy, and the
  master aborts the worker only when that loop stops beating. A request that runs past
  ``timeout`` (a long stream, a slow backend) is logged once as a warning with its thread's
  stack, and runs on: aborting the worker would cut every other request in flight. The
  sync worker differs: its loop *is* the request, so there the request is aborted.
- **A pool that cannot shrink.** A thread contains whatever a request raises (SystemExit,
  CancelledError...); if one dies anyway, the worker stops and the master replaces it, so
  a worker never sits alive with fewer threads than it was given.
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
from greenhorn.workers.base import Accepted, Worker
from greenhorn.workers.connection import Connection
from greenhorn.workers.handler import Handler

if TYPE_CHECKING:
    import socket

    from greenhorn.config import Config
    from greenhorn.workers.base import Listening

__all__ = ["ThreadWorker"]

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
_ONESHOT_IN = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP


class ThreadWorker(Worker):
    """Threads serve requests; the main loop accepts, parks and heartbeats."""

    @classmethod
    def slots_for(cls, cfg: Config) -> int:
        return max(1, int(cfg.threads))

    def run(self) -> None:
        cfg = self.cfg
        self.threads = max(1, int(cfg.threads))
        self.max_conns = max(self.threads, int(cfg.worker_connections))
        self.keepalive = float(cfg.keepalive)
        self.handler = Handler.for_worker(self, keep_alive=self.keepalive > 0, multithread=True)
        self.poller = select.epoll()
        self.lock = threading.Lock()
        self.active = 0  # connections queued for or being served by a thread
        self.parked: dict[int, tuple[Connection, float]] = {}  # fd -> (conn, parked at)
        self.listening = False
        self.tasks: queue.SimpleQueue[Connection | Accepted | None] = queue.SimpleQueue()
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
        if self.keepalive:
            timeout = min(timeout, max(0.05, self.keepalive / 2.0))
        poll = self.poller.poll
        while self.alive:
            now = monotonic()
            self.beat(now)
            try:
                events = poll(timeout)
            except InterruptedError:
                continue
            if not events and self.heap_pending and not self.active:  # idle for a whole wait
                self.release_heap()
            for fd, _ in events:
                if fd in self.listener_fds:
                    self._accept(self.listener_fds[fd])
                elif fd == self._wake_r:
                    self.drain_wake()
                else:
                    item = self.parked.pop(fd, None)
                    if item is not None:
                        self._submit(item[0])
            self._expire_idle(monotonic())

    def _accept(self, listener: Listening) -> None:
        """Take connections while a thread is free (one wake-up may cover several)."""
        while True:
            with self.lock:
                if not self.listening:
                    return
            accepted = self.accept(listener)
            if accepted is None:
                return
            client, addr = accepted
            # the Connection (and a TLS handshake) is made by the pool thread
            self._submit((client, addr, listener, time.monotonic()))

    def _submit(self, conn: Connection | Accepted) -> None:
        with self.lock:
            self.active += 1
            self._update_listening()
        self.tasks.put(conn)

    def _update_listening(self) -> None:
        """Listen only while a thread is free and connections are under the cap (lock held)."""
        room = self.active < self.threads and self.active + len(self.parked) < self.max_conns
        want = room and self.alive and self._listeners_open
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

    def _expire_idle(self, now: float) -> None:
        if not self.parked:
            return
        limit = self.keepalive
        expired = False
        for fd, (conn, since) in list(self.parked.items()):
            if now - since >= limit and self.parked.pop(fd, None) is not None:
                self._unpark(conn)
                conn.close()
                expired = True
        if expired:  # room under worker_connections again: maybe listen again
            with self.lock:
                self._update_listening()

    def _unpark(self, conn: Connection) -> None:
        try:
            self.poller.unregister(conn.sock)
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

    def _shutdown(self, pool: list[threading.Thread]) -> None:
        """Stop: idle keep-alive connections close now, in-flight requests finish."""
        for fd, (conn, _) in list(self.parked.items()):
            self.parked.pop(fd, None)
            self._unpark(conn)
            conn.close()
        while self.pending:
            self._submit(self.pending.popleft())
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
            conn: Connection | None = None
            try:
                # accepted by the main loop: the connection (and TLS) is made here
                conn = self.make_connection(*item) if isinstance(item, tuple) else item
                while conn is not None:
                    keep = handler.serve(conn, slot)
                    self.count_request()
                    if not keep or not self.alive or not conn.parser.buffered:
                        break
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
                if keep and self.alive:
                    self._park(conn)
                else:
                    conn.close()
                self._update_listening()

    def _park(self, conn: Connection) -> None:
        """Wait for the next request on ``conn`` in epoll (lock held)."""
        fd = conn.fileno()
        self.parked[fd] = (conn, time.monotonic())
        try:
            if not conn.registered:
                self.poller.register(fd, _ONESHOT_IN)
                conn.registered = True
            else:
                self.poller.modify(fd, _ONESHOT_IN)
        except (OSError, ValueError):
            self.parked.pop(fd, None)
            conn.close()
