"""HTTP/2 end to end on the gthread, gevent and asgi workers: TLS with ALPN (curl --http2,
httpx with 100 streams on one connection, HTTP/1.1 clients on the same port), h2c with
prior knowledge (curl --http2-prior-knowledge) and by Upgrade, the wire rules, request
bodies credited as the application reads them, trailers and 103 Early Hints, GOAWAY on
TERM, HUP and max_requests, and the attacks (rapid reset, CONTINUATION flood, SETTINGS and
PING floods, HPACK bomb, a zero-window stall), each followed by a request from another
client that must be served while the worker's memory stays bounded.

Two servers per worker type are shared by the module (one TLS, one h2c); the graceful
tests start their own. The WSGI workers serve tests/apps/h2app.py, the asgi worker
tests/apps/h2asgiapp.py: the same paths, the same answers. Raw clients build frames with hyperframe and hpack (the h2 library's own parts), so
they can send what a well-behaved client library never would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, base_env, command, launch, proc_status, read_all, wait_until

h2 = pytest.importorskip("h2")
httpx = pytest.importorskip("httpx")

from hpack import Encoder  # noqa: E402  (h2's dependency, there when h2 is)
from hyperframe.frame import (  # noqa: E402
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

pytestmark = pytest.mark.e2e

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x8, 0xB
REFUSED_STREAM = 0x7
COMPRESSION_ERROR = 0x9


def _curl_with_http2() -> str | None:
    """curl, if it is built with HTTP/2 (nghttp2): the curl tests need it."""
    path = shutil.which("curl")
    if path is None:
        return None
    try:
        features = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "HTTP2" in features.split() else None


CURL = _curl_with_http2()


# -- servers ----------------------------------------------------------------------------------


def _start(
    stem: Path, *args: str, worker: str = "gthread", env: dict[str, str] | None = None
) -> Server:
    if worker == "asgi":  # the same paths and answers as an ASGI application
        args = (*args, "--asgi-lifespan", "off", "h2asgiapp:app")
    else:
        args = (*args, "--threads", "4", "h2app:app")
    server = launch(
        ["-b", "127.0.0.1:0", "-k", worker, "--http-protocols", "h2,h1",
         "--access-logfile", "-", *args],
        stem,
        env=env,
    )  # fmt: skip
    m = server.wait_for_log(r"Listening at: https?://[^\s:]+:(\d+)", 20)
    server.port = int(m[0])
    server.wait_for_log(r"Booting worker with pid", 20)
    return server


def _stop(server: Server) -> None:
    try:
        server.stop(signal.SIGTERM, timeout=15)
    finally:
        server.kill_group()


WORKERS = ["gthread", "gevent", "asgi"]  # asgi: each stream a task of tests/apps/h2asgiapp.py


@pytest.fixture(scope="module", params=WORKERS)
def tls(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, certs: Any
) -> Iterator[Server]:
    if request.param == "gevent":
        pytest.importorskip("gevent")
    server = _start(
        tmp_path_factory.mktemp("h2tls") / "server",
        "--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key),
        worker=request.param,
    )  # fmt: skip
    wait_until(lambda: _tls_answers(server, certs), 20, what=f"TLS answer\n{server.log[-2000:]}")
    yield server
    _stop(server)


def _tls_answers(server: Server, certs: Any) -> bool:
    import requests

    try:
        url = f"https://127.0.0.1:{server.port}/echo"
        return requests.get(url, verify=str(certs.server_cert), timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module", params=WORKERS)
def h2c(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    if request.param == "gevent":
        pytest.importorskip("gevent")
    # --timeout 4: a stream waiting on its client gives up after 2 s (the stall test)
    server = _start(
        tmp_path_factory.mktemp("h2c") / "server",
        "--http2-cleartext", "prior-knowledge", "--timeout", "4", "--threads", "2",
        "--header-timeout", "1", "--limit-request-body", "50000", worker=request.param,
    )  # fmt: skip
    wait_until(lambda: _served(server), 20)
    yield server
    _stop(server)


# -- clients ----------------------------------------------------------------------------------


def _curl(server: Server, certs: Any | None, path: str, *flags: str) -> tuple[str, str, bytes]:
    """(status, HTTP version, body) from curl."""
    scheme = "https" if certs is not None else "http"
    args = [
        CURL or "curl",
        "-sS",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code} %{http_version}",
    ]
    if certs is not None:
        args += ["--cacert", str(certs.server_cert)]
    out = subprocess.run(
        [*args, *flags, f"{scheme}://127.0.0.1:{server.port}{path}"],
        capture_output=True,
        timeout=20,
        check=False,
    ).stdout
    body, _, tail = out.rpartition(b"\n")
    code, _, version = tail.decode().partition(" ")
    return code, version, body


class Raw:
    """A raw h2c client: frames out as bytes, frames in parsed (never validated)."""

    def __init__(self, server: Server, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.enc = Encoder()
        self.buf = b""
        self.frames: list[Frame] = []
        frame = SettingsFrame(0)
        frame.settings = settings or {}
        self.send(PREFACE + frame.serialize())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def headers(self, sid: int, path: str, *, end: bool = True, method: str = "GET",
                extra: list[tuple[str, str]] | None = None, raw: list[tuple[str, str]] | None = None) -> bytes:  # fmt: skip
        fields = raw if raw is not None else [
            (":method", method), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", path),
            *(extra or []),
        ]  # fmt: skip
        frame = HeadersFrame(sid)
        frame.data = self.enc.encode(fields)
        frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def request(self, sid: int, path: str, **kw: Any) -> None:
        self.send(self.headers(sid, path, **kw))

    def read(self, until: Any, timeout: float = 10.0) -> list[Frame]:
        """Read frames until ``until(frames)`` is true (or the peer closes); all frames so far."""
        deadline = time.monotonic() + timeout
        while not until(self.frames):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; frames: {self.frames[-10:]}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except TimeoutError:
                continue
            if not data:
                break
            self.buf += data
            self._parse()
        return self.frames

    def _parse(self) -> None:
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            self.frames.append(frame)
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                try:
                    self.send(ack.serialize())
                except OSError:
                    pass  # the server closed: what it sent is still read

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def goaway(frames: list[Frame]) -> GoAwayFrame | None:
    return next((f for f in frames if isinstance(f, GoAwayFrame)), None)


def stream_done(sid: int, or_goaway: bool = True):
    """A ``Raw.read`` condition: stream ``sid`` ended (END_STREAM or RST_STREAM), or (with
    ``or_goaway``) the connection is going away."""

    def done(frames: list[Frame]) -> bool:
        return any(
            f.stream_id == sid
            and (isinstance(f, RstStreamFrame) or "END_STREAM" in getattr(f, "flags", ()))
            for f in frames
        ) or (or_goaway and goaway(frames) is not None)

    return done


def status_of(frames: list[Frame], sid: int) -> str | None:
    """The final :status of stream ``sid`` (HEADERS decoded in order), or RST:<code>."""
    from hpack import Decoder

    dec = Decoder()
    dec.max_header_list_size = 1 << 20
    final = None
    for f in frames:
        if isinstance(f, HeadersFrame):
            fields = dict(dec.decode(f.data, raw=False))
            if f.stream_id == sid and not fields.get(":status", "1").startswith("1"):
                final = final or fields.get(":status")
        elif isinstance(f, RstStreamFrame) and f.stream_id == sid and final is None:
            return f"RST:{f.error_code}"
    return final


def body_of(frames: list[Frame], sid: int) -> bytes:
    return b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == sid)


def _served(server: Server) -> bool:
    """Another client gets a whole answer over h2c."""
    try:
        with Raw(server) as c:
            c.request(1, "/echo")
            return status_of(c.read(stream_done(1), 10), 1) == "200"
    except OSError:
        return False


def worker_rss(server: Server) -> int:
    return proc_status(server.worker_pids()[0], "VmRSS")


# -- TLS, ALPN ------------------------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="no curl with HTTP/2 (nghttp2) here")
def test_curl_http2_over_tls_and_http11_on_the_same_port(tls, certs, tmp_path):
    code, version, body = _curl(tls, certs, "/echo?x=1", "--http2")
    assert (code, version) == ("200", "2"), body
    info = json.loads(body)
    assert info["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert info["wsgi.url_scheme"] == "https"
    assert (info["PATH_INFO"], info["QUERY_STRING"]) == ("/echo", "x=1")
    assert info["HTTP_HOST"] == f"127.0.0.1:{tls.port}"
    # a 1 MiB upload: streamed through the flow-control window
    upload = tmp_path / "up.bin"
    upload.write_bytes(bytes(range(256)) * 4096)
    code, version, body = _curl(tls, certs, "/echo", "--http2", "--data-binary", f"@{upload}")
    info = json.loads(body)
    assert (code, version, info["body_len"]) == ("200", "2", 1 << 20)
    assert info["sha256"] == hashlib.sha256(upload.read_bytes()).hexdigest()
    # a 4 MiB download
    code, version, body = _curl(tls, certs, "/big?n=4194304", "--http2")
    assert (code, version, len(body)) == ("200", "2", 4194304)
    # clients that only speak HTTP/1.1 (no ALPN, or http/1.1 by ALPN) on the same port
    code, version, body = _curl(tls, certs, "/echo", "--http1.1")
    assert (code, version) == ("200", "1.1")
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.1"
    import requests

    r = requests.get(
        f"https://127.0.0.1:{tls.port}/echo", verify=str(certs.server_cert), timeout=10
    )
    assert r.status_code == 200 and r.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    # the access log says HTTP/2.0
    wait_until(lambda: '"GET /echo?x=1 HTTP/2.0" 200' in tls.out, 10, what="the access log")


def test_httpx_100_concurrent_streams_on_one_connection(tls, certs):
    async def run() -> list[Any]:
        async with httpx.AsyncClient(
            http1=False,
            http2=True,
            verify=ssl.create_default_context(cafile=str(certs.server_cert)),
            timeout=30,
        ) as client:
            base = f"https://127.0.0.1:{tls.port}"
            return await asyncio.gather(*(client.get(f"{base}/echo?i={i}") for i in range(100)))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 100
    assert {r.http_version for r in responses} == {"HTTP/2"}
    infos = [r.json() for r in responses]
    assert sorted(int(i["QUERY_STRING"][2:]) for i in infos) == list(range(100))
    assert len({i["REMOTE_PORT"] for i in infos}) == 1  # one connection carried them all


# -- h2c --------------------------------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="no curl with HTTP/2 (nghttp2) here")
def test_curl_http2_prior_knowledge(h2c):
    code, version, body = _curl(h2c, None, "/echo", "--http2-prior-knowledge")
    assert (code, version) == ("200", "2")
    info = json.loads(body)
    assert (info["SERVER_PROTOCOL"], info["wsgi.url_scheme"]) == ("HTTP/2.0", "http")
    # a trusted peer that does not speak HTTP/2 on a prior-knowledge port: 400, as gunicorn
    code, version, _ = _curl(h2c, None, "/echo", "--http1.1")
    assert (code, version) == ("400", "1.1")


@pytest.mark.skipif(CURL is None, reason="no curl with HTTP/2 (nghttp2) here")
@pytest.mark.parametrize("worker", WORKERS)
def test_h2c_upgrade_prior_knowledge_and_http11_on_one_port(tmp_path, worker):
    """--http2-cleartext both: curl's ``Upgrade: h2c`` (101, then HTTP/2), prior knowledge,
    and HTTP/1.1, from the same trusted peer on the same port."""
    if worker == "gevent":
        pytest.importorskip("gevent")
    server = _start(tmp_path / "server", "--http2-cleartext", "both", worker=worker)
    try:
        wait_until(lambda: _served(server), 20)
        code, version, body = _curl(server, None, "/echo?u=1", "--http2")  # the upgrade
        assert (code, version) == ("200", "2"), body
        assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/2.0"
        code, version, body = _curl(server, None, "/echo", "--http2", "-d", "body")
        assert (code, version) == ("200", "1.1")  # with a body: served as HTTP/1.1
        assert json.loads(body)["body_len"] == 4
        code, version, _ = _curl(server, None, "/echo", "--http2-prior-knowledge")
        assert (code, version) == ("200", "2")
        code, version, _ = _curl(server, None, "/echo", "--http1.1")
        assert (code, version) == ("200", "1.1")
        if worker == "asgi":  # and a WebSocket (HTTP/1.1) on the same port
            assert json.loads(_curl(server, None, "/echo", "--http2")[2])["http_version"] == "2"
            assert asyncio.run(_websocket_echo(server, "hi")) == "1.1:hi"
        wait_until(lambda: '"GET /echo?u=1 HTTP/2.0" 200' in server.out, 10, what="access log")
    finally:
        _stop(server)


@pytest.mark.skipif(CURL is None, reason="no curl with HTTP/2 (nghttp2) here")
@pytest.mark.parametrize("worker", WORKERS)
def test_an_upgraded_request_counts_once_toward_max_requests(tmp_path, worker):
    """--max-requests 4: one request with prior knowledge and three ``Upgrade: h2c`` ones
    are served by the first worker, which then leaves. (The upgrade request was counted
    twice: as the HTTP/1.1 request that asked for it and as HTTP/2's stream 1.)"""
    if worker == "gevent":
        pytest.importorskip("gevent")
    server = _start(
        tmp_path / "server", "--http2-cleartext", "both", "--max-requests", "4", worker=worker
    )
    try:
        wait_until(lambda: _served(server), 20)  # request 1 of 4
        first = server.worker_pids()
        pids = []
        for i in range(3):
            code, version, body = _curl(server, None, f"/echo?u={i}", "--http2")
            assert (code, version) == ("200", "2"), body
            pids.append(json.loads(body)["pid"])
        assert pids == first * 3
        server.wait_for_log(rf"Worker exited \(pid: {first[0]}\) \[max-requests\]")
    finally:
        _stop(server)


@pytest.mark.parametrize("worker", ["gthread", "gevent"])
def test_streams_past_the_timeout_are_logged_each(tmp_path, worker):
    """Two streams outlive --timeout 1: each is logged once as late, with its request line
    (the timeout works per stream). gevent with --worker-connections 2 has two scoreboard
    slots: the connection's greenlet holds one and stream 1 the other, so stream 3 runs
    past the slots and is timed all the same."""
    if worker == "gevent":
        pytest.importorskip("gevent")
    server = _start(
        tmp_path / "server", "--http2-cleartext", "prior-knowledge", "--timeout", "1",
        "--worker-connections", "2", worker=worker,
    )  # fmt: skip
    try:
        wait_until(lambda: _served(server), 20)
        with Raw(server) as c:
            c.request(1, "/slow?t=2&s=1")
            c.request(3, "/slow?t=2&s=3")
            frames = c.read(lambda fs: stream_done(1, False)(fs) and stream_done(3, False)(fs))
            assert status_of(frames, 1) == status_of(frames, 3) == "200"
        for sid in (1, 3):
            late = rf"Request running for [\d.]+s, past the 1s timeout: GET /slow\?t=2&s={sid}"
            server.wait_for_log(late, 5)
            assert len(re.findall(late, server.log)) == 1
    finally:
        _stop(server)


def test_a_path_outside_script_name_gets_400_as_on_http11(tmp_path):
    """SCRIPT_NAME=/mnt in the server's environment: a stream for /mnt/echo is served with
    PATH_INFO /echo; one for /other or /mntx is refused with 400, as HTTP/1.1 refuses it."""
    server = _start(
        tmp_path / "server", "--http2-cleartext", "prior-knowledge", env={"SCRIPT_NAME": "/mnt"}
    )
    try:
        with Raw(server) as c:
            c.request(1, "/mnt/echo")
            c.request(3, "/other")
            c.request(5, "/mntx/echo")
            frames = c.read(lambda fs: all(stream_done(s, False)(fs) for s in (1, 3, 5)), 20)
        assert status_of(frames, 1) == "200"
        assert json.loads(body_of(frames, 1))["PATH_INFO"] == "/echo"
        assert status_of(frames, 3) == status_of(frames, 5) == "400"
        assert b"is not under SCRIPT_NAME '/mnt'" in body_of(frames, 3)
        server.wait_for_log(r"Invalid request from ip=127\.0\.0\.1: request path '/other'")
    finally:
        _stop(server)


async def _websocket_echo(server: Server, text: str) -> str:
    websockets = pytest.importorskip("websockets")
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 10)


