"""THE connection handler: bytes → http → WSGI → bytes, for every worker type.

Why one handler: gunicorn writes the request cycle three times (sync, async, gthread) and the
copies drift. Here each worker type only decides *when* a connection is served (accept loop,
thread pool, greenlet); ``Handler.serve`` does the rest: read the head under a deadline,
build the environ, call the application, write the response with correct framing, log, count,
and say whether the connection may carry another request.

Two ways in, one request cycle:

- ``poll_request`` + ``run`` (sync and gthread workers, plain sockets): ``poll_request`` never
  waits. It takes what the client has sent so far and says READY (a complete head, and a
  small body or the first ``body_buffer_size`` bytes of a larger one: ``run`` it now), WAIT
  (park the connection until it is readable again or ``conn.deadline``; ``expire`` then) or
  CLOSE. So a slow or silent client waits in the worker's poller and never holds the worker
  or a thread; the application runs only for a request whose head is complete. On the
  common path (the whole request came with the connection) it costs one ``recv``.
- ``serve`` (gevent and eventlet greenlets, TLS connections): receives the head under its
  deadline, blocking the greenlet or thread, then ``run``.

Failure rules:

- A protocol error answers with the error's own status (``errors.HTTPError.code``) and
  closes; the worker lives. Nothing after a bad request is parsed.
- An application error before the response head is sent answers 500 (traceback in the error
  log). After the head is sent, the connection is closed mid-body: the client sees a
  truncated response rather than a wrong one (a chunked body then lacks its last chunk).
  "Error" means any exception, ``SystemExit`` and ``asyncio.CancelledError`` included: a
  request cannot end its worker (gunicorn answers 500 to ``sys.exit()`` too). Only a
  greenlet being killed (``GreenletExit``) passes through.
- A ``pre_request`` hook that raises is answered like an application error (500, traceback
  logged, the application is not called); a ``post_request`` hook or the access log that
  raises is logged only. Nothing raised while serving a request leaves ``serve``.
- A bad status or header from the application is never sent (500 instead).
- The iterable's ``close()`` is always called, also when the client went away.
- On a timeout abort the control thread answers every request in flight that has sent
  nothing yet with 500 (``answer_aborted``), so the client does not get an empty reply.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from greenhorn.config import hooks
from greenhorn.http import errors, proxy
from greenhorn.http.body import Data, EndOfMessage
from greenhorn.http.parser import EOF, NEED_DATA, Request
from greenhorn.http.response import CONTINUE, InvalidResponse, error_response
from greenhorn.http.uwsgi import UwsgiRequest
from greenhorn.ipc.scoreboard import REJECTED, Scoreboard
from greenhorn.workers.base import error_stream
from greenhorn.workers.connection import RECV_SIZE, Connection, EarlyBody, Timeout
from greenhorn.workers.heap import LARGE_BODY
from greenhorn.workers.hook_request import RequestView, address
from greenhorn.workers.proxy_gate import ProxyGate
from greenhorn.workers.request_body import BodySource, Spool
from greenhorn.wsgi.environ import (
    ConflictingSchemeHeaders,
    ErrorsStream,
    FileWrapper,
    base_environ,
    build_environ,
    build_uwsgi_environ,
    multiprocess,
    outside_mount,
    settle_forwarded,
)
from greenhorn.wsgi.input import Body
from greenhorn.wsgi.response import SERVER, Response
from greenhorn.wsgi.trust import ProxyTrust

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.base import Worker
    from greenhorn.wsgi.app import WSGIApp

__all__ = ["CLOSE", "READY", "WAIT", "Handler", "ServingWorker", "Switch"]

DRAIN_LIMIT = 1 << 20  # unread request body we discard to keep a connection alive
REJECT_SEND_SECONDS = 2.0  # a client that will not read our error answer is dropped
ABORT_SEND_SECONDS = 0.5  # how long the timeout answer may take (the worker is dying)
TIMEOUT_MESSAGE = "The request took longer than the server's timeout."
SEND_MARGIN = 2.0  # a sync response's send deadline comes this long before the timeout
_monotonic = time.monotonic
_DONTWAIT = socket.MSG_DONTWAIT

# poll_request's verdicts
CLOSE = 0  # finished: the client left, or was answered with an error
READY = 1  # a request is ready: run() it
WAIT = 2  # more bytes are needed: park the connection until readable or conn.deadline


class ServingWorker(Protocol):
    """What the handler reads from (and tells) the worker it serves for."""

    alive: bool  # False once the worker is stopping: no more keep-alive
    nr: int  # requests served so far
    max_requests: int  # the request that reaches it answers Connection: close
    heap_pending: bool  # set after a large body: the worker returns the heap when idle


class Switch(Protocol):
    """Takes a new connection that speaks HTTP/2 (``workers.http2.Http2``)."""

    def take(self, conn: Connection, deadline: float | None) -> bool: ...

    def upgrade(self, conn: Connection, req: Request) -> bool: ...


class Handler:
    """Serves requests on connections for one worker. See the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        cfg: Config,
        log: Logger,
        worker: ServingWorker,
        *,
        keep_alive: bool,
        multithread: bool,
        board: Scoreboard | None = None,
    ) -> None:
        self.app = app
        self.cfg = cfg
        self.log = log
        self.worker = worker
        self.keep_alive = keep_alive
        self.board = board
        self.header_timeout = float(cfg.header_timeout) or None
        self.min_rate = int(cfg.body_min_rate)
        # a client that does not take its response is cut at the timeout; where the master
        # times the request itself (sync), SEND_MARGIN earlier, so that the worker lives and
        # only that connection is lost (the master looks about once a second)
        timeout = float(cfg.timeout)
        if timeout and getattr(worker, "slot_holds_loop", False):
            timeout = max(timeout - SEND_MARGIN, timeout / 2)
        self.send_timeout = timeout or None
        self.sendfile = cfg.sendfile is not False
        self.trust = ProxyTrust(list(cfg.forwarded_allow_ips), dict(cfg.secure_scheme_headers))
        script_name = os.environ.get("SCRIPT_NAME")
        self.base = base_environ(
            multithread=multithread,
            errors=ErrorsStream(lambda: error_stream(log)),
            script_name=script_name,
            multiprocess=multiprocess(cfg.workers, cfg.workers_max),
        )
        self.mounted = bool(script_name)  # served under a SCRIPT_NAME prefix
        self.proxy_gate = ProxyGate(cfg.proxy_protocol, cfg.proxy_allow_ips, log)
        self.uwsgi = cfg.protocol == "uwsgi"  # requests come as uwsgi packets
        self.uwsgi_peers = ProxyTrust(list(cfg.uwsgi_allow_ips), {})  # who may send them
        # default (no-op) hooks are skipped on the hot path
        self.pre_request = not hooks.is_default(cfg, "pre_request")
        self.post_request = not hooks.is_default(cfg, "post_request")
        self.no_body = Body(None)  # shared: a body-less request's wsgi.input never changes
        self.leave = _leaving_exceptions()  # what a request may not contain (GreenletExit)
        self.in_flight: dict[int, Response] = {}  # slot -> the response being made
        self.body_buffer = int(cfg.body_buffer_size)
        self.spool = Spool(int(cfg.body_spool_threshold), cfg.tmp_upload_dir)
        self.http2: Switch | None = None  # set by worker types that speak HTTP/2

    @classmethod
    def for_worker(cls, worker: Worker, *, keep_alive: bool, multithread: bool) -> Handler:
        """The handler a worker type serves with: its application, settings, log and
        scoreboard."""
        handler = cls(
            worker.wsgi,
            worker.cfg,
            worker.log,
            worker,
            keep_alive=keep_alive,
            multithread=multithread,
            board=worker.tmp.board,
        )
        worker.in_flight = handler
        return handler

    # -- the request cycle -----------------------------------------------------------------

    def serve(self, conn: Connection, slot: int = 0, idle: float | None = None) -> bool:
        """Serve one request on ``conn``; return True if the connection may be reused.

        ``idle``: on a kept-alive connection, how long to wait for the next request's first
        byte (``keepalive``) before closing quietly; the head deadline starts at that byte.
        """
        parser = conn.parser
        if conn.requests == 0:
            begun = conn.accepted_at
            if (
                self.proxy_gate.on
                and conn.scheme != "https"  # TLS: the header came before the handshake
                and not self._read_proxy_header(conn, begun)
            ):
                conn.lingering_close(seconds=0.0)
                return False
            if self.http2 is not None and self.http2.take(
                conn, begun + self.header_timeout if self.header_timeout else None
            ):
                return False  # HTTP/2 (ALPN, or the h2c preface): served by workers/http2
        else:
            if idle is not None and not parser.buffered:
                try:
                    parser.feed(conn.recv(_monotonic() + idle))
                except (Timeout, OSError):
                    return False
            begun = _monotonic()
        deadline = begun + self.header_timeout if self.header_timeout else None
        try:
            # nothing buffered yet: receive before asking the parser
            event = parser.next_event() if parser.buffered else parser.receive(conn.recv(deadline))
            while event is NEED_DATA:
                event = parser.receive(conn.recv(deadline))
        except errors.HTTPError as exc:
            self.reject(conn, exc)
            return False
        except Timeout:
            if parser.buffered:  # part of a head: answer 408; nothing at all: just close
                self.reject(conn, errors.HeadTimeout("request head not received in time"))
            return False
        except OSError:
            return False
        if event is EOF or not self._admit(conn, event, begun):  # type: ignore[arg-type]
            return False
        return self.run(conn, slot)

    def _admit(self, conn: Connection, req: Request, begun: float) -> bool:
        """A head has been parsed: settle what depends on the peer, count it, keep it on the
        connection. False if it was refused (answered and closed). A uwsgi peer outside
        ``uwsgi_allow_ips`` is refused here, once its packet is in: answering before would
        close on the unread packet, and the proxy would get a reset instead of the 403."""
        if self.uwsgi and conn.requests == 0 and not self.uwsgi_peers.trusts(conn.peer):
            self.refuse_uwsgi(conn)
            return False
        if req.forwarded is not None:  # SCRIPT_NAME... count only from a trusted proxy
            try:
                settle_forwarded(req, self.trust.trusts(conn.peer), self.cfg.header_map)
            except errors.HTTPError as exc:
                self.reject(conn, exc)
                return False
        # SCRIPT_NAME (the environment's, a trusted proxy's, a uwsgi packet's): only its paths
        if self.mounted or self.uwsgi or req.forwarded is not None:
            outside = outside_mount(req, self.base["SCRIPT_NAME"])
            if outside is not None:
                self.reject(conn, outside)
                return False
        conn.requests += 1
        req.accepted_at = begun
        conn.request = req
        return True

    # -- waiting without holding the worker --------------------------------------------------

    def poll_request(self, conn: Connection) -> int:
        """Take what the client has sent, without waiting: READY, WAIT or CLOSE (see the
        module docstring). On WAIT ``conn.deadline`` says how long the wait may last; a
        kept-alive connection on which nothing has arrived keeps the deadline its worker
        gave it (``keepalive``)."""
        req = conn.request
        if req is None:
            parser = conn.parser
            sock = conn.sock
            try:
                if (
                    self.proxy_gate.on
                    and conn.proxy_bytes is not None
                    and not self._poll_proxy_header(conn)
                ):
                    return CLOSE if conn.closed else self._wait_for_head(conn)
                event = parser.next_event() if parser.buffered else NEED_DATA
                while event is NEED_DATA:
                    try:
                        data = sock.recv(RECV_SIZE, _DONTWAIT)
                    except BlockingIOError:
                        return self._wait_for_head(conn)
                    event = parser.receive(data)
            except errors.HTTPError as exc:
                self.reject(conn, exc)
                return CLOSE
            except OSError:
                return CLOSE
            if event is EOF:
                return CLOSE
            head: Request = event  # type: ignore[assignment]  # not NEED_DATA, not EOF
            if not self._admit(conn, head, conn.began or _monotonic()):
                return CLOSE
            if not (self.body_buffer and (head.chunked or head.content_length)):
                return READY
            req = head
        return self._poll_body(conn, req)

    def _wait_for_head(self, conn: Connection) -> int:
        if not conn.began:  # a kept-alive connection: the head's time starts at its first byte
            if not conn.parser.buffered:
                return WAIT
            conn.began = _monotonic()
        conn.deadline = conn.began + self.header_timeout if self.header_timeout else None
        return WAIT

    def _poll_body(self, conn: Connection, req: Request) -> int:
        """The head is in: READY once the body (or its first ``body_buffer`` bytes) is too."""
        parser = conn.parser
        early = conn.early
        chunked = req.chunked
        need = 0 if chunked else min(req.content_length or 0, self.body_buffer)
        if not chunked and parser.buffered >= need:  # the bytes stay in the parser's buffer
            return READY
        if early is None:
            early = conn.early = EarlyBody(_monotonic())
            if req.expect_continue and not parser.buffered:
                req.expect_continue = False  # asked for now, before the application runs
                try:
                    conn.sock.send(CONTINUE, _DONTWAIT)  # 25 bytes: a new socket has room
                except OSError:
                    return CLOSE
        sock = conn.sock
        try:
            while True:
                if chunked:
                    event = parser.next_event()
                    while type(event) is Data:
                        early.data += event.data
                        if len(early.data) >= self.body_buffer:
                            return READY
                        event = parser.next_event()
                    if type(event) is EndOfMessage:
                        early.done = True
                        early.trailers = event.trailers
                        return READY
                elif parser.buffered >= need:
                    return READY
                try:
                    data = sock.recv(RECV_SIZE, _DONTWAIT)
                except BlockingIOError:
                    break
                if not data:
                    raise errors.IncompleteRequest("connection closed inside the request body")
                parser.feed(data)
        except errors.HTTPError as exc:
            self.reject(conn, exc)
            return CLOSE
        except OSError:
            return CLOSE
        if self.min_rate:
            seen = parser.buffered + len(early.data)
            grace = self.header_timeout or 0.0
            conn.deadline = early.started + grace + (seen + 1) / self.min_rate
        else:
            conn.deadline = None
        return WAIT

    def expire(self, conn: Connection) -> int:
        """A parked connection reached its deadline: one last look (the worker may have been
        busy while the bytes arrived), then 408 for a request begun, a quiet close else."""
        state = self.poll_request(conn)
        if state != WAIT:
            return state
        if conn.request is not None:
            self.reject(conn, errors.BodyTimeout("request body arrived too slowly"))
        elif conn.parser.buffered:
            self.reject(conn, errors.HeadTimeout("request head not received in time"))
        else:
            conn.close()
        return CLOSE

    # -- the request cycle, once the head is in ---------------------------------------------

    def run(self, conn: Connection, slot: int = 0) -> bool:
        """Serve ``conn.request``; return True if the connection may carry another one."""
        req: Request = conn.request  # type: ignore[assignment]
        conn.request = None
        if req.upgrade and self.http2 is not None and self.http2.upgrade(conn, req):
            # Upgrade: h2c, answered 101: the request is HTTP/2's stream 1, counted (toward
            # max_requests) there, so not as this connection's
            conn.requests -= 1
            return False
        now = _monotonic()
        req.started_at = now
        board = self.board
        if board is not None:
            board.start(slot, req.method, req.uri, now)
        worker = self.worker  # the request that reaches max_requests says Connection: close
        keep_alive = (
            self.keep_alive
            and req.keep_alive
            and worker.alive
            and worker.nr + 1 < worker.max_requests
        )
        resp = Response(
            conn, req, keep_alive, now + self.send_timeout if self.send_timeout else None
        )
        source = None
        body = self.no_body
        if req.chunked or req.content_length:
            source = BodySource(
                conn,
                req,
                self.min_rate,
                self.header_timeout or 0.0,
                resp.send_continue,
                self.spool,
                conn.early,
            )
            conn.early = None
            body = Body(source.pull, source.rest)
        environ: dict[str, Any] = {}
        in_flight = self.in_flight
        in_flight[slot] = resp
        hook_req: RequestView | None = None
        try:
            if self.uwsgi and isinstance(req, UwsgiRequest):
                environ = build_uwsgi_environ(self.base, req, conn, body, self.trust)
            else:
                environ = build_environ(self.base, req, conn, body, self.trust)
            environ["wsgi.early_hints"] = resp.early_hints
            if self.pre_request or self.post_request:
                hook_req = self._hook_request(conn, req, body, source, environ)
            if self.pre_request and not hooks.call_request_hook(
                self.cfg, "pre_request", self.worker, hook_req, log=self.log, leave=self.leave
            ):
                self._error(conn, resp, 500, "Internal Server Error", "")
            else:
                self._call_app(conn, req, resp, environ)
        except ConflictingSchemeHeaders:
            self._error(conn, resp, 400, "Bad Request", "conflicting scheme headers")
            self.log.warning(
                "Invalid request from ip=%s: conflicting scheme headers", conn.remote_addr
            )
        except BaseException as exc:
            if isinstance(exc, self.leave):
                raise
            self._failed(conn, req, resp)
        finally:
            del in_flight[slot]
            duration = _monotonic() - now
            if board is not None:
                board.finish(slot, resp.status_code or 500, duration, resp.sent)
            if self.post_request:
                hooks.call_request_hook(
                    self.cfg,
                    "post_request",
                    self.worker,
                    hook_req or self._hook_request(conn, req, body, source, environ),
                    environ,
                    resp,
                    log=self.log,
                    leave=self.leave,
                )
            if self.log.access_enabled:
                try:
                    self.log.access(req, resp, environ, duration)
                except BaseException as exc:
                    if isinstance(exc, self.leave):
                        raise
                    self.log.exception("Error writing the access log")
        if source is not None:
            if not self._settle_body(conn, req, resp, source, body):
                return False
        elif not resp.keep_alive or conn.closed:
            return False
        try:
            conn.parser.start_next()
        except RuntimeError:
            return False
        conn.began = 0.0  # the next request begins with its first byte
        return True

    def _settle_body(
        self, conn: Connection, req: Request, resp: Response, source: BodySource, body: Body
    ) -> bool:
        """After a response to a request with a body: note a large body (the worker gives
        the heap back once idle), and read what the application left unread so that the
        connection can carry the next request. False: close the connection."""
        if (req.content_length or source.received) >= LARGE_BODY:
            self.worker.heap_pending = True
        if body.finished:
            return resp.keep_alive and not conn.closed
        conn.linger = True  # if we close now, let the client finish sending first
        if not resp.keep_alive or conn.closed or source.continue_pending:
            return False  # (a client waiting for 100 Continue never gets its body read)
        try:
            if not body.drain(DRAIN_LIMIT):
                return False
        except (errors.HTTPError, Timeout, OSError):
            return False
        conn.linger = False
        return True

    def _call_app(
        self, conn: Connection, req: Request, resp: Response, environ: dict[str, Any]
    ) -> None:
        result: Iterable[bytes] | None = None
        try:
            result = self.app(environ, resp.start_response)
            if type(result) is list and len(result) == 1 and not resp.head_sent:
                data = result[0]
                if type(data) is not bytes:
                    raise TypeError(f"response body items must be bytes, not {type(data)}")
                resp.send_head(data, len(data))  # the whole response in one system call
                framing = resp.framing
                if framing.chunked or resp.sent != framing.length:  # type: ignore[union-attr]
                    resp.finish()  # (an app Content-Length that disagrees with the body)
                return  # a list has no close()
            if isinstance(result, FileWrapper) and self._can_sendfile(conn, result):
                self._sendfile(conn, resp, result)
            else:
                for data in result:
                    if data or resp.head_sent:
                        resp.write(data)
                    elif type(data) is not bytes:
                        raise TypeError(f"response body items must be bytes, not {type(data)}")
            resp.finish()
        except (Timeout, OSError) as exc:
            resp.keep_alive = False
            self.log.debug("Client %s went away: %r", conn.remote_addr, exc)
        except errors.HTTPError as exc:  # raised while the app read a bad or slow body
            resp.keep_alive = False
            if not resp.head_sent:
                self._error(conn, resp, exc.code, exc.reason, str(exc))
            self.log.warning("Invalid request from ip=%s: %s", conn.remote_addr, exc)
        except InvalidResponse as exc:
            self.log.error("Error handling request %s %s: %s", req.method, req.uri, exc)
            resp.keep_alive = False
            if not resp.head_sent:
                self._error(conn, resp, 500, "Internal Server Error", "")
        except BaseException as exc:  # SystemExit, CancelledError...: a request cannot end us
            if isinstance(exc, self.leave):
                raise
            self._failed(conn, req, resp)
        finally:
            close = None if result.__class__ is list else getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as exc:
                    if isinstance(exc, self.leave):
                        raise
                    self.log.exception("Error closing the response iterable")

    def _failed(self, conn: Connection, req: Request, resp: Response) -> None:
        """The application (or ``pre_request``) raised: log it with its traceback; answer
        500 if nothing was sent yet, else leave the body unfinished and close."""
        self.log.exception("Error handling request %s %s", req.method, req.uri)
        resp.keep_alive = False
        if not resp.head_sent:
            self._error(conn, resp, 500, "Internal Server Error", "")

    def answer_aborted(self) -> int:
        """The worker is being aborted (timeout): answer 500 to every request in flight
        that has sent nothing yet, so its client gets a status instead of an empty reply.
        Runs on the control thread while the request's own thread is stuck."""
        answered = 0
        for resp in tuple(self.in_flight.values()):
            if resp.head_sent or resp.sent:
                continue  # a head (or part of one) went out: the body stays unfinished
            resp.head_sent = True
            resp.status_code = 500
            data = error_response(500, "Internal Server Error", TIMEOUT_MESSAGE, SERVER)
            try:
                resp._conn.send_last(data, _monotonic() + ABORT_SEND_SECONDS)
            except (OSError, Timeout):
                continue
            answered += 1
        return answered

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _hook_request(
        conn: Connection,
        req: Request,
        body: Body,
        source: BodySource | None,
        environ: dict[str, Any],
    ) -> RequestView:
        """The request as hooks see it (gunicorn's attributes; only when a hook is set)."""
        try:
            peer = conn.sock.getpeername()
        except OSError:
            peer = (conn.peer, 0)
        return RequestView(
            req,
            body=body,
            scheme=str(environ.get("wsgi.url_scheme", conn.scheme)),
            peer_addr=peer if isinstance(peer, tuple) else "",
            remote_addr=address(conn.remote_addr, conn.remote_port),
            req_number=conn.requests,
            trailers=None if source is None else source.get_trailers,
        )

    def _read_proxy_header(self, conn: Connection, begun: float) -> bool:
        """Consume an optional PROXY protocol header (``proxy_gate.py``), waiting for it
        under the head deadline (``serve``); False means close the connection. A trusted
        header's addresses replace the peer's."""
        deadline = begun + self.header_timeout if self.header_timeout else None

        def more(seen: bytes) -> bytes | None:
            chunk = conn.recv(deadline)
            return seen + chunk if chunk else None

        try:
            got = self.proxy_gate.read(conn.remote_addr, more)
        except (Timeout, OSError):
            return False
        return got is not None and self._pass_proxy_header(conn, *got)

    def _poll_proxy_header(self, conn: Connection) -> bool:
        """The same without waiting (``poll_request``): True once the header is settled,
        False to wait for more bytes (kept in ``conn.proxy_bytes``), or when it was refused
        (the connection is closed then)."""
        saved = conn.proxy_bytes or b""

        def more(seen: bytes) -> bytes | None:
            if len(seen) < len(saved):  # what came before this wake-up, first
                return saved
            try:
                chunk = conn.sock.recv(RECV_SIZE, _DONTWAIT)
            except BlockingIOError:
                conn.proxy_bytes = seen
                raise
            return seen + chunk if chunk else None

        try:
            got = self.proxy_gate.read(conn.remote_addr, more)
        except BlockingIOError:
            return False
        except OSError:
            got = None
        conn.proxy_bytes = None
        if got is None:
            conn.lingering_close(seconds=0.0)
            return False
        return self._pass_proxy_header(conn, *got)

    def _pass_proxy_header(
        self, conn: Connection, header: proxy.ProxyHeader | None, data: bytes
    ) -> bool:
        """Apply a header the gate let through, and hand the bytes after it to the parser."""
        if header is not None:
            conn.apply_proxy(header)
            data = data[header.consumed :]
        conn.parser.feed(data)
        return True

    def _can_sendfile(self, conn: Connection, wrapper: FileWrapper) -> bool:
        if not self.sendfile or getattr(conn.sock, "cipher", None) is not None:
            return False
        try:
            fileno = wrapper.filelike.fileno()
            os.fstat(fileno)
            wrapper.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        return True

    def _sendfile(self, conn: Connection, resp: Response, wrapper: FileWrapper) -> None:
        filelike = wrapper.filelike
        offset = filelike.tell()
        size = os.fstat(filelike.fileno()).st_size - offset
        resp.send_head(b"", None if _has_length(resp.app_headers) else max(size, 0))
        framing = resp.framing
        if framing is None or not framing.body_allowed:
            return
        count = size if framing.length is None else min(size, framing.length - resp.sent)
        if framing.chunked:
            for data in wrapper:
                resp.write(data)
            return
        resp.sent += conn.sendfile(filelike, offset, max(count, 0), resp._deadline)
        filelike.seek(offset + resp.sent)

    def _error(self, conn: Connection, resp: Response, code: int, reason: str, msg: str) -> None:
        resp.status = f"{code} {reason}"
        resp.status_code = code
        resp.keep_alive = False
        try:
            conn.send_last(error_response(code, reason, msg, SERVER), resp._deadline)
            resp.head_sent = True
        except (OSError, Timeout):
            pass

    def refuse_uwsgi(self, conn: Connection) -> None:
        """A uwsgi connection from a peer outside ``uwsgi_allow_ips``: log, count, answer
        403 and close (what is already received is read first, so the close sends no reset
        before the proxy reads the answer; the worker never waits for more)."""
        self.log.warning(
            "uWSGI request from ip=%s refused: not in uwsgi_allow_ips (--uwsgi-allow-from)",
            conn.peer,
        )
        if self.board is not None:
            self.board.counters[REJECTED] += 1
        try:
            deadline = _monotonic() + REJECT_SEND_SECONDS
            message = "uWSGI requests from this address are not allowed"
            conn.send_last(error_response(403, "Forbidden", message, SERVER), deadline)
        except (OSError, Timeout):
            pass
        conn.lingering_close(seconds=0.0)

    def reject(self, conn: Connection, exc: errors.HTTPError) -> None:
        """Answer a protocol error with its status, log it, count it, and close."""
        self.log.warning("Invalid request from ip=%s: %s", conn.remote_addr, exc)
        if self.board is not None:
            self.board.counters[REJECTED] += 1
        try:
            deadline = _monotonic() + REJECT_SEND_SECONDS
            conn.send_last(error_response(exc.code, exc.reason, str(exc), SERVER), deadline)
        except (OSError, Timeout):
            pass
        conn.lingering_close(seconds=0.0)


def _leaving_exceptions() -> tuple[type[BaseException], ...]:
    """The exceptions that may cross a request: a greenlet being killed must die."""
    greenlet = sys.modules.get("greenlet")
    leave = getattr(greenlet, "GreenletExit", None)
    return (leave,) if isinstance(leave, type) and issubclass(leave, BaseException) else ()


def _has_length(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "content-length" for name, _ in headers)


if TYPE_CHECKING:  # the worker types serve for a ``workers.base.Worker``

    def _serves_for_a_worker(worker: Worker) -> ServingWorker:
        return worker
