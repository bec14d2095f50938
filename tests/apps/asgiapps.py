"""ASGI twins of the WSGI test apps (echo, hello, slow) for ``-k asgi``, answering the same
way, so the shared worker suite (tests/e2e/test_workers.py) runs unchanged against the
asgi worker. Also a few apps only the ASGI tests use."""

import asyncio
import json
import os
import time
from urllib.parse import parse_qs


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def echo(scope, receive, send):
    """The WSGI echo app's JSON line (same keys, from the scope), then the body."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    body = await _body(receive)
    headers = {}
    for name, value in scope["headers"]:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        headers[key] = value.decode("latin-1")
    query = scope["query_string"].decode("latin-1")
    raw = scope["raw_path"].decode("latin-1")
    client = scope.get("client") or ("", 0)
    info = {
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query,
        "RAW_URI": raw + ("?" + query if query else ""),
        "SERVER_PROTOCOL": "HTTP/" + scope["http_version"],
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.url_scheme": scope["scheme"],
        "HTTP_HOST": headers.get("HTTP_HOST"),
        "headers": headers,
        "body_len": len(body),
        "pid": os.getpid(),
        "root_path": scope.get("root_path"),
    }
    data = json.dumps(info).encode() + b"\n" + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(data)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!\n"})


async def slow(scope, receive, send):
    """Wait ?t=seconds (default 1) without blocking the loop; /spin blocks it (a sync call in
    an async view)."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    qs = parse_qs(scope["query_string"].decode())
    seconds = float(qs.get("t", ["1"])[0])
    if scope["path"] == "/spin":
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    else:
        await asyncio.sleep(seconds)
    body = f"slept {seconds} in {os.getpid()}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the probe: one app with a route per behaviour the ASGI tests check ------------------------

MARKS = os.environ.get("ASGI_MARKS", "/tmp")  # where /disconnect and lifespan leave marks


def _mark(name, text=""):
    with open(os.path.join(MARKS, name), "a") as f:
        f.write(text + "\n")


async def _respond(send, status=200, body=b"", headers=(), length=True):
    hdrs = [(b"content-type", b"text/plain"), *headers]
    if length:
        hdrs.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def probe(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started_by"] = os.getpid()
                _mark("lifespan", f"startup {os.getpid()}")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _mark("lifespan", f"shutdown {os.getpid()}")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "websocket":
        return await _websocket(scope, receive, send)
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):  # the proxy stripped it; routes are below it
        path = path[len(root) :]
    qs = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path.endswith("/scope") or path.startswith("/scope/"):
        out = {k: v for k, v in scope.items() if k not in ("headers", "state")}
        out["raw_path"] = scope["raw_path"].decode("latin-1")
        out["query_string"] = scope["query_string"].decode("latin-1")
        out["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        out["state"] = dict(scope.get("state", {}))
        scope["state"]["leak"] = True  # a shallow copy per request: never seen by the next
        return await _respond(send, body=json.dumps(out).encode())
    if path == "/count":  # read the body as it streams, answer its size (and chunk count)
        total = chunks = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            chunks += 1
            if not message.get("more_body"):
                break
        return await _respond(send, body=b"%d %d" % (total, chunks))
    if path == "/stream":  # n pieces of size bytes, no length: chunked, with flow control
        n, size = int(qs.get("n", "4")), int(qs.get("size", "10"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * size
        for _ in range(n):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return None
    if path == "/status":  # an app-chosen status; the body is always offered
        code = int(qs.get("code", "200"))
        return await _respond(send, code, b"body", length=qs.get("length") == "1")
    if path == "/disconnect":  # wait for the client to go away, then leave a mark
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
        _mark("disconnect", qs.get("id", "-"))
        return None
    if path == "/early":  # 103 Early Hints, then the response
        hint = [(b"link", b"</style.css>; rel=preload; as=style")]
        await send({"type": "http.response.informational", "status": 103, "headers": hint})
        return await _respond(send, body=b"after hints")
    if path == "/error":
        raise RuntimeError("boom before the response")
    if path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom in the middle of the response")
    if path == "/bad-header":
        return await _respond(send, headers=[(b"x-bad", b"a\r\nInjected: yes")])
    if path == "/no-response":
        return None
    if path == "/sleep":
        await asyncio.sleep(float(qs.get("t", "1")))
        return await _respond(send, body=b"slept")
    return await _respond(send, body=b"probe " + path.encode())


async def _websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    path = scope["path"][len(scope.get("root_path", "")) :]
    if path == "/ws/deny":
        return await send({"type": "websocket.close"})
    if path == "/ws/deny-response":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"x-why", b"token")],
            }
        )
        return await send({"type": "websocket.http.response.body", "body": b"no token"})
    offered = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[0] if offered else None,
            "headers": [(b"x-accepted", b"yes")],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _mark("ws-disconnect", f"{message['code']} {path}")
            return None
        text = message.get("text")
        if text == "close-4001":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            continue
        if text == "scope":
            info = {"path": scope["path"], "scheme": scope["scheme"], "subprotocols": offered}
            await send({"type": "websocket.send", "text": json.dumps(info)})
            continue
        await send({"type": "websocket.send", "text": text, "bytes": message.get("bytes")})


async def failing_startup(scope, receive, send):
    """Its lifespan startup fails: the server must stop with the boot-error status."""
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})


async def no_lifespan(scope, receive, send):
    """Does not speak lifespan (raises on it, as Django does); serves HTTP."""
    if scope["type"] != "http":
        raise ValueError(f"cannot handle {scope['type']}")
    await _respond(send, body=b"served without lifespan")


class Asgi2:
    """An ASGI 2 (double-callable) application."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] == "http":
            await _respond(send, body=b"asgi2 " + self.scope["path"].encode())


def wsgi(environ, start_response):
    """A WSGI application, given to -k asgi by mistake."""
    start_response("200 OK", [])
    return [b"wsgi"]
