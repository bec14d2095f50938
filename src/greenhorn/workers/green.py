"""The request loop shared by the gevent and eventlet workers.

Why one module for both: the two libraries differ only in how they spawn, pool and sleep.
Each worker module supplies a tiny ``Backend`` with those three operations (and does its
monkey-patching in ``setup()``, in the master, before anything imports the application:
gunicorn #1816, #2796); this module runs the same loop for both on top of the one
connection handler.

- One acceptor greenlet per listener; at most ``worker_connections`` connections are served
  at once (the acceptor waits for room in the pool instead of hoarding the backlog).
- A kept-alive connection waits for its next request inside its own greenlet, up to
  ``keepalive`` seconds.
- The heartbeat is written by a loop in the main greenlet: if application code blocks the
  hub, the heartbeat stops and the master aborts the worker, naming the request it was on.
  A request that waits cooperatively past ``timeout`` leaves the hub free: it is logged
  once as a warning with its greenlet's stack, and runs on (gunicorn's meaning of
  ``timeout`` for these workers; aborting would cut every other connection).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from greenhorn.ipc.scoreboard import BEAT_PERIOD, IN_FLIGHT
from greenhorn.workers.base import ACCEPT_PAUSE, NO_RESOURCES, STOP_KEEPALIVE
from greenhorn.workers.connection import TimeoutConnection
from greenhorn.workers.handler import Handler
from greenhorn.workers.http2 import Http2, serve_stream_on
from greenhorn.workers.http2 import wanted as http2_wanted

if TYPE_CHECKING:
    import socket

    from greenhorn.http.http2.session import Stream
    from greenhorn.workers.base import Listening, Worker
    from greenhorn.workers.connection import SockAddr
    from greenhorn.workers.http2.connection import H2Connection

__all__ = ["Backend", "GreenPool", "run_green"]


class GreenPool(Protocol):
    """A pool of at most N greenlets (gevent's ``Pool``, eventlet's ``GreenPool``)."""

    def spawn(self, fn: Callable[..., object], *args: object) -> object: ...

    def free_count(self) -> int: ...


class Backend(Protocol):
    """What a green library must provide."""

    def pool(self, size: int) -> GreenPool: ...

    def sleep(self, seconds: float) -> None: ...

    def wait_free(self, pool: GreenPool) -> None: ...


def run_green(worker: Worker, backend: Backend) -> None:
    """Serve until the worker stops; then let in-flight connections finish."""
    GreenLoop(worker, backend).run()


class GreenLoop:
    """One green worker's loop: an acceptor per listener, a greenlet per connection, the
    heartbeat in the main greenlet."""

    def __init__(self, worker: Worker, backend: Backend) -> None:
        cfg = worker.cfg
        self.worker = worker
        self.backend = backend
        self.size = max(1, int(cfg.worker_connections))
        self.keepalive = float(cfg.keepalive)
        self.handler = Handler.for_worker(worker, keep_alive=self.keepalive > 0, multithread=True)
        self.pool = backend.pool(self.size)
        self.slots: deque[int] = deque(range(worker.tmp.board.slots))
        self.greenlets: dict[int, object] = {}  # slot -> the greenlet serving it
        self.off_board_ids: list[int] = []  # ids of finished streams past the slots, free
        worker.stack_of = self.stack_of
        self.http2: Http2 | None = None
        if worker.speaks_http2 and http2_wanted(cfg):
            # an HTTP/2 connection is read in its own greenlet; each stream gets one from a
            # pool that never blocks the reader (streams are bounded per connection)
            self.http2 = Http2(worker, self.handler, _read_h2, self._spawn_stream)
            self.handler.http2 = self.http2
            self.serve_stream = serve_stream_on(self.handler)
            per_conn = max(1, int(cfg.http2_max_concurrent_streams))
            self.streams = backend.pool(self.size * per_conn)

    def run(self) -> None:
        worker, backend = self.worker, self.backend
        for listener in worker.listeners:
            backend.pool(1).spawn(self.acceptor, listener)
        interval = BEAT_PERIOD if not worker.timeout else min(BEAT_PERIOD, worker.timeout / 2.0)
        while worker.alive:
            worker.beat(time.monotonic())
            backend.sleep(interval)
        while worker.pending:  # accepted from the backlog when the stop began
            self.pool.spawn(self.handle, *worker.pending.popleft())
        if self.http2 is not None:  # GOAWAY: streams in flight finish, new ones are refused
            self.http2.stop()
        deadline = time.monotonic() + max(1.0, float(worker.cfg.graceful_timeout))
        while self.pool.free_count() < self.size and time.monotonic() < deadline:
            worker.beat(time.monotonic())
            backend.sleep(0.1)

    def acceptor(self, listener: Listening) -> None:
        """Accept on ``listener`` while the pool has room (never hoard the backlog)."""
        worker = self.worker
        sock = listener.sock
        try:
            sock.setblocking(True)
        except OSError:  # closed by a TERM that arrived while booting
            return
        while worker.alive:
            self.backend.wait_free(self.pool)
            if not worker.alive:
                return
            try:
                client, addr = sock.accept()
            except OSError as exc:
                if not worker.alive or sock.fileno() < 0:
                    return
                if exc.errno in NO_RESOURCES:  # out of descriptors: not again at once
                    worker.pause_accepting(exc)
                    self.backend.sleep(ACCEPT_PAUSE)
                continue
            if worker.refused:
                worker.accepting_again()
            self.pool.spawn(self.handle, client, addr, listener, time.monotonic())

    def handle(
        self, client: socket.socket, addr: SockAddr, listener: Listening, accepted_at: float
    ) -> None:
        """Serve one connection, kept alive up to ``keepalive`` between requests."""
        worker, slots = self.worker, self.slots
        slot = slots.popleft() if slots else 0
        conn = worker.make_connection(client, addr, listener, accepted_at, TimeoutConnection)
        if conn is None:
            slots.append(slot)
            return
        greenlets = self.greenlets
        greenlets[slot] = _current_greenlet()
        try:
            while True:
                # stopping: the last response said keep-alive, so wait a little for a
                # request the client may be sending already (answered with close)
                idle = self.keepalive if worker.alive else min(self.keepalive, STOP_KEEPALIVE)
                requests = conn.requests
                keep = self.handler.serve(conn, slot, idle=idle)
                if conn.requests != requests:  # a request was served (not: the client left,
                    worker.count_request()  # a bad head, HTTP/2, which counts its streams)
                if not keep:
                    break
        except BaseException as exc:  # the handler contains what a request raises: a bug
            if isinstance(exc, self.handler.leave):
                raise
            worker.log.exception("Unexpected error serving a connection")
        finally:
            greenlets.pop(slot, None)
            conn.close()
            slots.append(slot)

    def _spawn_stream(self, conn: H2Connection, stream: Stream) -> None:
        self.streams.spawn(self._run_stream, conn, stream)

    def _run_stream(self, conn: H2Connection, stream: Stream) -> None:
        """One HTTP/2 stream in a greenlet of its own, on a scoreboard slot while one is
        free. Past ``worker_connections`` slots it runs under a negative id, timed in the
        worker's ``off_board`` (the late-request warning and the abort see it, as a slot)
        and counted in the scoreboard's IN_FLIGHT gauge (the master cannot name it)."""
        slots = self.slots
        worker = self.worker
        if slots:
            slot = slots.popleft()
        else:  # an id of a stream past the slots that finished, or a new one
            slot = self.off_board_ids.pop() if self.off_board_ids else -1 - len(worker.off_board)
            req = stream.req
            worker.off_board[slot] = (time.monotonic(), req.method + " " + req.uri)
            worker.tmp.board.counters[IN_FLIGHT] += 1
        self.greenlets[slot] = _current_greenlet()
        try:
            self.serve_stream(conn, stream, slot)
            worker.count_request()
        finally:
            self.greenlets.pop(slot, None)
            if slot >= 0:
                slots.append(slot)
            else:
                del worker.off_board[slot]
                self.off_board_ids.append(slot)
                worker.tmp.board.counters[IN_FLIGHT] -= 1

    def stack_of(self, slot: int) -> str | None:
        """The stack of the greenlet serving ``slot`` (the late-request warning)."""
        frame: FrameType | None = getattr(self.greenlets.get(slot), "gr_frame", None)
        return "".join(traceback.format_stack(frame)) if frame is not None else None


def _read_h2(conn: H2Connection) -> None:
    conn.serve()  # in the connection's greenlet, until the connection ends


def _current_greenlet() -> object:
    greenlet = sys.modules.get("greenlet")
    getcurrent = getattr(greenlet, "getcurrent", None)
    return getcurrent() if getcurrent is not None else None
