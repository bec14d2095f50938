"""What a request looks like to the application behind ``--protocol uwsgi``: the environ's
text values (WSGI) or the scope (ASGI) as JSON, with the body's length and SHA-256 and the
worker's pid, so a test can see that a bad packet did not cost the worker its life."""

import hashlib
import json
import os


def wsgi(environ, start_response):
    body = environ["wsgi.input"].read()
    info = {k: v for k, v in environ.items() if isinstance(v, str)}
    info["body_len"] = len(body)
    info["body_sha256"] = hashlib.sha256(body).hexdigest()
    info["pid"] = os.getpid()
    data = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("X-App", "wsgi")])
    return [data]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    digest = hashlib.sha256()
    length = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        digest.update(chunk)
        length += len(chunk)
        if not message.get("more_body"):
            break
    info = {k: scope[k] for k in ("http_version", "method", "scheme", "path", "root_path")}
    info["client"] = list(scope["client"] or ())
    info["server"] = list(scope["server"] or ())
    info["query_string"] = scope["query_string"].decode("latin-1")
    info["raw_path"] = scope["raw_path"].decode("latin-1")
    info["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    info["body_len"] = length
    info["body_sha256"] = digest.hexdigest()
    info["pid"] = os.getpid()
    headers = [(b"content-type", b"application/json"), (b"x-app", b"asgi")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(info).encode()})
