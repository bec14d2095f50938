"""One HTTP/2 stream's request cycle for the WSGI workers: environ, application, response,
accounting.

Why a module of its own: ``workers/handler.py`` is the request cycle of an HTTP/1.1
connection (reading heads, keep-alive, pipelining); a stream arrives parsed, owns no socket
and ends with END_STREAM or RST_STREAM. What both share is taken from the worker's
``Handler``: the application, the settings, the base environ, peer trust, the hooks and the
scoreboard, so a stream is logged, counted, hooked and timed exactly as a request is.

Failure rules (as HTTP/1.1's, in HTTP/2 terms):

- a request the session refused with a status (431, 413, 417...) is answered with it, and
  the application is not called;
- an application error before the head answers 500; after it, the stream is reset
  (INTERNAL_ERROR): the client sees a cut response, never a wrong one;
- a bad status or header from the application is never sent (500 instead);
- the client resetting the stream, or a stall, ends the cycle quietly (debug log); the
  iterable's ``close()`` is always called.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from greenhorn.config import hooks
from greenhorn.http import errors
from greenhorn.http.http2.session import Stream, StreamGone
from greenhorn.http.parser import Request
from greenhorn.http.response import InvalidResponse
from greenhorn.ipc.scoreboard import REJECTED
from greenhorn.workers.http2.connection import H2Connection, StreamIO
from greenhorn.wsgi.environ import (
    ConflictingSchemeHeaders,
    build_environ,
    outside_mount,
    settle_forwarded,
)
from greenhorn.wsgi.h2response import H2Response
from greenhorn.wsgi.input import Body

if TYPE_CHECKING:
    from greenhorn.workers.handler import Handler

__all__ = ["serve_stream"]

_monotonic = time.monotonic


def serve_stream(handler: Handler, conn: H2Connection, stream: Stream, slot: int) -> None:
    """Serve ``stream`` of ``conn`` on scoreboard ``slot`` (a thread or greenlet of its own)."""
    try:
        _serve(handler, conn, stream, slot)
    except Exception:
        handler.log.exception("Unexpected error serving an HTTP/2 stream")
    finally:
        conn.finish(stream)


def _serve(handler: Handler, conn: H2Connection, stream: Stream, slot: int) -> None:
    req = stream.req
    io = StreamIO(conn, stream)
    resp = H2Response(io, req.method)
    refused = stream.body_error  # a status the session decided on (431, 413...)
    if refused is not None:
        _reject(handler, conn, resp, refused)
        return
    now = _monotonic()
    req.accepted_at = req.started_at = now
    board = handler.board
    if board is not None and slot >= 0:  # (< 0: past the slots, timed by its worker type)
        board.start(slot, req.method, req.uri, now)
    body = Body(io.read) if not stream.ended or stream.buffered else handler.no_body
    environ: dict[str, Any] = {}
    try:
        client = conn.conn
        if req.forwarded is not None:
            settle_forwarded(req, conn.trusted(handler.trust), handler.cfg.header_map)
        if handler.mounted or req.forwarded is not None:  # SCRIPT_NAME: only its paths
            outside = outside_mount(req, handler.base["SCRIPT_NAME"])
            if outside is not None:
                raise outside  # 400, as for HTTP/1.1 (``Handler._admit``)
        environ = build_environ(handler.base, req, client, body, handler.trust)
        if stream.scheme in ("http", "https") and conn.trusted(handler.trust):
            environ["wsgi.url_scheme"] = stream.scheme  # a trusted proxy's :scheme
        environ["wsgi.early_hints"] = resp.early_hints
        environ["gunicorn.http2.send_trailers"] = environ["greenhorn.http2.send_trailers"] = (
            resp.set_trailers
        )
        if handler.pre_request:
            hooks.call_hook(handler.cfg, "pre_request", handler.worker, req, propagate=True)
        _call_app(handler, conn, req, resp, environ)
    except ConflictingSchemeHeaders:
        _error(resp, 400, "Bad Request", "conflicting scheme headers")
        handler.log.warning(
            "Invalid request from ip=%s: conflicting scheme headers", conn.conn.remote_addr
        )
    except errors.HTTPError as exc:  # forwarder headers refused
        _reject(handler, conn, resp, exc)
    finally:
        duration = _monotonic() - now
        if board is not None:
            if slot >= 0:
                board.finish(slot, resp.status_code or 500, duration, resp.sent)
            else:
                board.count(resp.status_code or 500, duration, resp.sent)
        if handler.post_request:
            hooks.call_hook(
                handler.cfg, "post_request", handler.worker, req, environ, resp, log=handler.log
            )
        if handler.log.access_enabled:
            try:
                handler.log.access(req, resp, environ, duration)
            except Exception:
                handler.log.exception("Error writing the access log")


def _call_app(
    handler: Handler, conn: H2Connection, req: Request, resp: H2Response, environ: dict[str, Any]
) -> None:
    result: Iterable[bytes] | None = None
    try:
        result = handler.app(environ, resp.start_response)
        if type(result) is list and len(result) == 1 and not resp.head_sent:
            data = result[0]
            if type(data) is not bytes:
                raise TypeError(f"response body items must be bytes, not {type(data)}")
            resp.send_head(data, len(data), True)  # head, body and END_STREAM at once
            return
        for data in result:
            if data or resp.head_sent:
                resp.write(data)
            elif type(data) is not bytes:
                raise TypeError(f"response body items must be bytes, not {type(data)}")
        resp.finish()
    except StreamGone as exc:
        handler.log.debug("HTTP/2 client %s: %s", conn.conn.remote_addr, exc)
    except errors.HTTPError as exc:  # raised while the app read a bad or slow body
        handler.log.warning("Invalid request from ip=%s: %s", conn.conn.remote_addr, exc)
        _error(resp, exc.code, exc.reason, str(exc))
    except InvalidResponse as exc:
        handler.log.error("Error handling request %s %s: %s", req.method, req.uri, exc)
        _error(resp, 500, "Internal Server Error", "")
    except Exception:
        handler.log.exception("Error handling request %s %s", req.method, req.uri)
        _error(resp, 500, "Internal Server Error", "")
    finally:
        close = None if result.__class__ is list else getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                handler.log.exception("Error closing the response iterable")


def _error(resp: H2Response, code: int, reason: str, message: str) -> None:
    """Answer ``code`` if the head has not gone out; else cut the stream."""
    try:
        resp.error(code, reason, message)
    except StreamGone:
        pass


def _reject(handler: Handler, conn: H2Connection, resp: H2Response, exc: errors.HTTPError) -> None:
    """A request refused before the application: its status, a warning, the counter."""
    handler.log.warning("Invalid request from ip=%s: %s", conn.conn.remote_addr, exc)
    if handler.board is not None:
        handler.board.counters[REJECTED] += 1
    _error(resp, exc.code, exc.reason, str(exc))