def test_http2_settings_are_advertised_and_enforced(tmp_path):
    server = _start(
        tmp_path / "server", "--http2-cleartext", "prior-knowledge",
        "--http2-max-concurrent-streams", "3", "--http2-initial-window-size", "20000",
        "--http2-max-frame-size", "20000", "--http2-max-header-list-size", "8000",
    )  # fmt: skip
    try:
        wait_until(lambda: _served(server), 20)
        with Raw(server) as c:
            frames = c.read(lambda fs: any(isinstance(f, SettingsFrame) for f in fs))
            assert {
                k: v
                for k, v in frames[0].settings.items()
                if k in (3, 4, 5, 6)  # MAX_CONCURRENT_STREAMS ... MAX_HEADER_LIST_SIZE
            } == {3: 3, 4: 20000, 5: 20000, 6: 8000}
            # one more than max_concurrent_streams, in one write: all four arrive open;
            # each answered at once, its worker busy 1 s more (the iterable's close)
            c.send(b"".join(c.headers(sid, "/linger?t=1") for sid in (1, 3, 5, 7)))
            post = DataFrame(9, b"f" * 20000)  # a frame over 16384: max_frame_size allows it
            post.flags.add("END_STREAM")
            frames = c.read(lambda fs: all(stream_done(s, False)(fs) for s in (1, 3, 5, 7)))
            assert [status_of(frames, s) for s in (1, 3, 5, 7)] == ["200", "200", "200", "RST:7"]
            # streams 1, 3, 5 are closed once their END_STREAM arrived: 9 is not refused
            c.request(9, "/echo", method="POST", end=False)
            c.send(post.serialize())
            frames = c.read(stream_done(9, False))
            assert json.loads(body_of(frames, 9))["body_len"] == 20000
            c.request(11, "/echo", extra=[("x-big", "b" * 9000)])  # a header list over 8000
            g = goaway(c.read(lambda fs: goaway(fs) is not None))
            assert g is not None and g.error_code == ENHANCE_YOUR_CALM
    finally:
        _stop(server)


