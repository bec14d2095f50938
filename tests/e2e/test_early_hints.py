"""103 Early Hints from WSGI applications on every WSGI worker type (issue 23; gunicorn 25+):
``environ['wsgi.early_hints'](headers)`` sends an interim ``103`` before the response,
skips it for HTTP/1.0 clients, and validates the headers like any response header. Seen
on a raw socket, byte for byte. (The ASGI side, ``http.response.informational``, is in
test_asgi.py.)"""

from __future__ import annotations

import importlib.util

import pytest

HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n"
)


def _needs(lib: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(lib) is None, reason=f"needs {lib}")


@pytest.mark.parametrize(
    "kind",
    [
        "sync",
        "gthread",
        pytest.param("gevent", marks=_needs("gevent")),
        pytest.param("eventlet", marks=_needs("eventlet")),
    ],
)
def test_early_hints_on_a_raw_socket(greenhorn, kind):
    s = greenhorn("-k", kind, "hints:app")
    data = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(HINTS + b"HTTP/1.1 200 OK\r\n"), data
    assert data.endswith(b"\r\n\r\nafter hints\n")
    # HTTP/1.0 has no interim responses: skipped silently, the response as usual
    data = s.raw(b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"103" not in data, data
    # a header that could split the response is refused: nothing of it is sent, 500
    data = s.raw(b"GET /bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 "), data
    assert b"Injected" not in data and b"103" not in data
