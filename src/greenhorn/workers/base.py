"""The worker's life in the child process, shared by every worker type (no HTTP here).

Why: booting, signals, heartbeat, request counting and exiting are the same whether requests
are served by one loop, a thread pool or greenlets. Worker types subclass ``Worker`` once and
implement ``run()``; everything about a request is in ``handler.py``.

Lifecycle, in the child right after ``fork()``::

    init_process: title → privileges → signals (queue-only) → load app → post_worker_init
                  → mark booted → run() → exit

Signals never do work in signal context: CPython's C handler writes the signal number to a
pipe (``ipc.signals.SignalPipe``) and a small *control thread* reads it. That thread can act while
the request loop is busy: on TERM it closes the listening sockets at once (after accepting
the kernel's backlog when the master asked for a drain), so a stopping server refuses new
connections immediately instead of letting them queue behind a slow request. On ABRT (a
timeout) ``faulthandler`` has already dumped every thread's stack from C, even if the loop is
stuck in C code; the control thread then logs the request in flight, runs ``worker_abort``
and exits. The control thread never beats the heartbeat: only the request loop does.
"""

from __future__ import annotations

import array
import atexit
import errno
import faulthandler
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, ClassVar, NoReturn, Protocol

from greenhorn.config import hooks
from greenhorn.http.parser import Limits
from greenhorn.http.uwsgi import UwsgiParser
from greenhorn.ipc import exits, titles
from greenhorn.ipc.scoreboard import (
    BEAT_PERIOD,
    BOOTED,
    DRAIN,
    DRAIN_FINAL,
    EXIT_REASON,
    RELOAD,
    WorkerTmp,
)
from greenhorn.ipc.signals import WORKER_IGNORED, WORKER_SIGNALS, SignalPipe
from greenhorn.workers import heap
from greenhorn.workers.connection import Connection, TimeoutConnection
from greenhorn.workers.privileges import drop_privileges

if TYPE_CHECKING:
    import ssl

    from greenhorn.config import Config, HookWorker
    from greenhorn.config.addresses import Address
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.connection import SockAddr
    from greenhorn.workers.reload_watcher import Watched
    from greenhorn.workers.tls import Contexts
    from greenhorn.wsgi.app import AppSource, WSGIApp

__all__ = [
    "ACCEPT_PAUSE",
    "NO_RESOURCES",
    "STOP_KEEPALIVE",
    "Listening",
    "Worker",
    "limits_from",
]

# How long a stopping worker keeps a kept-alive connection open (at most its keepalive):
# its last response announced keep-alive, so the client may already be sending the next
# request; that one is answered with "Connection: close" rather than cut (RFC 9112 9.6).
STOP_KEEPALIVE = 2.0

# accept() failing for want of resources (file descriptors, kernel memory) stops accepting
# for this long: the connections already open are served meanwhile, new ones wait in the
# kernel's listen queue (or go to a sibling worker). Retrying at once would spin.
ACCEPT_PAUSE = 0.5
NO_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_socket_class = socket.socket
_STREAM = int(socket.SOCK_STREAM)


class Listening(Protocol):
    """A listening socket as a worker sees it (the master's ``listeners.Listener``)."""

    @property
    def sock(self) -> socket.socket: ...

    @property
    def address(self) -> Address: ...

    @property
    def port(self) -> int | None: ...


class InFlight(Protocol):
    """The requests a worker is serving, as its control thread sees them on a timeout
    (``workers.handler.Handler``)."""

    def answer_aborted(self) -> int:
        """Answer every request in flight that has sent nothing yet with an error status
        (the worker is about to die under it); return how many were answered."""
        ...


# A connection accepted from the backlog while stopping: (socket, peer, listener, when).
Accepted = tuple[socket.socket, "SockAddr", Listening, float]


def limits_from(cfg: Config) -> Limits:
    """The parser's limits from the settings."""
    return Limits(
        max_line=cfg.limit_request_line,
        max_fields=cfg.limit_request_fields,
        max_field_size=cfg.limit_request_field_size,
        header_map=cfg.header_map,
        forwarders=frozenset(cfg.forwarder_headers),
        permit_obsolete_folding=cfg.permit_obsolete_folding,
        casefold_http_method=cfg.casefold_http_method,
        permit_unconventional_http_method=cfg.permit_unconventional_http_method,
        permit_unconventional_http_version=cfg.permit_unconventional_http_version,
        strip_header_spaces=cfg.strip_header_spaces,
        max_body=cfg.limit_request_body,
    )


