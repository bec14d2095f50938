"""Request bodies and large responses, for the hostile-client tests (issue 20).

- ``/`` (any method): reads ``wsgi.input`` whole with ``read()`` and answers
  ``read <n> bytes in <seconds> pid <pid>``: how long the read waited tells whether the body
  was already received before the application ran.
- ``/chunks``: reads ``wsgi.input`` with ``read(65536)`` until the end, same answer.
- ``/big?mb=N``: N MiB of response body (default 32), for clients that never read it.
"""

import os
import time
from urllib.parse import parse_qs

MIB = b"z" * (1 << 20)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/big":
        mb = int(parse_qs(environ.get("QUERY_STRING", "")).get("mb", ["32"])[0])
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(mb << 20))],
        )
        return [MIB] * mb
    stream = environ["wsgi.input"]
    started = time.monotonic()
    if path == "/chunks":
        size = 0
        while piece := stream.read(65536):
            size += len(piece)
    else:
        size = len(stream.read())
    took = time.monotonic() - started
    body = f"read {size} bytes in {took:.3f} pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