def test_a_preface_that_never_completes_gets_400(h2c):
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as s:
        s.sendall(PREFACE[:16])  # "PRI * HTTP/2.0\r\n" and no more: --header-timeout 1
        assert read_all(s).startswith(b"HTTP/1.1 400 ")


def test_h2c_behind_a_proxy_protocol_header(tmp_path):
    """--proxy-protocol with h2c: the PROXY header first, then the preface; REMOTE_ADDR is
    the client's from the header."""
    server = _start(
        tmp_path / "server", "--http2-cleartext", "prior-knowledge", "--proxy-protocol", "v1",
        "--forwarded-allow-ips", "*",
    )  # fmt: skip
    try:
        wait_until(lambda: server.out or True, 1)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 4567 80\r\n")
        c = Raw.__new__(Raw)
        c.sock, c.enc, c.buf, c.frames = sock, Encoder(), b"", []
        c.send(PREFACE + SettingsFrame(0).serialize())
        with c:
            c.request(1, "/echo")
            frames = c.read(stream_done(1))
        assert status_of(frames, 1) == "200"
        info = json.loads(body_of(frames, 1))
        assert info["SERVER_PROTOCOL"] == "HTTP/2.0"
        wait_until(lambda: "203.0.113.7" in server.out, 10, what="the access log")
    finally:
        _stop(server)