class Worker:
    """One worker process. The master builds it, forks, and the child calls init_process."""

    # A request in flight holds this worker type's loop (no heartbeat until it ends): the
    # master times the request, not the heartbeat (``master.policy.kills``). Worker types
    # whose loop keeps beating under requests (threads, greenlets) leave it False, and a
    # request of theirs running past ``timeout`` is logged as a warning instead.
    slot_holds_loop: ClassVar[bool] = False

    # Serves HTTP/2 when ``http_protocols`` asks for it (gthread, gevent, asgi); others offer
    # only HTTP/1.1, and the master warns when h2 is asked of them.
    speaks_http2: ClassVar[bool] = False

    def __init__(
        self,
        age: int,
        ppid: int,
        listeners: Sequence[Listening],
        app: WSGIApp | None,
        cfg: Config,
        log: Logger,
        tmp: WorkerTmp,
        source: AppSource | None = None,
    ) -> None:
        self.age = age
        self.pid: int | str = "[booting]"
        self.ppid = ppid
        self.listeners = listeners
        self.app = app
        self.source = source  # the Python API's application object, which loads the app
        self.wsgi: WSGIApp = app if app is not None else _not_loaded  # set once loaded
        self.cfg = cfg
        self.log = log
        self.tmp = tmp
        self.timeout = cfg.timeout
        self.alive = True
        self.booted = False
        self.nr = 0
        self.heap_pending = False  # a large request body was freed: see heap.py
        jitter = random.randint(0, cfg.max_requests_jitter) if cfg.max_requests_jitter else 0
        self.max_requests = cfg.max_requests + jitter if cfg.max_requests > 0 else sys.maxsize
        self.limits = limits_from(cfg)
        self.uwsgi = cfg.protocol == "uwsgi"  # connections speak uwsgi packets, not HTTP/1.x
        self.pending: deque[Accepted] = deque()  # connections accepted from the backlog on stop
        # master-side bookkeeping (the same object lives in the master's WORKERS table)
        self.server: object = None  # the arbiter (gunicorn's worker.server)
        self.generation = 0  # the HUP generation it belongs to
        self.lifetime = 0.0  # seconds it may live (max_worker_lifetime + jitter), 0: forever
        self.spawned_at = time.monotonic()
        self.aborted_at: float | None = None
        self.retire_reason: str | None = None  # why the master asked it to stop
        self.recycle_reason: str | None = None  # why the scaler replaces it (memory, lifetime)
        self.exit_reason: str | None = None  # what the master knows of its end (timeout...)
        # child-side
        self._signals = SignalPipe()
        self._wake_r = -1
        self._wake_w = -1
        self._closing = threading.Lock()
        self._listeners_open = True
        self.ssl_context: ssl.SSLContext | None = None  # built in the child with certfile
        self.tls_contexts: Contexts | None = None  # ... and renewed (``tls.Contexts``)
        self._families: dict[int, int] = {}  # listening fd -> address family (int)
        self.sigmask: set[int | signal.Signals] | None = (
            None  # the mask to restore once handlers are in
        )
        self._server_names: dict[Listening, tuple[str, str]] = {}  # listener -> SERVER_NAME/PORT
        self.in_flight: InFlight | None = None  # the handler, once the worker type built it
        self.stack_of: Callable[[int], str | None] = _no_stack  # a slot's stack (late warning)
        self._warned: dict[int, float] = {}  # slot -> start of the late request logged
        # requests served past the scoreboard's slots (a green worker's HTTP/2 streams),
        # under negative ids: id -> (started, "METHOD target"), timed like the slots
        self.off_board: dict[int, tuple[float, str]] = {}
        self.accept_paused_until = 0.0  # accept() failed for want of resources: not before
        self.refused = 0  # such failures since accepting last worked (logged once)

    def __repr__(self) -> str:
        return f"<Worker {self.pid}>"

    # -- gunicorn's names ------------------------------------------------------------------

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (gunicorn's ``worker.sockets``)."""
        return [listener.sock for listener in self.listeners]

    @property
    def aborted(self) -> bool:
        """The master sent it SIGABRT after ``timeout`` (gunicorn's ``worker.aborted``)."""
        return self.aborted_at is not None

    def notify(self) -> None:
        """Beat the heartbeat now (gunicorn's ``worker.notify()``); the request loops beat
        on their own, at most once a second."""
        self.tmp.beat()

    # -- boot ------------------------------------------------------------------------------

    def init_process(self) -> NoReturn:
        """Run the worker in the child; never returns."""
        code = exits.EXIT_OK
        try:
            code = self._boot_and_run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else exits.EXIT_FAILURE
        except BaseException:
            self.log.exception("Exception in worker process")
            code = exits.WORKER_BOOT_ERROR if not self.booted else exits.EXIT_FAILURE
        self.exit(code)

    def _boot_and_run(self) -> int:
        from greenhorn.wsgi.app import AppImportError, app_label, exit_status, load_configured

        self.pid = os.getpid()
        cfg = self.cfg
        titles.set_title(titles.worker_title(cfg.proc_name or cfg.default_proc_name))
        random.seed()
        if cfg.reuse_port:  # a socket of its own next to each shared one, bound as the master
            from greenhorn.workers.reuse_port import own_listeners

            self.listeners = [
                *self.listeners,
                *own_listeners(self.listeners, cfg.backlog, self.log),
            ]
        drop_privileges(cfg.user, cfg.group, cfg.initgroups)
        self.init_signals()
        self.tmp.beat()
        if self.app is None:
            try:
                self.app = load_configured(cfg, self.source)
            except AppImportError as exc:
                self.log.error("Failed to load application %r: %s", app_label(cfg), exc)
                self.log.debug("Application import error", exc_info=exc)
                return exit_status(exc)
        self.wsgi = self.app
        if cfg.certfile:
            from greenhorn.workers import tls

            alpn = self.alpn_protocols()
            self.tls_contexts = tls.Contexts(cfg, self.log, lambda: tls.server_context(cfg, alpn))
            self.ssl_context = self.tls_contexts.context
        if cfg.reload:
            from greenhorn.workers import reload_watcher as reload

            reload.start_watching(self)
        try:
            hooks.call_hook(cfg, "post_worker_init", self, propagate=True)
        except Exception:
            self.log.exception("post_worker_init hook failed")
            return exits.WORKER_BOOT_ERROR
        code = self.before_serving()
        if code is not None:
            return code
        self.booted = True
        self.tmp.board.counters[BOOTED] = 1
        self.run()
        return exits.EXIT_OK

    def init_signals(self) -> None:
        """Queue-only handlers, faulthandler for ABRT, and the control thread."""
        for sig in WORKER_IGNORED:
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        fd = self._signals.install(WORKER_SIGNALS)
        stream = error_stream(self.log)
        # On SIGABRT faulthandler dumps every thread from C (even if the loop is stuck in C),
        # restores the previous handler (ours, queue-only) and re-raises, so the control
        # thread still sees ABRT and finishes the job.
        faulthandler.enable(file=stream, all_threads=True)
        # created while signals are still blocked, the control thread keeps them blocked:
        # the kernel delivers them to the main thread, whose C handler writes the pipe
        thread = threading.Thread(
            target=self._control_loop, args=(fd,), name="greenhorn-control", daemon=True
        )
        thread.start()
        if self.sigmask is not None:  # blocked by the master around fork(): deliver now
            signal.pthread_sigmask(signal.SIG_SETMASK, self.sigmask)

    # -- control thread ----------------------------------------------------------------------

    def _control_loop(self, fd: int) -> None:
        import select

        while True:
            try:
                select.select([fd], [], [])
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return
            for sig in self._signals.read():
                try:
                    self.on_signal(sig)
                except Exception:  # the thread must live: it is how the worker is stopped
                    self.log.exception("Error handling signal %s in the worker", sig)

    def on_signal(self, sig: int) -> None:
        """React to one signal (control thread; the request loop may be busy)."""
        if sig == signal.SIGTERM:
            # drain first, then stop the loop: a loop that saw alive False before the
            # drain was done could leave with connections accepted for it unserved
            drain = self.tmp.board.counters[DRAIN]
            try:
                self.close_listeners(drain=bool(drain), final=drain == DRAIN_FINAL)
            finally:
                self.alive = False
                self.wake()
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            self.alive = False
            hooks.call_hook(self.cfg, "worker_int", self, log=self.log)
            self.exit(exits.EXIT_OK)
        elif sig == signal.SIGUSR1:
            self.log.reopen_files()
            # the dump target moved with the reopened file
            faulthandler.enable(file=error_stream(self.log), all_threads=True)
        elif sig == signal.SIGABRT:
            self.alive = False
            current = self.requests_in_flight()
            if current:
                _, started, line = min(current, key=lambda request: request[1])
                self.log.critical(
                    "Worker timeout: aborting while serving %s (for %.1fs)",
                    line,
                    time.monotonic() - started,
                )
            self.log_green_stacks()
            self.answer_aborted()
            hooks.call_hook(self.cfg, "worker_abort", self, log=self.log)
            self.exit(exits.WORKER_ABORTED)
        # HUP and WINCH are ignored by workers.

    def answer_aborted(self) -> None:
        """On a timeout abort: the clients of requests that have sent nothing yet get an
        error status rather than an empty reply (``Handler.answer_aborted``)."""
        in_flight = self.in_flight
        if in_flight is None:
            return
        try:
            answered = in_flight.answer_aborted()
        except Exception:
            self.log.exception("Could not answer the requests in flight")
            return
        if answered:
            self.log.info("Answered %d request(s) in flight with 500", answered)

    def log_green_stacks(self) -> None:
        """faulthandler dumps OS threads only; under gevent/eventlet the request that hangs
        cooperatively lives in a greenlet, so log every greenlet's stack as well."""
        greenlet = sys.modules.get("greenlet")
        if greenlet is None:
            return
        import gc
        import traceback

        stacks = []
        for obj in gc.get_objects():
            if isinstance(obj, greenlet.greenlet) and obj.gr_frame is not None:
                stacks.append("".join(traceback.format_stack(obj.gr_frame)))
        if stacks:
            self.log.critical("Greenlet stacks (%d):\n%s", len(stacks), "\n".join(stacks).rstrip())

    def close_listeners(self, drain: bool, final: bool = False) -> None:
        """Stop listening. With ``drain``, first accept what the kernel already queued.

        With ``final`` (a full stop: no other master shares the sockets) the port first
        stops taking new connections (``stop_new_connections``), so that the last accept
        empties the queue for good: a connection the kernel completed after it would be
        reset by the close, under a request its client has already sent. Handshakes
        already under way still complete: the accepts go on until none came for
        ``HANDSHAKE_GRACE``. Clients that connect from then on are refused, as they would
        be a moment later anyway."""
        with self._closing:
            if not self._listeners_open:
                return
            self._listeners_open = False
            for listener in self.listeners:
                sock = listener.sock
                if drain:
                    grace = HANDSHAKE_GRACE if final and stop_new_connections(sock) else 0.0
                    sock.setblocking(False)  # green sockets would wait for a new client
                    quiet_since = time.monotonic()
                    while True:
                        try:
                            client, addr = sock.accept()
                        except BlockingIOError:
                            if time.monotonic() - quiet_since >= grace:
                                break
                            time.sleep(0.002)
                            continue
                        except OSError:
                            break
                        quiet_since = time.monotonic()
                        self.pending.append((client, addr, listener, quiet_since))
                self.forget_listener(sock)
                try:
                    sock.close()
                except OSError:
                    pass

    def forget_listener(self, sock: socket.socket) -> None:
        """Hook for worker types that registered listeners with a poller."""

    def wake(self) -> None:
        """Wake the request loop if it is waiting (control thread side)."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def drain_wake(self) -> None:
        """Empty the wake pipe (request loop side; called after the poller saw it)."""
        try:
            os.read(self._wake_r, 4096)
        except OSError:
            pass

    def accept(self, listener: Listening) -> tuple[socket.socket, SockAddr] | None:
        """Accept one connection, or None (nothing queued, or listeners closed).

        ``socket.accept()`` converts family and type to enums on every call; going through
        ``_accept`` with the plain ints saves a dozen Python calls per connection."""
        with self._closing:
            if not self._listeners_open:
                return None
            sock = listener.sock
            try:
                fd, addr = sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return None
            except OSError as exc:
                if exc.errno not in NO_RESOURCES:
                    raise
                self.pause_accepting(exc)
                return None
            if self.refused:
                self.accepting_again()
            lfd = sock.fileno()
            family = self._families.get(lfd)
            if family is None:
                family = self._families[lfd] = int(sock.family)
            return _socket_class(family, _STREAM, 0, fd), addr

    def pause_accepting(self, exc: OSError) -> None:
        """accept() failed for want of resources (EMFILE...): accept nothing for
        ``ACCEPT_PAUSE`` seconds. Logged once, until accepting works again; the worker type
        stops watching its listeners meanwhile (``accept_pause_left``)."""
        self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
        if not self.refused:
            self.log.warning(
                "Cannot accept connections: %s; trying again every %ss, serving the "
                "connections already open",
                exc.strerror or exc,
                ACCEPT_PAUSE,
            )
        self.refused += 1

    def accepting_again(self) -> None:
        self.log.info("Accepting connections again (accept() failed %d times)", self.refused)
        self.refused = 0

    def accept_pause_left(self, now: float) -> float:
        """Seconds until accepting may be tried again (0.0: now)."""
        return max(0.0, self.accept_paused_until - now)

    # -- helpers for worker types ----------------------------------------------------------

    def make_connection(
        self,
        client: socket.socket,
        addr: SockAddr,
        listener: Listening,
        accepted_at: float,
        cls: type[Connection] = Connection,
    ) -> Connection | None:
        """Wrap an accepted socket; for TLS, do the handshake here (in the thread or greenlet
        that will serve it) under the header deadline. None when the handshake fails."""
        server = self._server_names.get(listener)
        if server is None:
            server = self.server_name(listener)
        parser = UwsgiParser(self.limits) if self.uwsgi else None
        contexts = self.tls_contexts
        if contexts is None:
            return cls(client, addr, server, self.limits, accepted_at, "http", parser)
        from greenhorn.workers import tls

        deadline = accepted_at + (float(self.cfg.header_timeout) or 30.0)
        self.ssl_context = ctx = contexts.current()  # renewed certificate files
        tls_sock = tls.handshake(ctx, client, deadline, self.cfg, self.log)
        if tls_sock is None:
            return None
        conn = TimeoutConnection(tls_sock, addr, server, self.limits, accepted_at, "https", parser)
        header = tls.proxy_header(tls_sock)  # a PROXY header comes before TLS
        if header is not None:
            conn.apply_proxy(header)
        return conn

    def alpn_protocols(self) -> list[str]:
        """What TLS offers by ALPN: ``http_protocols`` in order when this type speaks
        HTTP/2 and h2 is asked for, else nothing (HTTP/1.1)."""
        if not self.speaks_http2:
            return []
        from greenhorn.http.http2 import alpn

        return alpn(list(self.cfg.http_protocols))

    def request_reload(self, reason: str) -> None:
        """Ask the master for a graceful reload (new generation of workers), e.g. after a
        source file changed under ``--reload``. The master reads the flag once a second."""
        self.log.info("Worker reloading: %s", reason)
        self.tmp.board.counters[RELOAD] = 1

    def server_name(self, listener: Listening) -> tuple[str, str]:
        """SERVER_NAME and SERVER_PORT for requests without a Host (cached per listener)."""
        address = listener.address
        host = getattr(address, "host", None) or "localhost"
        port = getattr(listener, "port", None) or getattr(address, "port", None) or ""
        server = self._server_names[listener] = (str(host), str(port))
        return server

    def release_heap(self) -> None:
        """Idle after a large request body: give the freed heap back to the OS (heap.py)."""
        self.heap_pending = False
        heap.release()

    def beat(self, now: float) -> None:
        """Heartbeat from the request loop, every ``BEAT_PERIOD``; also notice when the
        master is gone (a worker never serves on as an orphan), and log the requests that
        run past ``timeout`` on a worker whose loop beats while they run."""
        if now - self.tmp.last_beat >= BEAT_PERIOD:
            self.tmp.beat(now)
            if os.getppid() != self.ppid and self.alive:
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
                self.close_listeners(drain=False)
            if self.timeout and not self.slot_holds_loop:
                self.warn_late_requests(now)

    def warn_late_requests(self, now: float) -> None:
        """Log each request that has run past ``timeout`` once, as a warning with its
        stack. It runs on: the master aborts a worker only when its loop stops beating."""
        warned = self._warned
        timeout = self.timeout
        for slot, started, line in self.requests_in_flight():
            if now - started <= timeout or warned.get(slot) == started:
                continue
            warned[slot] = started
            stack = self.stack_of(slot)
            self.log.warning(
                "Request running for %.1fs, past the %ss timeout: %s%s",
                now - started,
                timeout,
                line,
                f"\n{stack.rstrip()}" if stack else "",
            )

    def requests_in_flight(self) -> list[tuple[int, float, str]]:
        """(slot, started, "METHOD target") of each request in flight: the scoreboard's,
        and those served past its slots (``off_board``, negative ids)."""
        current = self.tmp.board.current()
        if self.off_board:
            current += [(slot, *request) for slot, request in list(self.off_board.items())]
        return current

    def count_request(self) -> None:
        self.nr += 1
        if self.nr >= self.max_requests:
            self.max_requests_reached()

    def max_requests_reached(self) -> None:
        """Leave after the current request (``max_requests``): the master starts another."""
        if self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.tmp.board.counters[EXIT_REASON] = 1
            self.alive = False
            self.close_listeners(drain=False)

    def before_serving(self) -> int | None:
        """The worker type's last boot step, after ``post_worker_init`` and before the
        worker counts as booted (the asgi worker runs lifespan startup here). An exit
        status stops the boot: ``exits.WORKER_BOOT_ERROR`` makes the master stop."""
        return None

    def for_hooks(self) -> HookWorker:
        """The worker object hooks receive: this one (a worker class written for gunicorn
        hands over the object of that class instead, ``workers/guest.py``)."""
        return self

    def run(self) -> None:
        raise NotImplementedError

    def exit(self, code: int) -> NoReturn:
        """Leave the child process: worker_exit hook, atexit handlers, flush, _exit."""
        try:
            self.tmp.board.flush()  # counters a sync worker still buffers
        except Exception:
            pass
        try:
            self.log.info("Worker exiting (pid: %s)", self.pid)
        except Exception:
            pass
        try:
            hooks.call_hook(self.cfg, "worker_exit", self.server, self, log=self.log)
        except Exception:  # the logger itself failed: leave anyway
            pass
        try:
            atexit._run_exitfuncs()
        except Exception:
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


# How long the final drain waits for handshakes that were under way when the port stopped
# taking SYNs (the last ACK is one round trip away; on a LAN or loopback, far less).
HANDSHAKE_GRACE = 0.025

# A classic BPF program for the listening socket (SO_ATTACH_FILTER), which sees a packet
# from its TCP header on: drop a SYN, keep the rest. A handshake's last ACK passes, so a
# connection the kernel had already answered still completes (a drop-all filter lost it:
# the client, connected, sent its request into a connection the close then reset).
# Built at import, in an array whose address stays put: a worker that dropped privileges
# (--user) may no longer be able to read the interpreter's library to import ctypes.
_SO_ATTACH_FILTER = 26
_DROP_SYN = array.array(
    "B",
    struct.pack("HBBI", 0x30, 0, 0, 13)  # BPF_LD | BPF_B | BPF_ABS: the TCP flags byte
    + struct.pack("HBBI", 0x45, 0, 1, 0x02)  # BPF_JMP | BPF_JSET | BPF_K: SYN? next : skip
    + struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET: drop
    + struct.pack("HBBI", 0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET: keep the whole packet
)


def stop_new_connections(sock: socket.socket) -> bool:
    """Make a listening TCP socket drop every SYN, so that the kernel starts no new
    connection on it (a client's SYN goes unanswered, and its retry finds the port closed);
    handshakes already answered complete. The filter stays on the socket for good: only for
    a full stop of sockets this server bound itself (``Listeners.all_bound_here``). False
    where it cannot be done (not Linux, not TCP); the stop then proceeds as before."""
    if sys.platform != "linux" or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    fprog = struct.pack("@HP", len(_DROP_SYN) // 8, _DROP_SYN.buffer_info()[0])
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def _no_stack(slot: int) -> str | None:
    return None


def _not_loaded(environ: dict[str, object], start_response: object) -> list[bytes]:
    raise RuntimeError("the application is not loaded yet")


def error_stream(log: Logger) -> IO[str]:
    """The error log's stream (``Logger.error_stream``), stderr for loggers without one."""
    stream_of = getattr(log, "error_stream", None)
    stream = stream_of() if callable(stream_of) else None
    return stream if stream is not None else sys.stderr


if TYPE_CHECKING:  # the worker is what hooks, the handler and the reload watcher expect

    def _hooks_see_a_worker(worker: Worker) -> HookWorker:
        return worker

    def _the_watcher_watches_a_worker(worker: Worker) -> Watched:
        return worker
