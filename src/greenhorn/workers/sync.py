"""The sync worker: one request at a time, then close (gunicorn's default).

Why it is this small: all HTTP work is in ``handler.py`` and all lifecycle work in
``base.py``. What is left is the accept loop, and the worker is its own buffer for requests
that have not fully arrived:

- the listening sockets are non-blocking; the loop accepts until the kernel has nothing,
  then waits in ``epoll`` (listeners registered with ``EPOLLEXCLUSIVE``, so a new connection
  wakes one idle worker instead of all of them);
- an accepted connection whose request is all there (the common case) is served at once,
  with one ``recv`` and no other system call than before. One whose head is incomplete, or
  whose small body is still arriving, is *parked* (``parking.py``): it waits in the same
  ``epoll`` while the worker serves others, until its bytes arrive or its deadline passes
  (``header_timeout`` from accept, then ``body_min_rate``). So idle sockets, slowloris heads
  and slow uploads never hold the worker; the application runs only for a complete head;
- at most ``worker_connections`` connections are parked; at that bound the worker stops
  accepting (and logs it), so further connections wait in the kernel's listen queue or go to
  a sibling;
- the heartbeat is written from this loop only, every ``BEAT_PERIOD`` (0.5 s); the request
  counters stay in the worker's own memory and reach the scoreboard when the loop waits, at
  each beat and at exit (``ipc.scoreboard.Scoreboard.buffer``), and after a large request body the
  freed heap goes back to the OS once the loop has waited a whole period (``heap.py``);
- like gunicorn's sync worker it does not keep connections alive: it is meant to sit behind
  a buffering proxy, and a kept-alive idle client would occupy the whole worker.

TLS connections are served as before: the handshake and the head are read under the head
deadline, holding the worker meanwhile.
"""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING

from greenhorn.ipc.scoreboard import BEAT_PERIOD, Scoreboard
from greenhorn.workers.base import Worker
from greenhorn.workers.connection import Connection
from greenhorn.workers.handler import CLOSE, READY, WAIT, Handler
from greenhorn.workers.parking import ParkingLot, connection_limit

if TYPE_CHECKING:
    from greenhorn.workers.base import Listening

__all__ = ["SyncWorker"]

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
PARKED_POLL_EVERY = 0.005  # while accepting a stream of new connections, look at parked ones


