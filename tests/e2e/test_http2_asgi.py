"""HTTP/2 end to end on the asgi worker (``-k asgi``), each stream an ASGI request: curl
--http2 over TLS (HTTP/1.1 on the same port), curl --http2-prior-knowledge and httpx with
100 concurrent streams over h2c, HTTP/1.1 and a WebSocket on the same cleartext port,
request bodies credited as the application reads them, trailers and 103 Early Hints,
a zero-window stall, rapid reset, and GOAWAY on TERM with a stream in flight.

The protocol rules themselves (pseudo-headers, Content-Length, floods, HPACK) are the
session's, shared with gthread and gevent, and tested in test_http2.py; here one h2c
server and one TLS server serve every case but the graceful stop, which stops its own.
The raw client and its frame helpers are test_http2.py's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, launch, wait_until

h2 = pytest.importorskip("h2")
httpx = pytest.importorskip("httpx")

from hpack import Decoder, Encoder  # noqa: E402
from hyperframe.frame import (  # noqa: E402
    DataFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from test_http2 import (  # noqa: E402  (the raw h2c client and its helpers)
    CANCEL,
    CURL,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    REFUSED_STREAM,
    Raw,
    _calm,
    _curl,
    body_of,
    goaway,
    status_of,
    stream_done,
    worker_rss,
)

pytestmark = pytest.mark.e2e

needs_curl = pytest.mark.skipif(CURL is None, reason="no curl with HTTP/2 (nghttp2) here")


def _start(stem: Path, *args: str) -> Server:
    server = launch(
        ["-b", "127.0.0.1:0", "-k", "asgi", "--http-protocols", "h2,h1",
         "--access-logfile", "-", *args, "h2asgiapp:app"],
        stem,
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


def _served(server: Server) -> bool:
    try:
        with Raw(server) as c:
            c.request(1, "/echo")
            return status_of(c.read(stream_done(1), 10), 1) == "200"
    except OSError:
        return False


@pytest.fixture(scope="module")
def h2c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # --timeout 4: a stream waiting on its client gives up after 2 s (the stall test);
    # both: h2c by prior knowledge, HTTP/1.1 and WebSockets on one port
    server = _start(
        tmp_path_factory.mktemp("h2asgi") / "server",
        "--http2-cleartext", "both", "--timeout", "4",
    )  # fmt: skip
    wait_until(lambda: _served(server), 20)
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, certs: Any) -> Iterator[Server]:
    server = _start(
        tmp_path_factory.mktemp("h2asgitls") / "server",
        "--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key),
    )  # fmt: skip
    yield server
    _stop(server)


@needs_curl
def test_curl_http2_over_tls_and_http11_on_the_same_port(tls, certs, tmp_path):
    wait_until(lambda: _curl(tls, certs, "/echo", "--http2")[0] == "200", 20, what="TLS")
    code, version, body = _curl(tls, certs, "/echo?x=1", "--http2")
    assert (code, version) == ("200", "2"), body
    info = json.loads(body)
    assert (info["http_version"], info["scheme"], info["query_string"]) == ("2", "https", "x=1")
    assert "http.response.trailers" in info["extensions"]
    upload = tmp_path / "up.bin"  # 1 MiB through the flow-control window
    upload.write_bytes(os.urandom(1 << 20))
    code, version, body = _curl(tls, certs, "/echo", "--http2", "--data-binary", f"@{upload}")
    info = json.loads(body)
    assert (code, version, info["body_len"]) == ("200", "2", 1 << 20)
    assert info["sha256"] == hashlib.sha256(upload.read_bytes()).hexdigest()
    code, version, body = _curl(tls, certs, "/big?n=4194304", "--http2")
    assert (code, version, len(body)) == ("200", "2", 4194304)
    code, version, body = _curl(tls, certs, "/echo", "--http1.1")
    assert (code, version, json.loads(body)["http_version"]) == ("200", "1.1", "1.1")
    import requests  # no ALPN at all: HTTP/1.1

    r = requests.get(
        f"https://127.0.0.1:{tls.port}/echo", verify=str(certs.server_cert), timeout=10
    )
    assert r.status_code == 200 and r.json()["http_version"] == "1.1"
    wait_until(lambda: '"GET /echo?x=1 HTTP/2.0" 200' in tls.out, 10, what="the access log")


@needs_curl
def test_h2c_prior_knowledge_http11_and_websocket_on_one_port(h2c):
    code, version, body = _curl(h2c, None, "/echo?p=1", "--http2-prior-knowledge")
    assert (code, version) == ("200", "2")
    assert json.loads(body)["http_version"] == "2"
    code, version, body = _curl(h2c, None, "/echo", "--http1.1")
    assert (code, version, json.loads(body)["http_version"]) == ("200", "1.1", "1.1")
    websockets = pytest.importorskip("websockets")

    async def talk() -> str:
        async with websockets.connect(f"ws://127.0.0.1:{h2c.port}/ws") as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), 10)

    assert asyncio.run(talk()) == "1.1:hi"
    wait_until(lambda: '"GET /echo?p=1 HTTP/2.0" 200' in h2c.out, 10, what="the access log")


def test_httpx_100_concurrent_streams_with_bodies_on_one_connection(h2c):
    bodies = {i: os.urandom(1000 * i) for i in range(0, 100, 10)}

    async def run() -> list[Any]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
            base = f"http://127.0.0.1:{h2c.port}/echo"
            return await asyncio.gather(
                *(
                    client.post(f"{base}?i={i}", content=bodies[i])
                    if i in bodies
                    else client.get(f"{base}?i={i}")
                    for i in range(100)
                )
            )

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 100
    assert {r.http_version for r in responses} == {"HTTP/2"}
    infos = [r.json() for r in responses]
    assert sorted(int(i["query_string"][2:]) for i in infos) == list(range(100))
    assert len({i["client_port"] for i in infos}) == 1  # one connection carried them all
    for i, body in bodies.items():
        assert infos[i]["body_len"] == len(body)
        assert infos[i]["sha256"] == hashlib.sha256(body).hexdigest()


def test_request_body_window_is_credited_as_the_app_reads(h2c):
    """The stream's window is given back only once the application takes the body: a
    client that filled it gets no WINDOW_UPDATE for the stream while the app sleeps."""
    with Raw(h2c) as c:
        c.request(1, "/lazy?t=1.5", method="POST", end=False)
        for size in (16384, 16384, 16384, 16383):  # the whole initial window
            c.send(DataFrame(1, b"w" * size).serialize())
        started = time.monotonic()

        def credited(frames: list[Any]) -> bool:
            return any(isinstance(f, WindowUpdateFrame) and f.stream_id == 1 for f in frames)

        c.read(credited, 10)
        assert time.monotonic() - started > 1.0  # not before the application read
        end = DataFrame(1, b"")
        end.flags.add("END_STREAM")
        c.send(end.serialize())
        frames = c.read(stream_done(1), 10)
    assert status_of(frames, 1) == "200"
    assert json.loads(body_of(frames, 1))["body_len"] == 65535


def test_trailers_and_early_hints(h2c):
    with Raw(h2c) as c:
        c.request(1, "/trailers")
        c.request(3, "/hints")
        frames = c.read(lambda fs: stream_done(1)(fs) and stream_done(3)(fs))
    dec = Decoder()
    heads: dict[int, list[dict[str, str]]] = {1: [], 3: []}
    ends: dict[int, list[bool]] = {1: [], 3: []}
    for f in frames:
        if isinstance(f, HeadersFrame):
            heads[f.stream_id].append(dict(dec.decode(f.data, raw=False)))
            ends[f.stream_id].append("END_STREAM" in f.flags)
    # stream 1: head, body, then the trailers (sent in two messages) end the stream
    assert heads[1][0][":status"] == "200" and heads[1][0]["trailer"] == "x-checksum"
    assert heads[1][1] == {"x-checksum": "abc123", "x-n": "2"}
    assert ends[1] == [False, True]
    assert body_of(frames, 1) == b"body before trailers\n"
    # stream 3: 103 as an informational HEADERS frame, then the response
    assert heads[3][0] == {":status": "103", "link": "</style.css>; rel=preload; as=style"}
    assert heads[3][1][":status"] == "200"
    assert body_of(frames, 3) == b"after hints\n"


def test_zero_window_stall_resets_the_stream(h2c):
    """A client that never opens its window: the stream is reset (CANCEL) after the stall
    bound (timeout/2 = 2 s), its task ends, others are served meanwhile, and the 64 MiB
    response never queues in the worker."""
    before = worker_rss(h2c)
    stalled = [Raw(h2c, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) for _ in range(2)]
    try:
        for c in stalled:
            c.request(1, "/big?n=67108864")
        assert _served(h2c)
        started = time.monotonic()
        for c in stalled:
            frames = c.read(stream_done(1), 10)
            assert status_of(frames, 1) == "200"  # the head went out, no body could
            assert any(isinstance(f, RstStreamFrame) and f.error_code == CANCEL for f in frames)
            assert body_of(frames, 1) == b""
        assert time.monotonic() - started < 8
    finally:
        for c in stalled:
            c.close()
    assert worker_rss(h2c) - before < 20_000  # KiB
    wait_until(lambda: "/big?n=67108864 HTTP/2.0" in h2c.out, 10, what="the access log")


def test_rapid_reset_is_bounded(h2c):
    before = worker_rss(h2c)
    c = Raw.__new__(Raw)
    c.enc = Encoder()
    out = bytearray()
    for i in range(2000):
        sid = 2 * i + 1
        out += Raw.headers(c, sid, "/slow?t=1")
        out += RstStreamFrame(sid, error_code=CANCEL).serialize()
    assert _calm(h2c, bytes(out)).error_code == ENHANCE_YOUR_CALM
    assert _served(h2c)
    assert worker_rss(h2c) - before < 20_000


def test_goaway_on_term_lets_the_stream_in_flight_finish(tmp_path):
    server = _start(tmp_path / "server", "--http2-cleartext", "prior-knowledge")
    try:
        wait_until(lambda: _served(server), 20)
        with Raw(server) as c:
            c.request(1, "/slow?t=1.5")
            time.sleep(0.3)  # the stream is running
            server.send_signal(signal.SIGTERM)
            g = goaway(c.read(lambda fs: goaway(fs) is not None, 10))
            assert g is not None and (g.error_code, g.last_stream_id) == (NO_ERROR, 1)
            c.request(3, "/echo")  # after the GOAWAY: refused
            frames = c.read(lambda fs: stream_done(1, False)(fs) and stream_done(3, False)(fs))
            assert status_of(frames, 1) == "200"
            assert body_of(frames, 1) == b"slow done\n"
            assert status_of(frames, 3) == f"RST:{REFUSED_STREAM}"
            c.read(lambda fs: False, 5)  # the server closes the connection
        assert server.proc.wait(15) == 0
        assert '"GET /slow?t=1.5 HTTP/2.0" 200' in server.out
    finally:
        _stop(server)