def test_trailers_and_early_hints(h2c):
    from hpack import Decoder

    with Raw(h2c) as c:
        c.request(1, "/trailers")
        c.request(3, "/hints")
        frames = c.read(lambda fs: stream_done(1)(fs) and stream_done(3)(fs))
    dec = Decoder()
    heads: dict[int, list[dict[str, str]]] = {1: [], 3: []}
    for f in frames:
        if isinstance(f, HeadersFrame):
            heads[f.stream_id].append(dict(dec.decode(f.data, raw=False)))
    # stream 1: response head, body, then trailers ending the stream
    assert heads[1][0][":status"] == "200" and heads[1][1] == {"x-checksum": "abc123"}
    assert body_of(frames, 1) == b"body before trailers\n"
    # stream 3: 103 as an informational HEADERS frame, then the response
    assert heads[3][0] == {":status": "103", "link": "</style.css>; rel=preload; as=style"}
    assert heads[3][1][":status"] == "200"
    assert body_of(frames, 3) == b"after hints\n"


def test_a_repeated_header_block_follows_the_dynamic_table(h2c):
    """The server remembers header blocks it decoded (``http2/hpack_in.py``): the same six
    bytes, naming dynamic entry 62, mean ``/echo?a`` and then, once the client inserted
    another entry, ``/echo?b``."""
    static = b"\x82\x86\x01\x09127.0.0.1"  # GET, http, :authority (literal, not indexed)

    def insert(query: bytes) -> bytes:  # :path /echo?<query>, literal with indexing: entry 62
        path = b"/echo?" + query
        return b"\x44" + bytes([len(path)]) + path

    blocks = [
        static + insert(b"a"),
        static + b"\xbe",  # entry 62: /echo?a
        static + b"\xbe",  # the same bytes again
        static + insert(b"b"),
        static + b"\xbe",  # the same bytes: /echo?b now
    ]
    with Raw(h2c) as c:
        for n, block in enumerate(blocks):
            frame = HeadersFrame(2 * n + 1)
            frame.data = block
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            c.send(frame.serialize())
            c.read(stream_done(2 * n + 1))  # one after the other: the table's order
        frames = c.frames
        assert goaway(frames) is None
        queries = [json.loads(body_of(frames, 2 * n + 1))["QUERY_STRING"] for n in range(5)]
    assert queries == ["a", "a", "a", "b", "b"]


