"""The WSGI applications the benchmarks serve, identical for greenhorn and gunicorn.

Why a module of its own: both servers must run the very same code, loaded the same way
(``--chdir benchmarks/apps benchapp:NAME``), so a difference in the figures is the server's.
Each app does as little as it can; the bodies are built once at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]

HELLO = b"Hello, world!\n"
BIG = b"x" * (64 * 1024)  # the 64 KiB response
PIECE = b"y" * 2048  # one piece of the streamed response
PIECES = 32  # 32 x 2 KiB = 64 KiB, sent without a Content-Length (chunked on HTTP/1.1)


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The smallest response: what per-request overhead costs."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [HELLO]


def big(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """64 KiB in one body item, with its length."""
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "65536")]
    )
    return [BIG]


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole request body through ``wsgi.input`` and send it back."""
    body = environ["wsgi.input"].read()
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _pieces() -> Iterator[bytes]:
    for _ in range(PIECES):
        yield PIECE


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A generator with no Content-Length: the server frames it (chunked on keep-alive)."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _pieces()
