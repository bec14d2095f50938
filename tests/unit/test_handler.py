"""The connection handler: one request cycle over a real socket pair, no processes.

``Handler.serve`` is driven over ``socket.socketpair()``: the test writes raw request bytes on
one end and reads raw response bytes on the other, so the whole path (receive under a
deadline, parse, environ, application, framing, send, keep-alive verdict) runs as in a worker.
Most cases pre-send the request and call ``serve`` in the test thread; the few that need a
conversation (``100 Continue``) run ``serve`` in a helper thread with a bounded join.
"""

from __future__ import annotations

import dataclasses
import io
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from greenhorn.config import Config
from greenhorn.http.parser import Limits, Parser
from greenhorn.workers import handler as handler_module
from greenhorn.workers.base import limits_from
from greenhorn.workers.connection import Connection
from greenhorn.workers.handler import CLOSE, READY, Handler
from greenhorn.workers.handler import WAIT as PARKED
from greenhorn.wsgi.response import Response

WAIT = 5.0  # generous bound for every socket read and thread join


class FakeLog:
    """The logger methods the handler uses, recording (level, message)."""

    def __init__(self, access_enabled: bool = False) -> None:
        self.access_enabled = access_enabled
        self.records: list[tuple[str, str]] = []
        self.accessed: list[tuple[object, Response, dict, float]] = []

    def _add(self, level: str, msg: object, args: tuple) -> None:
        text = str(msg) % args if args else str(msg)
        if level == "exception":
            exc = sys.exc_info()[1]
            text += f" | {type(exc).__name__}: {exc}"
        self.records.append((level, text))

    def critical(self, msg: object, *args: object, **kw: object) -> None:
        self._add("critical", msg, args)

    def error(self, msg: object, *args: object, **kw: object) -> None:
        self._add("error", msg, args)

    def warning(self, msg: object, *args: object, **kw: object) -> None:
        self._add("warning", msg, args)

    def info(self, msg: object, *args: object, **kw: object) -> None:
        self._add("info", msg, args)

    def debug(self, msg: object, *args: object, **kw: object) -> None:
        self._add("debug", msg, args)

    def exception(self, msg: object, *args: object, **kw: object) -> None:
        self._add("exception", msg, args)

    def access(self, req: object, resp: Response, environ: dict, request_time: float) -> None:
        self.accessed.append((req, resp, environ, request_time))

    def levels(self) -> list[str]:
        return [level for level, _ in self.records]


class FakeWorker:
    def __init__(self) -> None:
        self.alive = True
        self.nr = 0
        self.max_requests = 1 << 62