def test_a_response_head_past_the_frame_size_comes_with_continuation(h2c):
    from hpack import Decoder

    with Raw(h2c) as c:
        c.request(1, "/longhead?n=40000")
        frames = c.read(stream_done(1))
    heads = [f for f in frames if isinstance(f, (HeadersFrame, ContinuationFrame))]
    assert [type(f).__name__ for f in heads] == ["HeadersFrame", *["ContinuationFrame"] * 2]
    assert all(len(f.data) <= 16384 for f in heads) and "END_HEADERS" in heads[-1].flags
    fields = dict(Decoder().decode(b"".join(f.data for f in heads), raw=True))
    assert fields[b"x-long"] == b"v" * 40000 and body_of(frames, 1) == b"long head\n"


BASE = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", "/echo")]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([f for f in BASE if f[0] != ":path"], f"RST:{PROTOCOL_ERROR}"),  # required pseudo
        ([*BASE, (":status", "200")], f"RST:{PROTOCOL_ERROR}"),  # a response pseudo-header
        ([BASE[0], ("accept", "*/*"), *BASE[1:]], f"RST:{PROTOCOL_ERROR}"),  # pseudo after
        ([*BASE, ("connection", "keep-alive")], f"RST:{PROTOCOL_ERROR}"),  # connection-specific
        ([*BASE, ("transfer-encoding", "chunked")], f"RST:{PROTOCOL_ERROR}"),
        ([*BASE, ("te", "gzip")], f"RST:{PROTOCOL_ERROR}"),
        ([*BASE, ("X-Upper", "1")], f"RST:{PROTOCOL_ERROR}"),  # names are lower case
        ([*BASE, ("x-bad", "a\x00b")], f"RST:{PROTOCOL_ERROR}"),
        ([*BASE, ("host", "other.example")], f"RST:{PROTOCOL_ERROR}"),  # Host vs :authority
        ([*BASE[:3], (":path", "/" + "a" * 9000)], "414"),  # limit_request_line
        ([*BASE, *((f"x-h{i}", "v") for i in range(120))], "431"),  # limit_request_fields
        ([*BASE, ("te", "trailers"), ("cookie", "a=1"), ("cookie", "b=2")], "200"),
    ],
    ids=[
        "no-path",
        "status",
        "pseudo-after",
        "connection",
        "te-chunked",
        "te-gzip",
        "upper",
        "nul",
        "host-mismatch",
        "long-path",
        "many-fields",
        "ok",
    ],
)
def test_wire_rules(h2c, fields, expected):
    with Raw(h2c) as c:
        c.request(1, "", raw=fields)
        c.request(3, "/echo")  # the connection serves on
        frames = c.read(lambda fs: stream_done(1)(fs) and stream_done(3)(fs))
        assert status_of(frames, 1) == expected
        assert status_of(frames, 3) == "200"
        assert goaway(frames) is None


