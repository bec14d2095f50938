"""The ASGI contract pieces without a server: the application's shape (asgi/app.py), the
lifespan protocol (asgi/lifespan.py), scopes (asgi/scope.py), and response heads from ASGI
messages (http/response.py ``prepare_bytes`` and ``informational``). The worker itself is
driven through the real process in tests/e2e/test_asgi.py."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest

from greenhorn.asgi.app import NotAnASGIApp, as_asgi3
from greenhorn.asgi.lifespan import Lifespan, StartupFailed
from greenhorn.asgi.scope import header_list, http_scope, template
from greenhorn.http.parser import Parser
from greenhorn.http.response import InvalidResponse, informational, prepare_bytes

LOG = logging.getLogger("test-asgi")


async def asgi3(scope, receive, send):
    await send({"scope": scope["type"]})


class Asgi2:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await send({"asgi2": self.scope["type"]})


class Instance:
    async def __call__(self, scope, receive, send):
        await send({"instance": scope["type"]})


def wsgi(environ, start_response):
    return []


def sync_three(scope, receive, send):
    return asgi3(scope, receive, send)


def call(app, scope_type="http"):
    sent = []

    async def receive():
        return {}

    async def send(message):
        sent.append(message)

    asyncio.run(as_asgi3(app)({"type": scope_type}, receive, send))
    return sent


@pytest.mark.parametrize(
    "app, expected",
    [
        (asgi3, [{"scope": "http"}]),
        (Asgi2, [{"asgi2": "http"}]),
        (Instance(), [{"instance": "http"}]),
        (sync_three, [{"scope": "http"}]),
        (functools.partial(asgi3), [{"scope": "http"}]),
    ],
    ids=["asgi3", "asgi2_class", "instance", "sync_returning_awaitable", "partial"],
)
def test_application_shapes(app, expected):
    assert call(app) == expected


@pytest.mark.parametrize("app", [wsgi, 42], ids=["wsgi", "not_callable"])
def test_what_is_not_an_asgi_application(app):
    with pytest.raises(NotAnASGIApp):
        as_asgi3(app)


def lifespan_app(behaviour):
    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        message = await receive()
        assert message["type"] == "lifespan.startup"
        if behaviour == "raise":
            raise ValueError("no lifespan here")
        if behaviour == "return":
            return
        if behaviour == "hang":
            await asyncio.sleep(60)
        if behaviour == "fail":
            await send({"type": "lifespan.startup.failed", "message": "db down"})
            return
        scope["state"]["db"] = "up"
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    return app


def run_lifespan(behaviour, mode="auto", timeout=5.0):
    async def go():
        lifespan = Lifespan(lifespan_app(behaviour), mode, LOG)  # type: ignore[arg-type]
        await lifespan.startup(timeout)
        await lifespan.shutdown(5.0)
        return lifespan

    return asyncio.run(go())


def test_lifespan_startup_state_and_shutdown():
    lifespan = run_lifespan("ok")
    assert lifespan.supported and lifespan.state == {"db": "up"}


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_lifespan_startup_failed_fails_in_every_mode(mode):
    with pytest.raises(StartupFailed, match="db down"):
        run_lifespan("fail", mode)


@pytest.mark.parametrize("behaviour", ["raise", "return"])
def test_no_lifespan_support_is_fine_in_auto_and_fails_with_on(behaviour):
    assert not run_lifespan(behaviour, "auto").supported
    with pytest.raises(StartupFailed, match="did not complete"):
        run_lifespan(behaviour, "on")


def test_lifespan_startup_that_never_answers_times_out():
    with pytest.raises(StartupFailed, match=r"within 0\.2s"):
        run_lifespan("hang", "auto", timeout=0.2)


def test_scope_headers_paths_and_state():
    req = Parser().receive(
        b"GET /a%20b/c?x=%41 HTTP/1.0\r\nHost: h\r\nX-Thing: V\r\nX-Thing: W\r\n\r\n"
    )
    base = template("http", ("127.0.0.1", 80), ("10.0.0.1", 5000), False, "/root")
    state = {"shared": 1}
    scope = http_scope(base, req, state)  # type: ignore[arg-type]
    assert scope["http_version"] == "1.0" and scope["scheme"] == "http"
    assert (scope["path"], scope["raw_path"]) == ("/root/a b/c", b"/root/a%20b/c")
    assert scope["query_string"] == b"x=%41"
    assert scope["headers"] == [(b"host", b"h"), (b"x-thing", b"V"), (b"x-thing", b"W")]
    assert scope["state"] == state and scope["state"] is not state
    assert base["http_version"] == "1.1", "the template is not changed by a request"
    assert header_list([("A-B", "c")]) == [(b"a-b", b"c")]


def test_prepare_bytes_validates_like_prepare():
    head, framing, sent = prepare_bytes(
        201, [(b"content-type", b"text/plain")], (1, 1), "GET", True, "srv", 3
    )
    assert head.startswith(b"HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\n")
    assert b"Content-Length: 3\r\n" in head and framing.length == 3 and framing.keep_alive
    assert sent == [("content-type", "text/plain"), ("Content-Length", "3")]
    for bad in ([(b"x", b"a\r\nb: c")], [(b"bad name", b"v")], [("str", "pair")], [b"x"]):
        with pytest.raises(InvalidResponse):
            prepare_bytes(200, bad, (1, 1), "GET", True, "srv")
    with pytest.raises(InvalidResponse):
        prepare_bytes(99, [], (1, 1), "GET", True, "srv")
    # no length, HTTP/1.1 keep-alive: chunked; HTTP/1.0: close-delimited
    assert prepare_bytes(200, [], (1, 1), "GET", True, "srv")[1].chunked
    assert not prepare_bytes(200, [], (1, 0), "GET", True, "srv")[1].keep_alive


def test_informational_heads():
    assert (
        informational(103, [(b"link", b"</a>")])
        == b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    )
    for code in (101, 200, 99):
        with pytest.raises(InvalidResponse):
            informational(code, [])
    with pytest.raises(InvalidResponse):
        informational(103, [("Link", "a\nb")])