class SyncWorker(Worker):
    """Serve one request per connection, one connection at a time."""

    slot_holds_loop = True  # the loop is the request: the master times the request

    def run(self) -> None:
        handler = Handler.for_worker(self, keep_alive=False, multithread=False)
        self._poller = poller = select.epoll()
        self.lot = ParkingLot(poller, connection_limit(int(self.cfg.worker_connections)), self.log)
        self.listening = False
        with self._closing:  # a TERM during boot may already have closed the listeners
            if self._listeners_open:
                for listener in self.listeners:
                    listener.sock.setblocking(False)
        self._update_listening()
        poller.register(self._wake_r, select.EPOLLIN)
        board = self.tmp.board
        board.buffer()  # counters reach the master when idle, once a second, and at exit
        try:
            self._loop(handler, poller, list(self.listeners), board)
        finally:
            board.flush()
            for conn in self.lot.all():
                conn.close()

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
        poll_request = handler.poll_request
        run = handler.run
        lot = self.lot
        max_requests = self.max_requests
        polled_at = 0.0
        while self.alive:
            now = monotonic()
            if now - tmp.last_beat >= BEAT_PERIOD:
                board.flush()
                self.beat(now)
            accepted = False
            if self.listening:
                for listener in listeners:
                    pair = accept(listener)
                    if pair is None:
                        continue
                    accepted = True
                    conn = make_connection(pair[0], pair[1], listener, now)
                    if conn is None:  # a failed TLS handshake
                        continue
                    if conn.__class__ is not Connection:  # TLS: read under the deadline
                        self.serve(handler, conn)
                    else:
                        try:
                            state = poll_request(conn)
                            if state == READY:
                                run(conn)
                        except Exception:  # the handler contains what a request raises: a bug
                            self.log.exception("Unexpected error serving a connection")
                            state = CLOSE
                        if state == READY:
                            conn.close()
                            self.nr += 1
                            if self.nr >= max_requests:
                                self.max_requests_reached()
                        elif state == WAIT:
                            self._park(conn)
                        else:
                            conn.close()
                    if not self.alive:
                        break
                if not accepted and self.accept_paused_until > now:  # out of descriptors
                    self._update_listening()
            if accepted and (not lot or now - polled_at < PARKED_POLL_EVERY):
                continue
            board.flush()
            polled_at = now
            longest = idle_wait
            if self.accept_paused_until > now:  # listen again then (``_dispatch``)
                longest = min(longest, self.accept_paused_until - now)
            try:
                events = poller.poll(0 if accepted else lot.wait_time(now, longest))
            except InterruptedError:
                continue
            if not events and not lot and self.heap_pending:  # idle for a whole wait
                self.release_heap()
            self._dispatch(handler, events)
        self._finish(handler, poller)

    def _dispatch(self, handler: Handler, events: list[tuple[int, int]]) -> None:
        """Serve the parked connections that became readable or reached their deadline."""
        lot = self.lot
        for fd, _ in events:
            conn = lot.take(fd)
            if conn is not None:
                self._advance(handler, conn)
            elif fd == self._wake_r:
                self.drain_wake()
        if lot:
            for conn in lot.expired(time.monotonic()):
                self._advance(handler, conn, expired=True)
        if not self.listening:
            self._update_listening()

    def _advance(self, handler: Handler, conn: Connection, expired: bool = False) -> None:
        """Serve a connection whose request is ready; park one still waiting for bytes."""
        try:
            state = handler.expire(conn) if expired else handler.poll_request(conn)
            if state == READY:
                handler.run(conn)
        except Exception:  # the handler contains what a request raises: a bug
            self.log.exception("Unexpected error serving a connection")
            state = CLOSE
        if state == READY:
            conn.close()
            self.count_request()
        elif state == WAIT:
            self._park(conn)
        else:
            conn.close()

    def _park(self, conn: Connection) -> None:
        if self.lot.park(conn) and self.lot.full:
            self._update_listening()

    def _update_listening(self) -> None:
        """Listen while the lot has room (and the listeners are open, and accept() is not
        paused for want of file descriptors)."""
        with self._closing:
            want = (
                self.alive
                and self._listeners_open
                and not self.lot.full
                and not self.accept_pause_left(time.monotonic())
            )
            if want == self.listening:
                return
            self.listening = want
            for listener in self.listeners:
                try:
                    if want:
                        self._poller.register(listener.sock.fileno(), select.EPOLLIN | _EXCLUSIVE)
                    else:
                        self._poller.unregister(listener.sock.fileno())
                except (OSError, ValueError, KeyError):
                    pass

    def _finish(self, handler: Handler, poller: select.epoll) -> None:
        """Stopping: serve what was accepted from the backlog, and let the parked
        connections finish (or reach their deadlines); accept nothing new."""
        while self.pending:
            client, addr, listener, accepted_at = self.pending.popleft()
            conn = self.make_connection(client, addr, listener, accepted_at)
            if conn is None:
                continue
            if conn.__class__ is not Connection:
                self.serve(handler, conn)
            else:
                self._advance(handler, conn)
        lot = self.lot
        while lot:
            now = time.monotonic()
            self.beat(now)
            try:
                events = poller.poll(lot.wait_time(now, 1.0))
            except InterruptedError:
                continue
            self._dispatch(handler, events)

    def serve(self, handler: Handler, conn: Connection) -> None:
        """Serve a connection whose head is read under its deadline (TLS)."""
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
            self.listening = False
            try:
                poller.unregister(sock)
            except (OSError, ValueError, KeyError):
                pass