def test_content_length_against_data(h2c):
    with Raw(h2c) as c:
        # more DATA than announced, then less: both malformed (RST_STREAM PROTOCOL_ERROR)
        for sid, data in ((1, b"x" * 10), (3, b"x" * 2)):
            c.request(sid, "/echo", method="POST", end=False, extra=[("content-length", "5")])
            frame = DataFrame(sid, data)
            frame.flags.add("END_STREAM")
            c.send(frame.serialize())
        c.request(5, "/echo", method="POST", end=False, extra=[("content-length", "5")])
        frame = DataFrame(5, b"12345")
        frame.flags.add("END_STREAM")
        c.send(frame.serialize())
        frames = c.read(lambda fs: all(stream_done(s)(fs) for s in (1, 3, 5)))
    assert status_of(frames, 1) == f"RST:{PROTOCOL_ERROR}"
    assert status_of(frames, 3) == f"RST:{PROTOCOL_ERROR}"
    assert status_of(frames, 5) == "200"
    assert json.loads(body_of(frames, 5))["body_len"] == 5


def test_body_limit_and_100_continue(h2c):
    """limit_request_body: a Content-Length over it gets 413 before any DATA is read, a body
    without one gets 413 once past it; ``expect: 100-continue`` gets an informational 100
    when the application reads, then the answer."""
    with Raw(h2c) as c:
        c.request(1, "/echo", method="POST", end=False, extra=[("content-length", "60000")])
        c.request(3, "/echo", method="POST", end=False)
        for size in (16384, 16384, 16384, 16383):  # the whole window, 65535 bytes
            c.send(DataFrame(3, b"z" * size).serialize())
        c.request(5, "/echo", method="POST", end=False, extra=[("expect", "100-continue")])
        frames = c.read(lambda fs: stream_done(1)(fs) and stream_done(3)(fs))
        assert status_of(frames, 1) == "413"
        assert status_of(frames, 3) == "413"
        frames = c.read(
            lambda fs: any(isinstance(f, HeadersFrame) and f.stream_id == 5 for f in fs)
        )
        frame = DataFrame(5, b"after continue")
        frame.flags.add("END_STREAM")
        c.send(frame.serialize())
        frames = c.read(stream_done(5))
    from hpack import Decoder

    dec = Decoder()
    heads = [dict(dec.decode(f.data, raw=False)) for f in frames if isinstance(f, HeadersFrame)]
    assert [h[":status"] for h in heads if h.get(":status") in ("100", "200")] == ["100", "200"]
    assert json.loads(body_of(frames, 5))["body_len"] == len(b"after continue")


