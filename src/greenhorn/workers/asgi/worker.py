"""The asgi worker (``-k asgi``): one asyncio event loop per process serving an ASGI 3 (or 2)
application over HTTP/1.1 and WebSockets, on the same master as the WSGI workers.

Why it is shaped like this:

- **Same life as every worker.** Boot, signals, heartbeat, ``max_requests`` and exiting are
  ``base.py``'s. Signals still go to the control thread; it reaches the loop through the
  wake pipe, which the loop watches like any socket. Lifespan startup runs as the last boot
  step (``before_serving``), so a worker counts as booted, and a reload retires the old
  generation, only once the application has started; a failed startup exits with the
  boot-error status and the master stops instead of respawning.
- **A sweep instead of timers.** Four times a second one callback beats the heartbeat (at
  most once a second), publishes the counters, expires connections whose phase deadline
  passed (head, keep-alive, body rate, a client that does not read) and notices a stop.
  A loop that stops turning therefore stops the heartbeat: the master aborts the worker
  after ``timeout`` seconds, as it would a stuck sync worker.
- **Naming the blocking request.** A watchdog thread notices when the sweep has not run for
  a second: the loop is blocked. It looks up the task the loop is running
  (``asyncio``'s current task, which is every request's own task) and writes that request
  into the scoreboard slot with the time the loop stopped turning. So the master's
  ``WORKER TIMEOUT`` line and the worker's abort line name it, and faulthandler's dump shows
  the blocking code. Requests that merely take long (a stream, a WebSocket) hold no slot,
  and no per-request timeout applies to them.
- **Fair, bounded accepting** (``accept.py``): a few connections per wakeup, so a burst
  spreads over the workers; ``worker_connections`` caps the connections one worker holds:
  at the cap it stops watching the listeners and starts again below it, so the kernel's
  backlog goes to a worker with room instead of queueing here.
- **Graceful stop.** TERM stops accepting (after taking the backlog the master asked to
  drain), closes idle keep-alive connections, lets requests in flight finish within
  ``graceful_timeout``, closes open WebSockets at once with 1001 (going away), then runs
  lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from greenhorn.ipc import exits
from greenhorn.ipc.scoreboard import BEAT_PERIOD, IN_FLIGHT, WS_OPEN
from greenhorn.workers.asgi.accept import Acceptor, ProxyFirst
from greenhorn.workers.asgi.connection import HttpConnection
from greenhorn.workers.asgi.shared import Shared
from greenhorn.workers.base import Worker, error_stream

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.http.proxy import ProxyHeader
    from greenhorn.observe.logger import Logger

__all__ = ["AsgiWorker"]

_T = TypeVar("_T")

TICK = 0.25  # seconds between sweeps
STALL = 1.0  # seconds without a sweep before the watchdog names the blocking request
_monotonic = time.monotonic


def new_loop(kind: str, log: Logger) -> asyncio.AbstractEventLoop | None:
    """An event loop for ``asgi_loop`` (None, logged, when uvloop is asked for but absent)."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                log.error("asgi_loop = uvloop needs uvloop: pip install uvloop")
                return None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            log.debug("Using the uvloop event loop")
            return loop
    return asyncio.new_event_loop()


