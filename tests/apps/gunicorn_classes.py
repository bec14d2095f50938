"""Fixture: classes written for gunicorn (on gunicorn's own base classes), and the
applications they serve, for tests/e2e/test_gunicorn_classes.py.

gunicorn is the user's library here, imported as any deployment would import it.
"""

from __future__ import annotations

import time

from gunicorn.glogging import Logger
from gunicorn.workers.sync import SyncWorker


class CountingSync(SyncWorker):
    """An in-house SyncWorker subclass: says which request it serves."""

    def handle_request(self, listener, req, client, addr):
        self.log.info("CountingSync serving %s (request %d)", req.path, self.nr + 1)
        return super().handle_request(listener, req, client, addr)


class MarkedLogger(Logger):
    """A custom logger built on gunicorn's: marks every access line and error line."""

    def access(self, resp, req, environ, request_time):
        self.error_log.info(
            "MARKED access %s %s %s %.3f",
            req.method,
            req.path,
            resp.status,
            request_time.total_seconds(),
        )
        super().access(resp, req, environ, request_time)


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"wsgi {environ['PATH_INFO']}\n".encode()]


async def asgi_app(scope, receive, send):
    """A tiny ASGI app; /block blocks the event loop (a heartbeat that stops)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/block":
        time.sleep(60)
    body = f"asgi {scope['path']}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def failing_startup(scope, receive, send):
    """Lifespan startup fails: uvicorn's worker exits 3 before it serves."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


def aiohttp_app():
    from aiohttp import web

    async def hello(request):
        return web.Response(text=f"aiohttp {request.path}\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    return app
