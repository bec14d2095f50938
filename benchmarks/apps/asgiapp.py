"""The ASGI applications the ASGI benchmarks serve, identical for greenhorn, gunicorn and
uvicorn (``--chdir benchmarks/apps asgiapp:NAME``).

Why a module of its own: like ``benchapp.py`` for WSGI, every server must run the very same
code; each app does as little as it can. They do not speak lifespan (they return at once),
which every server treats as "no lifespan".
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, world!\n"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"14")],
}
BODY = {"type": "http.response.body", "body": HELLO}


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest response: what per-request overhead costs."""
    if scope["type"] != "http":
        return
    await send(START)
    await send(BODY)


async def ws_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A WebSocket that sends every message back; plain HTTP gets hello's answer."""
    if scope["type"] == "http":
        await send(START)
        await send(BODY)
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})
