"""RFC 9110/9112 request rules through the real process, for sync, gthread and gevent
(issue 20, "the last RFC gaps").

Why here and not only in the corpus: the corpus proves what the parser decides; these prove
what a client gets from the running server: the status, a closed connection after an error,
the application never called for a refused request (the echo app would answer 200 with its
JSON), and a worker that lives on to serve the next request.

Speed: one server per worker class (``echo:app``, default settings, ``-w 1``) serves every
parametrized request, started on first use and shared by the module; only the
``limit_request_line`` settings need servers of their own (sync and gthread).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, launch, read_all, wait_until


def _needs(lib: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(lib) is None, reason=f"-k {lib} needs {lib}, not importable"
    )


KINDS = [
    pytest.param("sync", id="sync"),
    pytest.param("gthread", id="gthread"),
    pytest.param("gevent", id="gevent", marks=_needs("gevent")),
]
SETTING_KINDS = ["sync", "gthread"]
# The refusals are the parser's, shared by every worker type: the asgi worker (its echo twin,
# tests/apps/asgiapps.py) must give the same answers.
REFUSAL_KINDS = [*KINDS, pytest.param("asgi", id="asgi")]


class Answer:
    """What came back on one connection: the status (None: closed without a response)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if raw.startswith(b"HTTP/1.1 ") else None
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    @property
    def info(self) -> dict[str, Any]:
        """The echo app's JSON line: proof that the application ran."""
        return json.loads(self.body.partition(b"\n")[0])

    @property
    def app_ran(self) -> bool:
        return b'"REQUEST_METHOD"' in self.body

    def __repr__(self) -> str:
        return f"<Answer {self.raw[:300]!r}>"


def ask(server: Server, data: bytes) -> Answer:
    """Send ``data`` then EOF on a fresh connection; read until the server closes."""
    with socket.create_connection((server.host, server.port), timeout=10) as c:
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN
            pass  # the server answered and closed before reading everything
        return Answer(read_all(c))


def _answers(server: Server) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.log[-3000:]}")
    try:
        return ask(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """``serve(kind, *flags)``: a running ``echo:app`` server, one per (kind, flags)."""
    tmp: Path = tmp_path_factory.mktemp("rules")
    servers: dict[tuple[str, ...], Server] = {}

    def get(kind: str, *extra: str) -> Server:
        key = (kind, *extra)
        server = servers.get(key)
        if server is not None and server.proc.poll() is None:
            return server
        app = "asgiapps:echo" if kind == "asgi" else "echo:app"
        argv = ["-b", "127.0.0.1:0", "-k", kind, "-w", "1", *extra, app]
        server = launch(argv, tmp / f"{kind}-{len(servers)}", cwd=tmp)
        servers[key] = server
        server.port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 20)[0])
        wait_until(lambda: _answers(server), 20, 0.05, f"{kind} answering\n{server.log}")
        return server

    yield get
    for server in servers.values():
        try:
            server.stop(signal.SIGTERM, timeout=15)
        except AssertionError:
            pass
        server.kill_group()


def refused(server: Server, data: bytes, status: int) -> Answer:
    """``data`` gets ``status`` and a close, without the app; the worker serves on."""
    pids = server.worker_pids()
    answer = ask(server, data)
    assert answer.status == status, answer
    assert answer.headers.get("connection") == "close", answer
    assert not answer.app_ran, answer
    assert ask(server, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
    assert server.worker_pids() == pids
    return answer


# -- CONNECT -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"example.com:443", b"[::1]:8080"], ids=["name", "ipv6"])
@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_connect_is_refused_with_501_before_the_app(serve, kind, target):
    # a WSGI server cannot open a tunnel: 501 Not Implemented, and the connection closes
    # (the bytes after a CONNECT would be tunnel data, never another request)
    s = serve(kind)
    refused(s, b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n", 501)


# -- Host ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:  \t\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: \r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n",
    ],
    ids=["http11", "http11_ows_only", "http10", "asterisk_form"],
)
@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_empty_host_gets_400(serve, kind, request_bytes):
    # RFC 9110 §4.2.1: an http URI's host may not be empty
    refused(serve(kind), request_bytes, 400)


