"""The sync worker: one connection, one request at a time, then close (gunicorn's default).

Why it is this small: all HTTP work is in ``handler.py`` and all lifecycle work in
``base.py``. What is left is the accept loop:

- the listening sockets are non-blocking; the loop accepts until the kernel has nothing,
  then waits in ``epoll`` (listeners registered with ``EPOLLEXCLUSIVE``, so a new connection
  wakes one idle worker instead of all of them);
- the heartbeat is written from this loop only, at most once a second; the request counters
  stay in the worker's own memory and reach the scoreboard when the loop waits, once a
  second and at exit (``ipc.scoreboard.Scoreboard.buffer``), and after a large request body the
  freed heap goes back to the OS once the loop has waited a whole period (``heap.py``);
- like gunicorn's sync worker it does not keep connections alive: it is meant to sit behind
  a buffering proxy, and a kept-alive idle client would occupy the whole worker.
"""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING

from greenhorn.ipc.scoreboard import BEAT_PERIOD, Scoreboard
from greenhorn.workers.base import Worker
from greenhorn.workers.handler import Handler

if TYPE_CHECKING:
    import socket

    from greenhorn.workers.base import Listening
    from greenhorn.workers.connection import SockAddr

__all__ = ["SyncWorker"]

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)


class SyncWorker(Worker):
    """Serve one request per connection, one connection at a time."""

    slot_holds_loop = True  # the loop is the request: the master times the request

    def run(self) -> None:
        handler = Handler.for_worker(self, keep_alive=False, multithread=False)
        self._poller = poller = select.epoll()
        with self._closing:  # a TERM during boot may already have closed the listeners
            if self._listeners_open:
                for listener in self.listeners:
                    listener.sock.setblocking(False)
                    poller.register(listener.sock.fileno(), select.EPOLLIN | _EXCLUSIVE)
        poller.register(self._wake_r, select.EPOLLIN)
        board = self.tmp.board
        board.buffer()  # counters reach the master when idle, once a second, and at exit
        try:
            self._loop(handler, poller, list(self.listeners), board)
        finally:
            board.flush()

    def _loop(
        self,
        handler: Handler,
        poller: select.epoll,
        listeners: list[Listening],
        board: Scoreboard,
    ) -> None:
        monotonic = time.monotonic
        idle_wait = BEAT_PERIOD if not self.timeout else min(BEAT_PERIOD, self.timeout / 2.0)
        tmp = self.tmp
        accept = self.accept
        make_connection = self.make_connection
        serve = handler.serve
        max_requests = self.max_requests
        while self.alive:
            now = monotonic()
            if now - tmp.last_beat >= BEAT_PERIOD:
                board.flush()
                self.beat(now)
            served = False
            for listener in listeners:
                accepted = accept(listener)
                if accepted is None:
                    continue
                served = True
                conn = make_connection(accepted[0], accepted[1], listener, now)
                if conn is None:  # a failed TLS handshake
                    continue
                try:
                    serve(conn)
                except Exception:  # the handler contains what a request raises: a bug
                    self.log.exception("Unexpected error serving a connection")
                finally:
                    conn.close()
                self.nr += 1
                if self.nr >= max_requests:
                    self.max_requests_reached()
                if not self.alive:
                    break
            if served:
                continue
            board.flush()
            try:
                events = poller.poll(idle_wait)
            except InterruptedError:
                continue
            if not events and self.heap_pending:  # idle for a whole wait
                self.release_heap()
            for fd, _ in events:
                if fd == self._wake_r:
                    self.drain_wake()
        # Stopping: serve what was accepted from the backlog, then leave.
        while self.pending:
            client, addr, listener, accepted_at = self.pending.popleft()
            self.serve(handler, listener, (client, addr), accepted_at)

    def serve(
        self,
        handler: Handler,
        listener: Listening,
        accepted: tuple[socket.socket, SockAddr],
        now: float,
    ) -> None:
        """Serve one accepted connection (the backlog drained at shutdown)."""
        client, addr = accepted
        conn = self.make_connection(client, addr, listener, now)
        if conn is None:
            return
        try:
            handler.serve(conn)
        except Exception:
            self.log.exception("Unexpected error serving a connection")
        finally:
            conn.close()
        self.count_request()

    def forget_listener(self, sock: object) -> None:
        poller = getattr(self, "_poller", None)
        if poller is not None:
            try:
                poller.unregister(sock)
            except (OSError, ValueError, KeyError):
                pass