class Reader:
    """Buffered reads of raw responses from the client end of the pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        sock.settimeout(WAIT)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"EOF after {self.buf!r}")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"EOF after {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def head(self) -> tuple[int, list[tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"EOF after {self.buf!r}")
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        fields = [tuple(line.split(": ", 1)) for line in lines[1:]]
        return int(lines[0][9:12]), fields, raw + b"\r\n\r\n"  # type: ignore[return-value]

    def response(self, method: str = "GET") -> Resp:
        code, fields, raw = self.head()
        resp = Resp(code, fields, b"", raw)
        if method == "HEAD" or code < 200 or code in (204, 304):
            return resp
        if resp.get("content-length") is not None:
            resp.body = self._take(int(resp.get("content-length")))
        elif resp.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._line(), 16)
                if size == 0:
                    assert self._line() == b""
                    break
                resp.body += self._take(size)
                assert self._take(2) == b"\r\n"
        else:
            resp.body = self.rest()
        resp.raw += resp.body
        return resp

    def rest(self) -> bytes:
        """Everything until the server end closes."""
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data


@dataclasses.dataclass
class Resp:
    status: int
    fields: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def get(self, name: str) -> str | None:
        values = [v for k, v in self.fields if k.lower() == name.lower()]
        assert len(values) <= 1, values
        return values[0] if values else None


class Rig:
    """A handler, a connection on one end of a socket pair, and a reader on the other."""

    def __init__(
        self,
        app: Callable,
        cfg: Config | None = None,
        keep_alive: bool = True,
        log: FakeLog | None = None,
        peer: str = "127.0.0.1",
    ) -> None:
        self.server, self.client = socket.socketpair()
        self.log = log or FakeLog()
        self.worker = FakeWorker()
        self.handler = Handler(
            app,
            cfg or Config(),
            self.log,
            self.worker,
            keep_alive=keep_alive,
            multithread=False,
            board=None,
        )
        server = ("localhost", "8000")
        self.conn = Connection(self.server, (peer, 40000), server, Limits(), time.monotonic())
        self.reader = Reader(self.client)

    def send(self, data: bytes) -> None:
        self.client.sendall(data)

    def serve(self, **kw: object) -> bool:
        return self.handler.serve(self.conn, **kw)  # type: ignore[arg-type]

    def serve_in_thread(self) -> tuple[threading.Thread, list[bool]]:
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(self.serve()), daemon=True)
        thread.start()
        return thread, result

    def finish(self) -> bytes:
        """Close the server end and return whatever the client had not read yet."""
        self.conn.close()
        return self.reader.rest()

    def close(self) -> None:
        self.conn.close()
        self.client.close()


@pytest.fixture
def rigs() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(app: Callable, **kw: object) -> Rig:
        rig = Rig(app, **kw)  # type: ignore[arg-type]
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


@pytest.fixture(autouse=True)
def _no_script_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRIPT_NAME", raising=False)


def request(target: str = "/", *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def hello(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def echo_path(environ: dict, start_response: Callable) -> list[bytes]:
    body = environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def echo_body(environ: dict, start_response: Callable) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def ignore_body(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]


class Tracked:
    """A response iterable that records whether ``close()`` was called."""

    def __init__(self, items: list, fail_at: int | None = None) -> None:
        self.items = items
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("boom in the iterable")
            yield item

    def close(self) -> None:
        self.closed += 1


def tracked_app(iterable: Tracked, headers: list | None = None) -> Callable:
    def app(environ: dict, start_response: Callable) -> Tracked:
        start_response("200 OK", list(headers or []))
        return iterable

    return app


# -- the everyday path --------------------------------------------------------------------


def test_hello_response_bytes(rigs):
    rig = rigs(hello)
    rig.send(request())
    assert rig.serve() is True
    resp = rig.reader.response()
    head, _, body = resp.raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[:3] == [b"HTTP/1.1 200 OK", b"Content-Type: text/plain", b"Content-Length: 5"]
    assert lines[3].startswith(b"Date: ") and lines[3].endswith(b" GMT")
    assert lines[4:] == [b"Server: greenhorn"]
    assert body == b"hello"
    assert rig.log.levels() == []
    assert rig.finish() == b""  # nothing else was written


def test_keep_alive_two_requests_on_one_connection(rigs):
    rig = rigs(echo_path)
    rig.send(request("/one"))
    assert rig.serve() is True
    assert rig.reader.response().body == b"/one"
    rig.send(request("/two"))
    assert rig.serve() is True
    resp = rig.reader.response()
    assert (resp.status, resp.body, resp.get("connection")) == (200, b"/two", None)
    assert rig.conn.requests == 2


def test_handler_without_keep_alive_closes(rigs):
    rig = rigs(hello, keep_alive=False)
    rig.send(request())
    assert rig.serve() is False
    assert rig.reader.response().get("connection") == "close"


def test_client_connection_close_is_honoured(rigs):
    rig = rigs(hello)
    rig.send(request("/", "Connection: close"))
    assert rig.serve() is False
    assert rig.reader.response().get("connection") == "close"


def test_http10_closes_unless_keep_alive_is_asked(rigs):
    rig = rigs(hello)
    rig.send(b"GET / HTTP/1.0\r\n\r\n")
    assert rig.serve() is False
    assert rig.reader.response().get("connection") == "close"

    rig = rigs(hello)
    rig.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert rig.serve() is True
    assert rig.reader.response().get("connection") == "keep-alive"


def test_stopping_worker_closes_after_the_response(rigs):
    rig = rigs(hello)
    rig.worker.alive = False
    rig.send(request())
    assert rig.serve() is False
    resp = rig.reader.response()
    assert (resp.status, resp.get("connection")) == (200, "close")


def test_pipelined_requests_in_one_send(rigs):
    rig = rigs(echo_path)
    rig.send(request("/a") + request("/b") + request("/c"))
    assert [rig.serve(), rig.serve(), rig.serve()] == [True, True, True]
    assert [rig.reader.response().body for _ in range(3)] == [b"/a", b"/b", b"/c"]


def test_idle_keep_alive_connection_closes_quietly(rigs):
    rig = rigs(hello)
    rig.send(request())
    assert rig.serve() is True
    rig.reader.response()
    started = time.monotonic()
    assert rig.serve(idle=0.05) is False
    assert time.monotonic() - started < WAIT
    assert rig.finish() == b""


def test_client_closing_between_requests_ends_quietly(rigs):
    rig = rigs(hello)
    rig.send(request())
    assert rig.serve() is True
    rig.client.shutdown(socket.SHUT_WR)
    assert rig.serve() is False
    rig.reader.response()
    assert rig.finish() == b""
    assert "warning" not in rig.log.levels()


def test_access_log_sees_the_response(rigs):
    rig = rigs(hello, log=FakeLog(access_enabled=True))
    rig.send(request("/logged?x=1"))
    assert rig.serve() is True
    [(req, resp, environ, duration)] = rig.log.accessed
    assert (req.method, req.uri) == ("GET", "/logged?x=1")
    assert (resp.status, resp.status_code, resp.sent, resp.response_length) == ("200 OK", 200, 5, 5)
    assert ("Content-Type", "text/plain") in resp.headers
    assert environ["PATH_INFO"] == "/logged"
    assert duration >= 0


def test_post_request_hook_gets_the_response(rigs):
    seen = []
    cfg = dataclasses.replace(Config(), post_request=lambda w, req, env, resp: seen.append(resp))
    rig = rigs(hello, cfg=cfg)
    rig.send(request())
    assert rig.serve() is True
    assert [r.status_code for r in seen] == [200]


def test_hooks_get_the_worker_request_and_response(rigs):
    seen = []
    cfg = dataclasses.replace(
        Config(),
        pre_request=lambda worker, req: seen.append(("pre", worker, req.path)),
        post_request=lambda worker, req, env, resp: seen.append(("post", worker, resp.sent)),
    )
    rig = rigs(hello, cfg=cfg)
    rig.send(request("/hooked"))
    assert rig.serve() is True
    assert seen == [("pre", rig.worker, "/hooked"), ("post", rig.worker, 5)]


def test_post_request_hook_failure_is_logged_and_contained(rigs):
    def post_request(worker, req, env, resp):
        raise RuntimeError("hook broke")

    rig = rigs(hello, cfg=dataclasses.replace(Config(), post_request=post_request))
    rig.send(request() + request())
    assert rig.serve() is True
    assert rig.serve() is True
    assert [rig.reader.response().status for _ in range(2)] == [200, 200]
    assert any(level == "exception" and "hook broke" in text for level, text in rig.log.records)


def test_client_closing_without_a_byte_is_quiet(rigs):
    rig = rigs(hello)
    rig.client.shutdown(socket.SHUT_WR)
    assert rig.serve() is False
    assert rig.finish() == b""
    assert rig.log.records == []


def empty_list(environ, start_response):
    start_response("200 OK", [])
    return []


def empty_generator(environ, start_response):
    start_response("200 OK", [])
    yield from ()


@pytest.mark.parametrize("app", [empty_list, empty_generator])
def test_empty_body_gets_content_length_zero(rigs, app):
    rig = rigs(app)
    rig.send(request() + request())
    assert rig.serve() is True
    resp = rig.reader.response()
    assert (resp.get("content-length"), resp.body) == ("0", b"")
    assert rig.serve() is True


def test_file_wrapper_is_sent_whole_with_its_length(rigs, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 300)

    def app(environ, start_response):
        start_response("200 OK", [])
        f = open(path, "rb")  # noqa: SIM115 - the wrapper's close() closes it
        f.seek(1000)
        return environ["wsgi.file_wrapper"](f)

    rig = rigs(app)
    rig.send(request() + request())
    thread, result = rig.serve_in_thread()  # 75 kB may not fit the socket buffer
    resp = rig.reader.response()
    thread.join(WAIT)
    assert result == [True]
    assert resp.get("content-length") == str(256 * 300 - 1000)
    assert resp.body == (bytes(range(256)) * 300)[1000:]


def test_file_wrapper_without_a_file_descriptor_is_iterated(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 20000), 8192)

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is True
    assert rig.reader.response().body == b"x" * 20000


# -- request bodies -----------------------------------------------------------------------


def test_body_is_read_by_the_app(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Content-Length: 11", method="POST", body=b"hello world"))
    assert rig.serve() is True
    assert rig.reader.response().body == b"hello world"


def test_large_body_arriving_after_the_head_is_read_whole_then_the_next_request(rigs):
    """read() takes the rest of a Content-Length body straight from the socket: part came
    with the head, the rest later in pieces; the pipelined request after it is intact."""
    rig = rigs(echo_body)
    body = bytes(range(256)) * 160  # 40 KiB: the echo fits the socket buffer unread
    head = request("/", f"Content-Length: {len(body)}", method="POST")
    rig.send(head + body[:1000])
    thread, result = rig.serve_in_thread()
    for start in range(1000, len(body), 7000):
        time.sleep(0.01)
        rig.send(body[start : start + 7000])
    rig.send(request("/next"))
    thread.join(WAIT)
    assert result == [True]
    assert rig.reader.response().body == body
    assert rig.serve() is True
    assert rig.reader.response().body == b""  # /next: GET with no body echoes nothing


@pytest.mark.parametrize(
    "size, expect", [(5, b"hello"), (11, b"hello world"), (99, b"hello world")]
)
def test_read_with_a_size_takes_the_rest_at_once_only_when_it_fits(rigs, size, expect):
    def read_sized(environ, start_response):
        first = environ["wsgi.input"].read(size)
        rest = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [first + b"|" + rest]

    rig = rigs(read_sized)
    rig.send(request("/", "Content-Length: 11", method="POST", body=b"hello world"))
    assert rig.serve() is True
    assert rig.reader.response().body == expect + b"|" + b"hello world"[len(expect) :]


def test_body_cut_short_by_the_client_is_400(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Content-Length: 100", method="POST", body=b"only 12 byte"))
    rig.client.shutdown(socket.SHUT_WR)
    assert rig.serve() is False
    assert rig.reader.response().status == 400


def test_chunked_body_is_read_by_the_app(rigs):
    rig = rigs(echo_body)
    chunks = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    rig.send(request("/", "Transfer-Encoding: chunked", method="POST", body=chunks))
    assert rig.serve() is True
    assert rig.reader.response().body == b"hello world"


def test_expect_100_continue_when_the_app_reads(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Expect: 100-continue", "Content-Length: 5", method="POST"))
    thread, result = rig.serve_in_thread()
    interim = rig.reader._take(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    rig.send(b"hello")
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result == [True]
    resp = rig.reader.response()
    assert (resp.status, resp.body) == (200, b"hello")


def test_expect_100_continue_not_sent_when_the_body_is_already_here(rigs):
    rig = rigs(echo_body)
    rig.send(
        request("/", "Expect: 100-continue", "Content-Length: 5", method="POST", body=b"hi!!!")
    )
    assert rig.serve() is True
    resp = rig.reader.response()
    assert resp.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert resp.body == b"hi!!!"


def test_expect_100_continue_not_sent_when_the_app_does_not_read(rigs):
    rig = rigs(hello)
    rig.send(request("/", "Expect: 100-continue", "Content-Length: 5", method="POST"))
    thread, result = rig.serve_in_thread()
    resp = rig.reader.response()
    assert resp.status == 200
    try:
        rig.send(b"hello")  # a client that gave up waiting and sends the body anyway
    except OSError:
        pass  # the server closed: fine
    thread.join(WAIT)
    assert not thread.is_alive()
    later = rig.finish()
    assert b"100 Continue" not in later
    assert b"100 Continue" not in resp.raw


def test_unread_body_is_drained_before_the_next_request(rigs):
    rig = rigs(ignore_body)
    first = request("/a", "Content-Length: 5", method="POST", body=b"xxxxx")
    chunked = request(
        "/b", "Transfer-Encoding: chunked", method="POST", body=b"3\r\nyyy\r\n0\r\n\r\n"
    )
    rig.send(first + chunked + request("/c"))
    assert [rig.serve(), rig.serve(), rig.serve()] == [True, True, True]
    assert [rig.reader.response().body for _ in range(3)] == [b"/a", b"/b", b"/c"]


def test_partly_read_body_is_drained(rigs):
    def read_some(environ, start_response):
        environ["wsgi.input"].read(2)
        start_response("200 OK", [])
        return [b"ok"]

    rig = rigs(read_some)
    rig.send(request("/", "Content-Length: 6", method="POST", body=b"abcdef") + request("/n"))
    assert rig.serve() is True
    assert rig.serve() is True
    assert [rig.reader.response().body for _ in range(2)] == [b"ok", b"ok"]


def test_unread_body_over_the_drain_limit_closes(rigs, monkeypatch):
    monkeypatch.setattr(handler_module, "DRAIN_LIMIT", 16)
    rig = rigs(ignore_body)
    rig.send(request("/", "Content-Length: 100", method="POST", body=b"z" * 100) + request("/n"))
    assert rig.serve() is False
    assert rig.reader.response().status == 200


def test_slow_body_below_the_minimum_rate_is_408(rigs):
    cfg = dataclasses.replace(Config(), header_timeout=0.2, body_min_rate=1024)
    rig = rigs(echo_body, cfg=cfg)
    rig.send(request("/", "Content-Length: 1000", method="POST", body=b"only a little"))
    started = time.monotonic()
    assert rig.serve() is False
    assert time.monotonic() - started < WAIT
    resp = rig.reader.response()
    assert resp.status == 408
    assert resp.get("connection") == "close"
    assert "warning" in rig.log.levels()


def test_bad_chunked_body_read_by_the_app_is_400(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Transfer-Encoding: chunked", method="POST", body=b"zz\r\nhello\r\n"))
    assert rig.serve() is False
    resp = rig.reader.response()
    assert resp.status == 400
    assert resp.get("connection") == "close"


# -- application errors -------------------------------------------------------------------


def test_app_raising_before_start_response_is_500(rigs):
    def app(environ, start_response):
        raise ValueError("kaput")

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is False
    resp = rig.reader.response()
    assert resp.status == 500
    assert resp.get("connection") == "close"
    assert int(resp.get("content-length")) == len(resp.body)
    assert b"kaput" not in resp.raw  # no internals leak to the client
    [(level, text)] = rig.log.records
    assert level == "exception" and "ValueError: kaput" in text


def test_iterable_raising_before_the_first_item_is_500(rigs):
    iterable = Tracked([b"never"], fail_at=0)
    rig = rigs(tracked_app(iterable))
    rig.send(request())
    assert rig.serve() is False
    assert rig.reader.response().status == 500
    assert iterable.closed == 1
    assert "exception" in rig.log.levels()


def test_app_raising_after_the_head_closes_without_finishing(rigs):
    iterable = Tracked([b"part one", b"never"], fail_at=1)
    rig = rigs(tracked_app(iterable))
    rig.send(request())
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in raw
    assert raw.endswith(b"8\r\npart one\r\n")  # no last chunk: the client sees a truncation
    assert b"500" not in raw
    assert iterable.closed == 1
    assert "exception" in rig.log.levels()


@pytest.mark.parametrize(
    "items, head_sent",
    [
        (["text"], False),
        ([bytearray(b"x")], False),
        ([None], False),
        ([1], False),
        ([b"", "text"], False),
        (["text", b"ok"], False),
        ([b"ok", "text"], True),
        ([b"ok", None], True),
    ],
)
def test_non_bytes_items_are_refused(rigs, items, head_sent):
    iterable = Tracked(items)
    rig = rigs(tracked_app(iterable))
    rig.send(request())
    assert rig.serve() is False
    raw = rig.finish()
    assert iterable.closed == 1
    assert "exception" in rig.log.levels()
    if not head_sent:
        assert raw.startswith(b"HTTP/1.1 500 ")
    else:  # too late for a 500: truncated, never a second status line
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert raw.count(b"HTTP/1.1") == 1
        assert raw.endswith(b"2\r\nok\r\n")


def test_app_returning_none_is_500(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is False
    assert rig.reader.response().status == 500


def test_app_not_calling_start_response_is_500(rigs):
    rig = rigs(lambda environ, start_response: [b"no head"])
    rig.send(request())
    assert rig.serve() is False
    assert rig.reader.response().status == 500


@pytest.mark.parametrize(
    "headers", [[("X-Bad", "a\r\nInjected: yes")], [("Bad Name", "v")], [("X", "\u20ac")]]
)
def test_invalid_app_header_is_500_and_never_sent(rigs, headers):
    iterable = Tracked([b"body"])
    rig = rigs(tracked_app(iterable, headers))
    rig.send(request())
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in raw and b"Bad Name" not in raw
    assert iterable.closed == 1
    assert "error" in rig.log.levels()


@pytest.mark.parametrize("status", ["200", "OK", "200 OK\r\nX-Injected: 1", 200])
def test_invalid_app_status_is_500(rigs, status):
    def app(environ, start_response):
        start_response(status, [])
        return [b"body"]

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in raw


def test_start_response_twice_without_exc_info_is_500(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is False
    assert rig.reader.response().status == 500


def test_headers_must_be_a_list(rigs):
    def app(environ, start_response):
        start_response("200 OK", (("X-A", "1"),))
        return [b"x"]

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is False
    assert rig.reader.response().status == 500


def test_exc_info_before_the_head_replaces_the_response(rigs):
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("inner")
        except KeyError:
            start_response("503 Sorry", [("X-Second", "2")], sys.exc_info())
        return [b"sorry"]

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is True
    resp = rig.reader.response()
    assert (resp.status, resp.body) == (503, b"sorry")
    assert resp.get("x-second") == "2" and resp.get("x-first") is None


def test_exc_info_after_the_head_reraises_and_closes(rigs):
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"started")
        try:
            raise KeyError("inner")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"not reached"]

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Oops" not in raw and b"not reached" not in raw
    assert any(level == "exception" and "KeyError" in text for level, text in rig.log.records)


def test_iterable_close_is_called_on_success(rigs):
    iterable = Tracked([b"a", b"b"])
    rig = rigs(tracked_app(iterable))
    rig.send(request())
    assert rig.serve() is True
    assert rig.reader.response().body == b"ab"
    assert iterable.closed == 1


def test_generator_is_closed_when_the_client_went_away(rigs):
    state = {"closed": False}

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            while True:
                yield b"x" * 65536
        finally:
            state["closed"] = True

    rig = rigs(app)
    rig.send(request())
    rig.client.close()
    assert rig.serve() is False
    assert state["closed"] is True


def test_close_raising_is_logged_and_contained(rigs):
    class BadClose(Tracked):
        def close(self) -> None:
            raise OSError("close failed")

    rig = rigs(tracked_app(BadClose([b"fine"])))
    rig.send(request())
    rig.serve()
    assert rig.reader.response().body == b"fine"
    assert any("close failed" in text for _, text in rig.log.records)


# -- write() and framing ------------------------------------------------------------------


def test_write_callable_then_iterable(rigs):
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"abc")
        write(b"")
        return [b"def", b"", b"g"]

    rig = rigs(app)
    rig.send(request())
    assert rig.serve() is True
    resp = rig.reader.response()
    assert resp.get("transfer-encoding") == "chunked"
    assert resp.body == b"abcdefg"
    assert b"\r\n0\r\n\r\n" not in resp.raw[: -len(b"0\r\n\r\n")]  # no empty chunk mid-body


def test_generator_without_length_is_chunked(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"one"
        yield b"two"

    rig = rigs(app)
    rig.send(request() + request("/next"))
    assert rig.serve() is True
    assert rig.serve() is True
    assert rig.reader.response().body == b"onetwo"
    assert rig.reader.response().status == 200


def test_generator_on_http10_is_close_delimited(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"one"
        yield b"two"

    rig = rigs(app)
    rig.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.endswith(b"\r\n\r\nonetwo")
    assert b"Transfer-Encoding" not in raw


@pytest.mark.parametrize("items", [[b"hello"], [b"he", b"llo"], [b"hel", b"lo", b"!"]])
def test_body_longer_than_content_length_is_cut_and_closed(rigs, items):
    rig = rigs(tracked_app(Tracked(items), [("Content-Length", "3")]))
    rig.send(request() + request("/next"))
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.endswith(b"\r\n\r\nhel")
    assert raw.count(b"HTTP/1.1") == 1


@pytest.mark.parametrize("items", [[b"hello"], [b"he", b"llo"], []])
def test_body_shorter_than_content_length_closes(rigs, items):
    rig = rigs(tracked_app(Tracked(items), [("Content-Length", "10")]))
    rig.send(request() + request("/next"))
    assert rig.serve() is False
    raw = rig.finish()
    assert raw.endswith(b"\r\n\r\n" + b"".join(items))
    assert raw.count(b"HTTP/1.1") == 1


def test_exact_content_length_keeps_the_connection(rigs):
    rig = rigs(tracked_app(Tracked([b"he", b"llo"]), [("Content-Length", "5")]))
    rig.send(request())
    assert rig.serve() is True
    assert rig.reader.response().body == b"hello"


def test_head_sends_no_body_and_keeps_the_connection(rigs):
    rig = rigs(hello)
    rig.send(request(method="HEAD") + request("/after"))
    assert rig.serve() is True
    assert rig.serve() is True
    head = rig.reader.response(method="HEAD")
    assert (head.status, head.get("content-length")) == (200, "5")
    after = rig.reader.response()
    assert after.body == b"hello"


def test_head_with_a_generator_is_neither_chunked_nor_closed(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"body"

    rig = rigs(app)
    rig.send(request(method="HEAD") + request("/after"))
    assert rig.serve() is True
    head = rig.reader.response(method="HEAD")
    assert head.get("transfer-encoding") is None
    assert rig.serve() is True
    assert rig.reader.response().body == b"body"


def test_204_with_an_empty_body(rigs):
    def app(environ, start_response):
        start_response("204 No Content", [])
        return [b""]

    rig = rigs(app)
    rig.send(request() + request())
    assert rig.serve() is True
    resp = rig.reader.response()
    assert resp.status == 204
    assert resp.get("content-length") is None and resp.get("transfer-encoding") is None


# -- protocol errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\n\r\n", 505),
    ],
)
def test_malformed_request_answers_its_status_and_closes(rigs, raw, code):
    called = []
    rig = rigs(lambda environ, start_response: called.append(1) or [])
    rig.send(raw)
    assert rig.serve() is False
    resp = rig.reader.response()
    assert resp.status == code
    assert resp.get("connection") == "close"
    assert int(resp.get("content-length")) == len(resp.body)
    assert called == []
    assert "warning" in rig.log.levels()
    assert rig.conn.closed


def test_malformed_second_request_after_a_good_one(rigs):
    rig = rigs(hello)
    rig.send(request() + b"BAD\r\n\r\n")
    assert rig.serve() is True
    assert rig.serve() is False
    assert rig.reader.response().status == 200
    assert rig.reader.response().status == 400


def test_conflicting_scheme_headers_from_a_trusted_peer_are_400(rigs):
    called = []
    rig = rigs(lambda environ, start_response: called.append(1) or [])
    rig.send(request("/", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"))
    assert rig.serve() is False
    assert rig.reader.response().status == 400
    assert called == []


def test_scheme_header_from_a_trusted_peer_sets_url_scheme(rigs):
    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["wsgi.url_scheme"].encode()]

    rig = rigs(app)
    rig.send(request("/", "X-Forwarded-Proto: https"))
    assert rig.serve() is True
    assert rig.reader.response().body == b"https"


# -- head deadline ------------------------------------------------------------------------


def short_timeouts() -> Config:
    return dataclasses.replace(Config(), header_timeout=0.2)


def test_header_timeout_with_partial_head_is_408(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    rig.send(b"GET / HTTP/1.1\r\nHost: sl")
    started = time.monotonic()
    assert rig.serve() is False
    assert 0.15 <= time.monotonic() - started < WAIT
    resp = rig.reader.response()
    assert resp.status == 408
    assert resp.get("connection") == "close"


def test_header_timeout_without_any_byte_closes_silently(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    assert rig.serve() is False
    assert rig.finish() == b""


def test_header_timeout_on_an_idle_kept_alive_connection_is_silent(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    rig.send(request())
    assert rig.serve() is True
    rig.reader.response()
    started = time.monotonic()
    assert rig.serve() is False
    assert time.monotonic() - started < WAIT
    assert rig.finish() == b""


def test_header_timeout_on_a_partial_second_request_is_408(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    rig.send(request() + b"GET /sec")
    assert rig.serve() is True
    assert rig.serve() is False
    assert rig.reader.response().status == 200
    assert rig.reader.response().status == 408


def test_slowloris_trickle_is_cut_at_the_head_deadline(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    stop = threading.Event()

    def trickle() -> None:
        for byte in request("/", "X-Pad: " + "p" * 60):  # about 2.7 s at one byte per 30 ms
            if stop.wait(0.03):
                return
            try:
                rig.client.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        assert rig.serve() is False  # each byte did not extend the head deadline
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        thread.join(WAIT)
    assert rig.reader.response().status == 408


# -- waiting without holding the worker: poll_request, expire (issue 20) -------------------


def test_poll_request_is_ready_when_the_whole_request_is_there(rigs):
    rig = rigs(hello)
    rig.send(request())
    assert rig.handler.poll_request(rig.conn) == READY
    assert rig.handler.run(rig.conn) is True
    assert rig.reader.response().body == b"hello"
    assert rig.conn.began == 0.0  # the next request's time starts at its first byte


def test_poll_request_waits_for_a_partial_head_until_its_deadline(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    rig.send(b"GET / HTTP/1.1\r\nHo")
    assert rig.handler.poll_request(rig.conn) == PARKED
    assert rig.conn.deadline == pytest.approx(rig.conn.accepted_at + 0.2)
    rig.send(b"st: x\r\n\r\n")
    assert rig.handler.poll_request(rig.conn) == READY
    assert rig.conn.request is not None and rig.conn.request.host == "x"


def test_expire_answers_408_to_a_partial_head_and_closes_a_silent_one_quietly(rigs):
    partial = rigs(hello, cfg=short_timeouts())
    partial.send(b"GET / HTT")
    assert partial.handler.poll_request(partial.conn) == PARKED
    assert partial.handler.expire(partial.conn) == CLOSE
    assert partial.reader.response().status == 408
    silent = rigs(hello, cfg=short_timeouts())
    assert silent.handler.poll_request(silent.conn) == PARKED
    assert silent.handler.expire(silent.conn) == CLOSE
    assert silent.reader.rest() == b""


def test_expire_serves_a_request_that_arrived_while_the_worker_was_busy(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    assert rig.handler.poll_request(rig.conn) == PARKED
    rig.send(request())
    assert rig.handler.expire(rig.conn) == READY


def test_a_small_body_is_read_before_the_application_runs(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Content-Length: 10", method="POST", body=b"01234"))
    assert rig.handler.poll_request(rig.conn) == PARKED
    rig.send(b"56789")
    assert rig.handler.poll_request(rig.conn) == READY
    assert rig.conn.parser.buffered == 10  # all of it, before the app asked
    assert rig.handler.run(rig.conn) is True
    assert rig.reader.response().body == b"0123456789"


def test_a_chunked_body_is_decoded_before_the_application_runs(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Transfer-Encoding: chunked", method="POST", body=b"3\r\nabc\r\n"))
    assert rig.handler.poll_request(rig.conn) == PARKED
    rig.send(b"2\r\nde\r\n0\r\n\r\n")
    assert rig.handler.poll_request(rig.conn) == READY
    assert rig.conn.early is not None and rig.conn.early.done
    assert rig.handler.run(rig.conn) is True
    assert rig.reader.response().body == b"abcde"


def test_of_a_larger_body_only_the_first_body_buffer_size_bytes_are_awaited(rigs):
    cfg = dataclasses.replace(Config(), body_buffer_size=8)
    rig = rigs(echo_body, cfg=cfg)
    rig.send(request("/", "Content-Length: 20", method="POST", body=b"0123"))
    assert rig.handler.poll_request(rig.conn) == PARKED
    rig.send(b"4567")
    assert rig.handler.poll_request(rig.conn) == READY
    rig.send(b"89abcdefghij")
    assert rig.handler.run(rig.conn) is True
    assert rig.reader.response().body == b"0123456789abcdefghij"


def test_a_slow_body_waits_under_the_rate_floor_then_gets_408(rigs):
    cfg = dataclasses.replace(Config(), header_timeout=0.2, body_min_rate=1000)
    rig = rigs(echo_body, cfg=cfg)
    rig.send(request("/", "Content-Length: 100", method="POST", body=b"x" * 9))
    assert rig.handler.poll_request(rig.conn) == PARKED
    early = rig.conn.early
    assert early is not None
    assert rig.conn.deadline == pytest.approx(early.started + 0.2 + 10 / 1000)
    assert rig.handler.expire(rig.conn) == CLOSE
    assert rig.reader.response().status == 408


def test_100_continue_is_sent_when_the_worker_starts_waiting_for_the_body(rigs):
    rig = rigs(echo_body)
    rig.send(request("/", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    assert rig.handler.poll_request(rig.conn) == PARKED
    assert rig.reader._take(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
    rig.send(b"hello")
    assert rig.handler.poll_request(rig.conn) == READY
    assert rig.handler.run(rig.conn) is True
    resp = rig.reader.response()
    assert resp.body == b"hello" and b"100 Continue" not in resp.raw


def test_a_body_over_limit_request_body_gets_413_without_100_continue(rigs):
    rig = rigs(echo_body, cfg=dataclasses.replace(Config(), limit_request_body=4))
    rig.conn.parser = Parser(limits_from(rig.handler.cfg))
    rig.send(request("/", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    assert rig.handler.poll_request(rig.conn) == CLOSE
    resp = rig.reader.response()
    assert resp.status == 413 and b"100 Continue" not in resp.raw


def test_a_kept_alive_connection_keeps_its_idle_deadline_until_a_byte_arrives(rigs):
    rig = rigs(hello, cfg=short_timeouts())
    rig.send(request())
    assert rig.handler.poll_request(rig.conn) == READY
    assert rig.handler.run(rig.conn) is True
    rig.reader.response()
    rig.conn.deadline = idle = time.monotonic() + 2.0  # the worker's keepalive
    assert rig.handler.poll_request(rig.conn) == PARKED
    assert rig.conn.deadline == idle
    rig.send(b"GET /")
    assert rig.handler.poll_request(rig.conn) == PARKED
    assert rig.conn.deadline is not None and rig.conn.deadline < idle  # header_timeout now