# -- request-target bytes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/caf\xc3\xa9",  # raw UTF-8
        b"/\xc0\xaf",  # overlong "/"
        b"/p?q=\xff",  # raw non-ASCII in the query
        b"/p#frag",  # a fragment is never sent (RFC 9112 §3.2)
        b"/p?q=1#f",
        b"/a\\b",  # backslash in the path
        b"/..\\..\\etc/passwd",
        b"/p?x=a\\b",  # and in the query
        b"http://good.example/caf\xc3\xa9",  # absolute-form too
    ],
    ids=[
        "utf8",
        "overlong",
        "query_non_ascii",
        "fragment",
        "query_fragment",
        "backslash",
        "backslash_traversal",
        "query_backslash",
        "absolute_utf8",
    ],
)
@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_target_bytes_outside_the_uri_grammar_get_400(serve, kind, target):
    refused(serve(kind), b"GET " + target + b" HTTP/1.1\r\nHost: good.example\r\n\r\n", 400)


# -- absolute-form -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, host",
    [
        (b"http://evil.example/x", b"good.example"),
        (b"http://good.example:8080/x", b"good.example"),
        (b"http://user@good.example/x", b"good.example"),  # RFC 9110 §4.2.4: no userinfo
        (b"http://user:pw@good.example/x", b"good.example"),
        (b"http://@good.example/x", b"good.example"),
    ],
    ids=["other_host", "other_port", "userinfo", "userinfo_password", "empty_userinfo"],
)
@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_absolute_form_authority_must_agree_with_host(serve, kind, target, host):
    # RFC 9112 §3.2.2: the target's authority replaces Host. When the two disagree, the
    # proxy in front and the application would see different hosts: refuse instead.
    refused(serve(kind), b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 400)


@pytest.mark.parametrize(
    "target, host, name",
    [
        (b"http://good.example/x", b"good.example", "good.example"),
        (b"http://GOOD.example:80/x", b"good.example", "GOOD.example"),
        (b"https://good.example/x", b"good.example:443", "good.example"),
    ],
    ids=["same", "case_and_default_port", "https_default_port"],
)
@pytest.mark.parametrize("kind", KINDS)
def test_absolute_form_matching_host_is_served(serve, kind, target, host, name):
    answer = ask(serve(kind), b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert answer.status == 200, answer
    info = answer.info
    assert (info["SERVER_NAME"], info["PATH_INFO"]) == (name, "/x")
    assert info["HTTP_HOST"] == host.decode()


# -- Expect --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"foo", b"100-continue, foo", b"100-continuex", b"100-continue=1"]
)
@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_unknown_expectation_gets_417(serve, kind, value):
    # RFC 9110 §10.1.1: an expectation the server does not meet gets 417
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: " + value + b"\r\n\r\nhi"
    refused(serve(kind), data, 417)


@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_100_continue_is_still_met(serve, kind):
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-Continue\r\n\r\nhi"
    answer = ask(serve(kind), data)
    # the body came with the head, so a "100 Continue" first is optional
    answer = Answer(answer.raw.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))
    assert answer.status == 200 and answer.body.endswith(b"\nhi"), answer


# -- request-line length -------------------------------------------------------------------


def line_of(size: int, prefix: bytes = b"GET /", suffix: bytes = b" HTTP/1.1") -> bytes:
    """A request line of exactly ``size`` bytes (without its CRLF)."""
    return prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix


def get_line(size: int) -> bytes:
    return line_of(size) + b"\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_default_request_line_limit_is_8190(serve, kind):
    # RFC 9112 §3: support request lines of at least 8000 octets
    s = serve(kind)
    answer = ask(s, b"GET /" + b"u" * 7900 + b"?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200, answer
    assert len(answer.info["PATH_INFO"]) == 7901
    assert ask(s, get_line(8190)).status == 200
    assert refused(s, get_line(8191), 414).body.startswith(b"414 URI Too Long")


@pytest.mark.parametrize(
    "data",
    [
        b"A" * 100_000 + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"A" * 100_000,  # never a space at all
        b"GET / HTTP/1.1" + b"1" * 100_000 + b"\r\nHost: x\r\n\r\n",
    ],
    ids=["method", "method_no_space", "version"],
)
@pytest.mark.parametrize("kind", REFUSAL_KINDS)
def test_long_method_or_version_is_not_414(serve, kind, data):
    # the URI is not what is long: 400 (or a plain close), never 414 URI Too Long
    s = serve(kind)
    answer = ask(s, data)
    assert answer.status in (400, None), answer
    assert not answer.app_ran
    assert ask(s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 200


@pytest.mark.parametrize("kind", SETTING_KINDS)
def test_limit_request_line_above_8190_is_honoured(serve, kind):
    s = serve(kind, "--limit-request-line", "16384")
    assert ask(s, get_line(16384)).status == 200
    refused(s, get_line(16385), 414)


@pytest.mark.parametrize("kind", SETTING_KINDS)
def test_limit_request_line_zero_means_the_hard_cap(serve, kind):
    # 0: no limit of the user's, only the server's own cap (1 MiB, as gunicorn's)
    s = serve(kind, "--limit-request-line", "0")
    answer = ask(s, get_line(100_000))
    assert answer.status == 200, answer
    assert len(answer.info["PATH_INFO"]) == 100_000 - len(b"GET  HTTP/1.1")
    refused(s, get_line(1024 * 1024 + 1), 414)


# -- header field size ---------------------------------------------------------------------


def field_line(size: int) -> bytes:
    """A field line of ``size`` bytes, without its CRLF."""
    return b"Someheader: " + b"v" * (size - len(b"Someheader: "))


@pytest.mark.parametrize("kind", KINDS)
def test_field_size_limit_counts_the_whole_line(serve, kind):
    # limit_request_field_size (8190) counts the field line with its CRLF, as gunicorn's
    # does: its corpus case invalid/008 (an 8189-byte line, 8191 with the CRLF) gets 431
    s = serve(kind)
    head = b"PUT /stuff/here?foo=bar HTTP/1.0\r\nContent-Type: application/json\r\n"
    refused(s, head + field_line(8189) + b"\r\n\r\n", 431)
    answer = ask(s, head + field_line(8188) + b"\r\n\r\n")
    assert answer.status == 200, answer
    assert len(answer.info["headers"]["HTTP_SOMEHEADER"]) == 8188 - len(b"Someheader: ")


# -- valid input stays valid ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_valid_input_stays_valid(serve, kind):
    s = serve(kind)
    # optional whitespace around field values (RFC 9110 §5.5)
    answer = ask(s, b"GET / HTTP/1.1\r\nHost: \t x \t\r\nX-A:\t v \t\r\nX-B:v\r\n\r\n")
    assert answer.status == 200, answer
    info = answer.info
    assert (info["HTTP_HOST"], info["headers"]["HTTP_X_A"], info["headers"]["HTTP_X_B"]) == (
        "x",
        "v",
        "v",
    )
    # leading zeros in Content-Length (RFC 9110 §8.6: 1*DIGIT)
    answer = ask(s, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0003\r\n\r\nabc")
    assert answer.status == 200 and answer.info["body_len"] == 3, answer
    assert answer.body.endswith(b"\nabc")
    # one empty line before the request line (RFC 9112 §2.2)
    answer = ask(s, b"\r\nGET /after-empty-line HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200 and answer.info["PATH_INFO"] == "/after-empty-line", answer
    # percent-encoded bytes in the target, non-ASCII and reserved ones (RFC 3986 §2.1)
    answer = ask(s, b"GET /caf%C3%A9/a%5Cb/%23x?q=%C3%A9%23%5C%2F HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200, answer
    info = answer.info
    assert info["PATH_INFO"] == "/caf\u00c3\u00a9/a\\b/#x"  # PEP 3333: decoded, latin-1
    assert info["QUERY_STRING"] == "q=%C3%A9%23%5C%2F"
    assert info["RAW_URI"] == "/caf%C3%A9/a%5Cb/%23x?q=%C3%A9%23%5C%2F"
    # every character RFC 3986 allows in a path and a query, unencoded, and those it does
    # not that browsers leave unencoded in a query (WHATWG URL: [ ] { } | ^ `)
    target = b"/az-._~!$&'()*+,;=:@%41/?/?a=b&c[]=d|e^f{g}`"
    answer = ask(s, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200 and answer.info["RAW_URI"] == target.decode(), answer