class AsgiWorker(Worker):
    """Serve an ASGI application from an event loop. See the module docstring."""

    slot_holds_loop = True  # its slot is written only when the loop is blocked (the watchdog)
    speaks_http2 = True  # each stream a task (workers/asgi/http2.py)

    @classmethod
    def slots_for(cls, cfg: Config) -> int:
        return 1  # the request a blocked loop is stuck in (see the watchdog)

    def before_serving(self) -> int | None:
        from greenhorn.asgi.app import NotAnASGIApp, as_asgi3

        cfg = self.cfg
        try:
            app = as_asgi3(self.app)
        except NotAnASGIApp as exc:
            self.log.error("Failed to load application %r: %s", cfg.wsgi_app, exc)
            return exits.APP_LOAD_ERROR
        loop = new_loop(cfg.asgi_loop, self.log)
        if loop is None:
            return exits.WORKER_BOOT_ERROR
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.asgi = app
        self.lifespan: Any = None
        self.conns = 0
        self.max_conns = max(1, int(cfg.worker_connections))
        self.accepting = False
        self.acceptors: list[Acceptor] = []
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.last_tick = _monotonic()
        self.stall_lock = threading.Lock()
        self.stall_marked = False
        self.watching = True
        state: dict[str, Any] | None = None
        self.shared = shared = Shared(self, app, loop, None)
        self._configure(shared)
        loop.add_reader(self._wake_r, self._on_wake)
        self._schedule_tick()
        threading.Thread(target=self._watch, name="greenhorn-watchdog", daemon=True).start()
        if cfg.asgi_lifespan != "off":
            from greenhorn.asgi.lifespan import Lifespan, StartupFailed

            lifespan = Lifespan(app, cfg.asgi_lifespan, self.log)
            timeout = float(cfg.timeout) or None
            try:
                loop.run_until_complete(self._signals_first(lifespan.startup(timeout)))
            except StartupFailed as exc:
                self.log.error("ASGI lifespan startup failed: %s", exc)
                return exits.WORKER_BOOT_ERROR
            if lifespan.supported:
                self.lifespan = lifespan
                state = lifespan.state
        shared.state = state
        return None

    def _configure(self, shared: Shared) -> None:
        from greenhorn.wsgi.environ import ErrorsStream, base_environ, multiprocess

        log, cfg = self.log, self.cfg
        shared.base_environ = base_environ(
            multithread=False,
            errors=ErrorsStream(lambda: error_stream(log)),
            script_name=os.environ.get("SCRIPT_NAME"),
            multiprocess=multiprocess(cfg.workers, cfg.workers_max),
        )

    def adopt(self, client: socket.socket) -> None:
        """Serve an accepted connection (a PROXY header before TLS is read first)."""
        client.setblocking(False)
        if self.ssl_context is not None and self.shared.proxy_gate.on:
            ProxyFirst(self, client)
        else:
            self.connect(client, None)

    def connect(self, client: socket.socket, header: ProxyHeader | None) -> None:
        """Hand ``client`` to the loop (TLS handshake included) with its ``HttpConnection``."""
        self.loop.create_task(self._connect(client, header))

    async def _connect(self, client: socket.socket, header: ProxyHeader | None) -> None:
        contexts = self.tls_contexts
        ctx = None if contexts is None else contexts.current()  # renewed certificate files
        try:
            await self.loop.connect_accepted_socket(
                lambda: HttpConnection(self.shared, header),
                client,
                ssl=ctx,
                ssl_handshake_timeout=(float(self.cfg.header_timeout) or 30.0) if ctx else None,
            )
        except Exception as exc:  # a failed TLS handshake, a client already gone
            self.log.debug("Could not serve a connection: %r", exc)
            client.close()

    def connection_opened(self) -> None:
        self.conns += 1
        if self.conns >= self.max_conns and self.accepting:
            self._pause_accepting()

    def connection_closed(self) -> None:
        self.conns -= 1
        if not self.accepting and self.alive and self.conns < self.max_conns:
            self._resume_accepting()

    def _pause_accepting(self) -> None:
        self.accepting = False
        for acceptor in self.acceptors:
            acceptor.pause()

    def _resume_accepting(self) -> None:
        self.accepting = True
        for acceptor in self.acceptors:
            acceptor.start()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        loop = self.loop
        self.tmp.board.buffer()  # counters reach the master once a second and at exit
        try:
            loop.run_until_complete(self._main())
        finally:
            self.watching = False
            self.tmp.board.flush()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:
                pass
            loop.close()

    async def _signals_first(self, coro: Awaitable[_T]) -> _T:
        """Run ``coro`` once the signal pipe is ours again: uvloop takes the wakeup fd while
        its loop runs, and the control thread must keep seeing TERM, ABRT..."""
        self._signals.rearm()
        return await coro

    async def _main(self) -> None:
        self._signals.rearm()
        self.acceptors = [Acceptor(self, listener) for listener in self.listeners]
        self._resume_accepting()
        if not self.alive:
            self._request_stop()
        await self.stopped
        await self._shutdown()

    def _on_wake(self) -> None:
        self.drain_wake()
        if not self.alive:
            self._request_stop()

    def _request_stop(self) -> None:
        if not self.stopped.done():
            self.stopped.set_result(None)

    def _schedule_tick(self) -> None:
        self.loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        now = _monotonic()
        self.last_tick = self.shared.clock = now
        if self.stall_marked:
            with self.stall_lock:
                self.tmp.board.clear(0)
                self.stall_marked = False
        if now - self.tmp.last_beat >= BEAT_PERIOD:
            board = self.tmp.board
            shared = self.shared
            board.counters[IN_FLIGHT] = len(shared.cycles)
            board.counters[WS_OPEN] = len(shared.websockets)
            board.flush()
            self.beat(now)  # may find the master gone: alive = False
            if self.heap_pending and not shared.cycles:
                self.release_heap()
        expired = [
            c for c in self.shared.connections if c.deadline is not None and c.deadline <= now
        ]
        for conn in expired:
            try:
                conn.expire(now)
            except Exception:
                self.log.exception("Error expiring a connection")
        if not self.alive:
            self._request_stop()
        self._schedule_tick()

    async def _shutdown(self) -> None:
        shared = self.shared
        shared.stopping = True
        self._pause_accepting()
        for acceptor in self.acceptors:
            acceptor.close()
        self.close_listeners(drain=False)  # no-op when the control thread did it
        while self.pending:  # connections taken from the backlog on TERM: serve them
            client, _addr, _listener, _at = self.pending.popleft()
            self.adopt(client)
        for conn in list(shared.connections):
            conn.stop()
        for session in list(shared.websockets):
            session.going_away()
        deadline = _monotonic() + float(self.cfg.graceful_timeout)
        while (shared.connections or shared.cycles) and _monotonic() < deadline:
            await asyncio.sleep(0.05)
            for conn in list(shared.connections):
                conn.stop()
        if shared.connections or shared.cycles:
            self.log.warning(
                "Graceful timeout: closing %d connections, cancelling %d requests",
                len(shared.connections),
                len(shared.cycles),
            )
            for task in list(shared.cycles):
                task.cancel()
            for conn in list(shared.connections):
                conn.abort()
            await asyncio.sleep(0)
        if self.lifespan is not None:
            await self.lifespan.shutdown(max(1.0, deadline - _monotonic()))

    # -- the watchdog (its own thread) ------------------------------------------------------

    def _watch(self) -> None:
        """Write the request a blocked loop is stuck in into scoreboard slot 0."""
        while self.watching:
            time.sleep(TICK * 2)
            since = self.last_tick
            if self.stall_marked or _monotonic() - since < STALL:
                continue
            line = self._running_request()
            if line is None:
                continue
            with self.stall_lock:
                if self.last_tick == since and not self.stall_marked:
                    self.tmp.board.start(0, line[0], line[1], since)
                    self.stall_marked = True

    def _running_request(self) -> tuple[str, str] | None:
        """(method, target) of the request whose task the loop is running, if any."""
        tasks = sys.modules.get("asyncio.tasks")
        current = getattr(tasks, "_current_tasks", {}).get(self.loop) if tasks else None
        if current is None:
            return ("-", "(the event loop, outside any request)")
        cycle = self.shared.cycles.get(current)
        if cycle is None:
            return ("-", f"(task {getattr(current, 'get_name', lambda: '?')()})")
        return cycle.req.method, cycle.req.uri
