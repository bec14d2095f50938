"""The HTTP/2 tests' ASGI application (``-k asgi``), with h2app.py's paths and answers:

- ``/echo``: the request as JSON under h2app.py's (WSGI) names, from the scope
  (``SERVER_PROTOCOL`` from ``http_version``...), with the body's length and sha256 (read
  message by message), and the scope's ``http_version`` and ``extensions``;
- ``/slow?t=S``: answers after S seconds;
- ``/big?n=N``: N bytes, in 64 KiB messages (a client that never opens its window stalls it);
- ``/trailers``: a body, then trailers (``http.response.trailers``, in two messages), when
  the scope offers the extension;
- ``/hints``: a 103 Early Hints before the answer;
- ``/longhead?n=N``: a response header N bytes long (past one frame: CONTINUATION);
- ``/lazy?t=S``: waits S seconds before it reads the body, then answers as ``/echo``;
- any WebSocket path: echoes text, prefixed with the scope's http_version.
"""

import asyncio
import hashlib
import json
import os
from urllib.parse import parse_qs


async def app(scope, receive, send):  # (served with --asgi-lifespan off)
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            reply = f"{scope['http_version']}:{message.get('text')}"
            await send({"type": "websocket.send", "text": reply})
    path = scope["path"]
    qs = parse_qs(scope["query_string"].decode())
    if path == "/slow":
        await asyncio.sleep(float(qs.get("t", ["1"])[0]))
        return await _text(send, b"slow done\n")
    if path == "/big":
        n = int(qs.get("n", ["1048576"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * 65536
        while n > 0:
            chunk = piece[: min(n, len(piece))]
            n -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": n > 0})
        return None
    if path == "/trailers":
        trailers = "http.response.trailers" in scope.get("extensions", {})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")],
                "trailers": trailers,
            }
        )
        await send({"type": "http.response.body", "body": b"body before trailers\n"})
        if trailers:
            await send({"type": "http.response.trailers", "headers": [], "more_trailers": True})
            await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})
        return None
    if path == "/longhead":
        long = b"v" * int(qs.get("n", ["20000"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-long", long)]})
        await send({"type": "http.response.body", "body": b"long head\n"})
        return None
    if path == "/hints":
        await send(
            {
                "type": "http.response.informational",
                "status": 103,
                "headers": [(b"link", b"</style.css>; rel=preload; as=style")],
            }
        )
        return await _text(send, b"after hints\n")
    if path == "/lazy":
        await asyncio.sleep(float(qs.get("t", ["1"])[0]))
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        body = message.get("body", b"")
        digest.update(body)
        size += len(body)
        if not message.get("more_body"):
            break
    version = scope["http_version"]
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    info = {
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope["query_string"].decode(),
        "SERVER_PROTOCOL": "HTTP/2.0" if version == "2" else f"HTTP/{version}",
        "REMOTE_PORT": str(scope["client"][1]) if scope.get("client") else None,
        "HTTP_HOST": (headers.get(b"host") or b"").decode() or None,
        "CONTENT_LENGTH": length.decode() if length else None,
        "wsgi.url_scheme": scope["scheme"],
        "http_version": version,
        "extensions": sorted(scope.get("extensions", {})),
        "body_len": size,
        "sha256": digest.hexdigest(),
        "pid": os.getpid(),
    }
    return await _text(send, json.dumps(info).encode(), b"application/json")


async def _text(send, body, kind=b"text/plain"):
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
