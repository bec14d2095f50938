"""The HTTP/2 tests' application: echo, slow, large and trailer-ending responses, early hints.

- ``/echo``: the request (method, path, SERVER_PROTOCOL, scheme, REMOTE_PORT...) as JSON,
  with the body's length and sha256;
- ``/slow?t=S``: answers after S seconds;
- ``/big?n=N``: N bytes, in 64 KiB items (a client that never opens its window stalls it);
- ``/trailers``: a body, then trailers (``environ['gunicorn.http2.send_trailers']``);
- ``/hints``: a 103 Early Hints before the answer;
- ``/linger?t=S``: answers at once; the iterable's ``close()`` then takes S seconds;
- ``/longhead?n=N``: a response header N bytes long (past one frame: CONTINUATION);
- ``/lazy?t=S``: waits S seconds before it reads the body, then answers as ``/echo``.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/slow":
        time.sleep(float(qs.get("t", ["1"])[0]))
        return _text(start_response, b"slow done\n")
    if path == "/big":
        n = int(qs.get("n", ["1048576"])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _chunks(n)
    if path == "/trailers":
        environ["gunicorn.http2.send_trailers"]([("x-checksum", "abc123")])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Trailer", "x-checksum")])
        return [b"body before trailers\n"]
    if path == "/linger":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        return _Linger(float(qs.get("t", ["1"])[0]))
    if path == "/longhead":
        start_response("200 OK", [("X-Long", "v" * int(qs.get("n", ["20000"])[0]))])
        return [b"long head\n"]
    if path == "/hints":
        environ["wsgi.early_hints"]([("Link", "</style.css>; rel=preload; as=style")])
        return _text(start_response, b"after hints\n")
    if path == "/lazy":
        time.sleep(float(qs.get("t", ["1"])[0]))
    body = environ["wsgi.input"].read()
    keys = (
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_PROTOCOL",
        "REMOTE_PORT",
        "HTTP_HOST",
        "CONTENT_LENGTH",
        "wsgi.url_scheme",
    )
    info = {k: environ.get(k) for k in keys}
    info["body_len"] = len(body)
    info["sha256"] = hashlib.sha256(body).hexdigest()
    info["pid"] = os.getpid()
    return _text(start_response, json.dumps(info).encode(), "application/json")


def _text(start_response, body, kind="text/plain"):
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def _chunks(n):
    piece = b"x" * 65536
    while n > 0:
        yield piece[: min(n, len(piece))]
        n -= len(piece)


class _Linger:
    """A response whose ``close()`` (called after the last byte went out) takes a while."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __iter__(self):
        yield b"linger\n"

    def close(self):
        time.sleep(self.seconds)