def test_request_body_window_is_credited_as_the_app_reads(h2c):
    """A stream's window is given back only as the application takes the body: a client
    that sent part of it gets no WINDOW_UPDATE for the stream while the application
    waits (the connection's window is credited as DATA arrives, on stream 0)."""
    with Raw(h2c) as c:
        c.request(1, "/lazy?t=1", method="POST", end=False)
        for size in (16384, 16384, 7232):  # 40000 bytes (--limit-request-body 50000)
            c.send(DataFrame(1, b"w" * size).serialize())
        started = time.monotonic()

        def credited(frames: list[Frame]) -> bool:
            return any(isinstance(f, WindowUpdateFrame) and f.stream_id == 1 for f in frames)

        c.read(credited, 10)
        assert time.monotonic() - started > 0.7  # not before the application read
        end = DataFrame(1, b"")
        end.flags.add("END_STREAM")
        c.send(end.serialize())
        frames = c.read(stream_done(1), 10)
    assert status_of(frames, 1) == "200"
    assert json.loads(body_of(frames, 1))["body_len"] == 40000


def test_zero_window_stall_frees_the_thread(h2c):
    """A client that never opens its window: the stream is reset after the stall bound
    (timeout/2 = 2 s) and its thread serves others; the worker's memory does not grow."""
    before = worker_rss(h2c)
    stalled = [Raw(h2c, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) for _ in range(2)]
    try:
        for c in stalled:  # both pool threads (--threads 2) wait on a window
            c.request(1, "/big?n=67108864")
        started = time.monotonic()
        assert _served(h2c)  # served once a stalled stream gives its thread up
        assert time.monotonic() - started < 8
        for c in stalled:
            frames = c.read(stream_done(1), 10)
            assert status_of(frames, 1) == "200"  # the head went out, no body could
            assert any(isinstance(f, RstStreamFrame) and f.error_code == CANCEL for f in frames)
            assert body_of(frames, 1) == b""
    finally:
        for c in stalled:
            c.close()
    assert worker_rss(h2c) - before < 20_000  # KiB: the 64 MiB response never queued


def test_a_request_body_that_never_comes_is_reset(h2c):
    """A POST whose DATA never comes: the app waits for the body, the stream is reset
    (CANCEL) after the stall bound (timeout/2 = 2 s), and others are served meanwhile."""
    with Raw(h2c) as c:
        c.request(1, "/echo", method="POST", end=False)
        started = time.monotonic()
        assert _served(h2c)
        frames = c.read(stream_done(1), 10)
        assert status_of(frames, 1) == f"RST:{CANCEL}"
        assert 1.5 < time.monotonic() - started < 8


# -- attacks ----------------------------------------------------------------------------------


def _calm(
    server: Server, frames_out: bytes, *, settings: dict[int, int] | None = None
) -> GoAwayFrame:
    """Send ``frames_out`` as fast as possible; the server must answer GOAWAY."""
    with Raw(server, settings) as c:
        try:
            c.send(frames_out)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may close before reading all of it
        frames = c.read(lambda fs: goaway(fs) is not None, 10)
        frame = goaway(frames)
        assert frame is not None, frames[-5:]
        return frame


def test_rapid_reset_is_bounded(h2c):
    before = worker_rss(h2c)
    c = Raw.__new__(Raw)
    c.enc = Encoder()
    out = bytearray()
    for i in range(2000):
        sid = 2 * i + 1
        out += Raw.headers(c, sid, "/slow?t=1")
        out += RstStreamFrame(sid, error_code=CANCEL).serialize()
    frame = _calm(h2c, bytes(out))
    assert frame.error_code == ENHANCE_YOUR_CALM
    assert _served(h2c)
    assert worker_rss(h2c) - before < 20_000


def test_continuation_flood_is_refused_before_assembly(h2c):
    c = Raw.__new__(Raw)
    c.enc = Encoder()
    head = HeadersFrame(1)
    head.data = c.enc.encode(BASE)  # no END_HEADERS: CONTINUATION frames follow
    out = bytearray(head.serialize())
    cont = ContinuationFrame(1)
    cont.data = c.enc.encode([("x-flood", "a" * 16000)])
    piece = cont.serialize()
    for _ in range(400):  # 6 MiB of header block, never ended
        out += piece
    before = worker_rss(h2c)
    frame = _calm(h2c, bytes(out))
    assert frame.error_code == ENHANCE_YOUR_CALM
    assert _served(h2c)
    assert worker_rss(h2c) - before < 20_000


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_floods(h2c, kind):
    if kind == "settings":
        frame = SettingsFrame(0)
        frame.settings = {SettingsFrame.MAX_CONCURRENT_STREAMS: 100}
    else:
        frame = PingFrame(0)
        frame.opaque_data = b"12345678"
    out = frame.serialize() * 20000
    assert _calm(h2c, out).error_code == ENHANCE_YOUR_CALM
    assert _served(h2c)


def test_hpack_bomb(h2c):
    """One 4 KB field in the dynamic table, then a block that names it 1000 times (1 byte
    each): 4 MB once decoded. The connection ends; nothing that size is built."""
    before = worker_rss(h2c)
    big = b"\x40" + bytes([7]) + b"x-bomb1" + b"\x7f" + _varint(4000 - 127) + b"a" * 4000
    fields = Encoder().encode(BASE) + big + b"\xbe" * 1000  # 0xbe: dynamic entry 62
    frame = HeadersFrame(1)
    frame.data = fields
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    g = _calm(h2c, frame.serialize())
    assert g.error_code != NO_ERROR
    assert _served(h2c)
    assert worker_rss(h2c) - before < 20_000


def test_an_undecodable_header_block_is_a_compression_error(h2c):
    """RFC 9113 §4.3: a field block that cannot be decoded (here an index past both tables)
    ends the connection with COMPRESSION_ERROR; other clients are served."""
    frame = HeadersFrame(1)
    frame.data = b"\x82\x86\xff\xff\xff\xff\xff\x0f"
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    assert _calm(h2c, frame.serialize()).error_code == COMPRESSION_ERROR
    assert _served(h2c)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# -- graceful ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("worker", "sig"),
    [
        ("gthread", "TERM"),
        ("gthread", "HUP"),
        ("gthread", "max_requests"),
        ("gevent", "TERM"),
        ("gevent", "HUP"),
        ("gevent", "max_requests"),  # counts streams, not the connection that carries them
        ("asgi", "TERM"),
        ("asgi", "max_requests"),  # (HUP stops an asgi worker as TERM does)
    ],
)
def test_goaway_lets_in_flight_streams_finish(tmp_path, worker, sig):
    if worker == "gevent":
        pytest.importorskip("gevent")
    extra = ["--max-requests", "3"] if sig == "max_requests" else []
    server = _start(
        tmp_path / "server", "--http2-cleartext", "prior-knowledge", *extra, worker=worker
    )
    try:
        wait_until(lambda: _served(server), 20)  # one request (max_requests: 1 of 3)
        with Raw(server) as c:
            slow = 1
            if sig == "max_requests":  # request 2 of 3: a connection is not a request
                c.request(1, "/echo")
                c.read(stream_done(1, False))
                with contextlib.suppress(AssertionError):  # so no GOAWAY comes
                    c.read(lambda fs: goaway(fs) is not None, 1.5)
                assert goaway(c.frames) is None
                slow = 3
            c.request(slow, "/slow?t=1.5")
            time.sleep(0.3)  # the stream is running
            if sig == "TERM":
                server.send_signal(signal.SIGTERM)
            elif sig == "HUP":
                server.send_signal(signal.SIGHUP)
            else:
                c.request(5, "/echo")  # request 3 of 3: the worker goes after it
            frames = c.read(lambda fs: goaway(fs) is not None, 10)
            g = goaway(frames)
            assert g is not None and g.error_code == NO_ERROR
            last = 5 if sig == "max_requests" else 1
            assert g.last_stream_id == last
            c.request(last + 2, "/echo")  # after the GOAWAY: refused
            frames = c.read(
                lambda fs: stream_done(slow, False)(fs) and stream_done(last + 2, False)(fs), 10
            )
            assert status_of(frames, slow) == "200"  # the stream in flight finished
            assert body_of(frames, slow) == b"slow done\n"
            assert status_of(frames, last + 2) == f"RST:{REFUSED_STREAM}"
            frames = c.read(lambda fs: False, 5)  # the server closes the connection
        if sig == "TERM":
            assert server.proc.wait(15) == 0
        else:
            wait_until(lambda: _served(server), 20)  # a new worker serves
    finally:
        _stop(server)


# -- start-up ---------------------------------------------------------------------------------


def test_h2_without_the_library_is_one_clear_line(tmp_path):
    """``--http-protocols h2`` where h2 cannot be imported: one error line, exit 2, no
    traceback, no worker started."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "h2.py").write_text("raise ImportError('h2 is not installed here')\n")
    proc = subprocess.run(
        command("-b", "127.0.0.1:0", "-k", "gthread", "--http-protocols", "h2,h1", "h2app:app"),
        env=base_env(PYTHONPATH=str(shadow)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, proc.stderr
    assert "needs the h2 library" in errors[0]
    assert "pip install 'greenhorn[http2]'" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "Booting worker" not in proc.stderr


def test_sync_worker_warns_and_serves_http11(tmp_path):
    server = launch(["-b", "127.0.0.1:0", "--http-protocols", "h2,h1", "h2app:app"], tmp_path / "s")
    try:
        m = server.wait_for_log(r"Listening at: http://[^\s:]+:(\d+)", 20)
        server.port = int(m[0])
        server.wait_for_log(r"The sync worker serves HTTP/1.1 only")
        wait_until(lambda: server.raw(b"GET /echo HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200"))
    finally:
        _stop(server)
