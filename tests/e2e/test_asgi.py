"""The asgi worker (``-k asgi``, issue 23) through the real process, with real clients: raw
sockets, ``httpx``, the ``websockets`` client, Starlette, FastAPI and Django applications.

What the shared worker suite (tests/e2e/test_workers.py: keep-alive, pipelining, TERM, HUP,
max_requests, the blocked-loop timeout, the corpus) and tests/e2e/test_request_rules.py
already run against ``-k asgi`` is not repeated here. This module covers what is ASGI's
own: the scope, lifespan, streaming both ways with back-pressure, ``http.disconnect``,
``more_body``, framing of HEAD/204/304, WebSockets, 103 Early Hints, errors, and the worker
settings (``asgi_loop``, ``asgi_lifespan``, ``root_path``, ``websocket_max_message_size``).

Speed: most checks share one ``probe`` server for the module (``shared``); the lifecycle
checks (lifespan failure, TERM with open WebSockets) and the frameworks have their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Server, launch, proc_status, read_all, wait_until

httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")

MAX_MESSAGE = 1 << 20  # --websocket-max-message-size of the shared server


def start(tmp: Path, name: str, *argv: str, marks: Path | None = None) -> Server:
    env = {"ASGI_MARKS": str(marks)} if marks else None
    server = launch(
        ["-b", "127.0.0.1:0", "-k", "asgi", "-w", "1", *argv], tmp / name, env=env, cwd=tmp
    )
    server.port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 20)[0])
    return server


def ready(server: Server, path: str = "/") -> None:
    def answers() -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.log[-3000:]}")
        try:
            return httpx.get(server.url(path), timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until(answers, 20, 0.05, f"server answering {path}\n{server.log[-2000:]}")


def stop(server: Server) -> None:
    try:
        server.stop(signal.SIGTERM, timeout=15)
    except AssertionError:
        pass
    server.kill_group()


class Probe:
    """The shared server: ``asgiapps:probe`` behind ``--root-path /api``, with an access
    log on stdout, metrics, the PROXY protocol (optional), short head deadline."""

    def __init__(self, tmp: Path) -> None:
        self.marks = tmp / "marks"
        self.marks.mkdir()
        self.server = start(
            tmp,
            "probe",
            "--root-path",
            "/api",
            "--keep-alive",
            "2",
            "--header-timeout",
            "1",
            "--access-logfile",
            "-",
            "--metrics-bind",
            "127.0.0.1:0",
            "--proxy-protocol",
            "auto",
            "--websocket-max-message-size",
            str(MAX_MESSAGE),
            "asgiapps:probe",
            marks=self.marks,
        )
        self.metrics_port = int(
            self.server.wait_for_log(r"Metrics at: http://127\.0\.0\.1:(\d+)")[0]
        )
        ready(self.server)

    def mark(self, name: str) -> str:
        path = self.marks / name
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    p = Probe(tmp_path_factory.mktemp("asgi"))
    yield p
    stop(p.server)


def raw(server: Server, data: bytes, timeout: float = 10.0, shut: bool = True) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as c:
        c.sendall(data)
        if shut:
            c.shutdown(socket.SHUT_WR)
        return read_all(c)


def ws_url(server: Server, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def worker_rss_kib(server: Server) -> int:
    return proc_status(server.worker_pids()[0], "VmRSS")


# -- scope, lifespan state, root_path --------------------------------------------------------


def test_scope_carries_what_uvicorn_puts_in_it(probe):
    s = probe.server
    r = httpx.get(s.url("/scope?x=1&y=%C3%A9"), headers={"X-Custom": "v"}, timeout=10)
    scope = r.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["server"] == ["127.0.0.1", s.port]
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    # root_path: the mount point a proxy stripped, prefixed to path and raw_path (uvicorn)
    assert scope["root_path"] == "/api"
    assert (scope["path"], scope["raw_path"]) == ("/api/scope", "/api/scope")
    assert scope["query_string"] == "x=1&y=%C3%A9"
    assert ["x-custom", "v"] in scope["headers"]  # lower-case names
    assert ["host", f"127.0.0.1:{s.port}"] in scope["headers"]
    assert scope["extensions"]["http.response.informational"] == {}
    # lifespan state: what startup put there, a shallow copy per request
    assert scope["state"]["started_by"] in s.worker_pids()
    assert "leak" not in httpx.get(s.url("/scope"), timeout=10).json()["state"]
    # startup ran once, in the worker, before it served
    assert probe.mark("lifespan").split() == ["startup", str(scope["state"]["started_by"])]


def test_percent_encoded_path_is_decoded_raw_path_is_not(probe):
    data = raw(
        probe.server, b"GET /scope/caf%C3%A9%2Fx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    scope = json.loads(data.partition(b"\r\n\r\n")[2])
    assert scope["path"] == "/api/scope/caf\u00e9/x"
    assert scope["raw_path"] == "/api/scope/caf%C3%A9%2Fx"


def test_proxy_protocol_and_trusted_forwarded_scheme(probe):
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 4567 80\r\n"
    request = (
        b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
    )
    scope = json.loads(raw(probe.server, header + request).partition(b"\r\n\r\n")[2])
    assert scope["client"] == ["203.0.113.9", 4567]
    assert scope["scheme"] == "https"  # 127.0.0.1 is in forwarded_allow_ips by default
    assert "203.0.113.9" in probe.server.out  # the access log's %(h)s


# -- the request body: streamed, with back-pressure -------------------------------------------


def test_large_upload_streams_through_receive_in_bounded_memory(probe):
    s = probe.server
    size = 256 * 1024 * 1024
    before = worker_rss_kib(s)
    peak = before
    block = b"u" * (1 << 20)
    with socket.create_connection((s.host, s.port), timeout=30) as c:
        c.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for i in range(size // len(block)):
            c.sendall(block)
            if i % 32 == 0:
                peak = max(peak, worker_rss_kib(s))
        head, _, body = read_response(c)
    total, chunks = map(int, body.split())
    assert head.startswith(b"HTTP/1.1 200") and total == size
    assert chunks > 100, "the body reached the application in pieces, as it arrived"
    assert peak - before < 64 * 1024, (
        f"worker RSS grew {(peak - before) // 1024} MiB for a {size >> 20} MiB upload"
    )


def test_chunked_upload_and_more_body(probe):
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    data = raw(
        probe.server,
        b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
    )
    assert data.partition(b"\r\n\r\n")[2].split()[0] == b"%d" % sum(map(len, pieces))


def test_slow_body_gets_408_and_slow_head_too(probe):
    s = probe.server
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        c.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
        t0 = time.monotonic()
        data = read_all(c)
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert time.monotonic() - t0 < 6
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished; --header-timeout 1
        data = read_all(c)
    assert data.startswith(b"HTTP/1.1 408"), data[:100]


# -- the response: streamed with flow control, framing ------------------------------------


def read_response(c: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """One Content-Length response off ``c``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = c.recv(65536)
        assert chunk
        rest += chunk
    return head, headers, rest[:length]  # type: ignore[return-value]


def test_streamed_response_to_a_slow_reader_does_not_grow_memory(probe):
    s = probe.server
    n, size = 200, 1 << 20  # 200 MiB, one MiB per http.response.body
    before = worker_rss_kib(s)
    with socket.create_connection((s.host, s.port), timeout=30) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.sendall(
            b"GET /stream?n=%d&size=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (n, size)
        )
        first = c.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # the client does not read: send() must wait, not buffer
        stalled = worker_rss_kib(s)
        got = len(first) + len(read_all(c))
    assert stalled - before < 32 * 1024, (
        f"RSS grew {(stalled - before) // 1024} MiB while the client did not read"
    )
    assert got > n * size


def test_more_body_pieces_are_chunked(probe):
    data = raw(probe.server, b"GET /stream?n=4&size=10 HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"a\r\nxxxxxxxxxx\r\n" * 4 + b"0\r\n\r\n"


def test_head_204_304_carry_no_body_and_keep_the_connection(probe):
    s = probe.server
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        c.sendall(
            b"HEAD /status?code=200&length=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /status?code=304 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = read_all(c)
    parts = data.split(b"HTTP/1.1 ")[1:]
    assert [p[:3] for p in parts] == [b"200", b"204", b"304", b"200"], data
    head_resp, no_content, not_modified, last = parts
    assert b"content-length: 4" in head_resp and head_resp.endswith(b"\r\n\r\n")  # no body
    assert b"Content-Length" not in no_content and no_content.endswith(b"\r\n\r\n")
    assert not_modified.endswith(b"\r\n\r\n")
    assert last.endswith(b"\r\n\r\nbody")


def test_disconnect_is_delivered_when_the_client_goes_away(probe):
    s = probe.server
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        c.sendall(b"GET /disconnect?id=gone-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"waiting" in c.recv(65536) or b"waiting" in c.recv(65536)
    wait_until(lambda: "gone-1" in probe.mark("disconnect"), 10, what="http.disconnect")


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expect",
    [
        ("/error", b"HTTP/1.1 500"),
        ("/bad-header", b"HTTP/1.1 500"),
        ("/no-response", b"HTTP/1.1 500"),
    ],
)
def test_application_errors_answer_500_and_the_worker_lives(probe, path, expect):
    s = probe.server
    pids = s.worker_pids()
    data = raw(s, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert data.startswith(expect), data
    assert b"Injected" not in data
    assert httpx.get(s.url("/"), timeout=10).status_code == 200
    assert s.worker_pids() == pids


def test_error_after_the_head_truncates_the_response(probe):
    data = raw(probe.server, b"GET /error-after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"partial" in data
    assert not data.endswith(b"0\r\n\r\n"), "a cut response must not look complete"
    assert "boom in the middle of the response" in probe.server.log


# -- 103 Early Hints (ASGI) -----------------------------------------------------------------


def test_early_hints_before_the_response_and_not_for_http10(probe):
    data = raw(probe.server, b"GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\n"
    ), data
    data = raw(probe.server, b"GET /early HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"103" not in data, data


# -- WebSockets ------------------------------------------------------------------------------


def test_websocket_echo_subprotocol_headers_deflate_ping(probe):
    s = probe.server

    async def session() -> None:
        async with websockets.connect(ws_url(s, "/ws/echo"), subprotocols=["chat", "x"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-accepted"] == "yes"
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            data = os.urandom(300_000)
            await ws.send(data)
            assert await ws.recv() == data
            await ws.send(iter([b"frag", b"men", b"ted"]))  # a fragmented message
            assert await ws.recv() == b"fragmented"
            latency = await (await ws.ping(b"p"))  # the server answers pings itself
            assert latency >= 0
            await ws.send("scope")
            info = json.loads(await ws.recv())
            assert info == {"path": "/api/ws/echo", "scheme": "ws", "subprotocols": ["chat", "x"]}

    run(session())
    wait_until(lambda: "1000 /ws/echo" in probe.mark("ws-disconnect"), 10, what="disconnect 1000")
    assert '"GET /ws/echo HTTP/1.1" 101' in s.out  # the access log, at the end


def test_websocket_close_codes_both_ways(probe):
    s = probe.server

    async def session() -> None:
        async with websockets.connect(ws_url(s, "/ws/close")) as ws:
            await ws.send("close-4001")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "asked")
        async with websockets.connect(ws_url(s, "/ws/client-closes")) as ws:
            await ws.close(4002, "client says bye")

    run(session())
    wait_until(lambda: "4002 /ws/client-closes" in probe.mark("ws-disconnect"), 10, what="4002")


def test_websocket_denied_before_accept(probe):
    s = probe.server

    async def session() -> None:
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with websockets.connect(ws_url(s, "/ws/deny")):
                pass
        assert denied.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus) as custom:
            async with websockets.connect(ws_url(s, "/ws/deny-response")):
                pass
        response = custom.value.response
        assert (response.status_code, response.headers["x-why"], response.body) == (
            401,
            "token",
            b"no token",
        )

    run(session())


def test_websocket_message_too_big_closes_1009(probe):
    s = probe.server

    async def session() -> None:
        async with websockets.connect(ws_url(s, "/ws/big"), max_size=None, compression=None) as ws:
            await ws.send(b"x" * (MAX_MESSAGE + 1))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1009

    run(session())


def _frame(opcode: int, payload: bytes, mask: bool = True, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode, (0x80 if mask else 0) | len(payload)])
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _upgrade(s: Server, path: bytes = b"/ws/raw") -> socket.socket:
    c = socket.create_connection((s.host, s.port), timeout=10)
    c.sendall(
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(1)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    return c


@pytest.mark.parametrize(
    "frame, code",
    [
        (_frame(0x1, b"unmasked", mask=False), 1002),
        (_frame(0x3, b"reserved opcode"), 1002),
        (_frame(0x9, b"fragmented ping", fin=False), 1002),
        (_frame(0x1, b"\xff\xfe not utf-8"), 1007),
    ],
    ids=["unmasked", "reserved_opcode", "fragmented_control", "bad_utf8"],
)
def test_malformed_frames_are_closed_with_their_code(probe, frame, code):
    with _upgrade(probe.server) as c:
        c.sendall(frame)
        data = read_all(c)
    assert data[:2] == b"\x88\x02" and int.from_bytes(data[2:4], "big") == code, data


@pytest.mark.parametrize(
    "headers, status",
    [
        (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", 400),
        (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            426,
        ),
    ],
    ids=["no_key", "version_8"],
)
def test_bad_handshakes_are_refused_before_the_app(probe, headers, status):
    data = raw(probe.server, b"GET /ws/x HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert data.startswith(b"HTTP/1.1 %d" % status), data


def test_metrics_count_websockets(probe):
    s = probe.server

    def metric(name: str) -> int:
        text = httpx.get(f"http://127.0.0.1:{probe.metrics_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(f"greenhorn_{name} "):
                return int(float(line.split()[1]))
        raise AssertionError(f"no {name} in {text}")

    async def session() -> None:
        async with websockets.connect(ws_url(s, "/ws/metrics")) as ws:
            await ws.send("hi")
            await ws.recv()
            wait_until(lambda: metric("websocket_connections") >= 1, 5, what="open gauge")

    before = metric("websocket_connections_total")
    run(session())
    wait_until(lambda: metric("websocket_connections_total") > before, 5, what="total counter")
    wait_until(lambda: metric("websocket_connections") == 0, 5, what="gauge back to 0")


# -- lifecycle: lifespan, TERM, app shapes, loops ---------------------------------------------


def test_lifespan_startup_failure_stops_the_server_with_boot_error(tmp_path):
    s = start(tmp_path, "fail", "asgiapps:failing_startup")
    assert s.proc.wait(30) == 3
    assert "ASGI lifespan startup failed: lifespan startup failed: no database" in s.log
    assert s.log.count("Booting worker") == 1, "no respawn loop"


def test_lifespan_on_requires_support_auto_serves_without(tmp_path):
    s = start(tmp_path, "auto", "asgiapps:no_lifespan")
    try:
        ready(s)
        assert httpx.get(s.url("/"), timeout=10).text == "served without lifespan"
    finally:
        stop(s)
    s = start(tmp_path, "on", "--asgi-lifespan", "on", "asgiapps:no_lifespan")
    assert s.proc.wait(30) == 3
    assert "lifespan startup did not complete: ValueError: cannot handle lifespan" in s.log


def test_term_closes_websockets_1001_and_finishes_requests(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    s = start(tmp_path, "term", "--graceful-timeout", "20", "asgiapps:probe", marks=marks)
    ready(s)

    async def scenario() -> tuple[int, float, int]:
        async with websockets.connect(ws_url(s, "/ws/open")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            async with httpx.AsyncClient() as client:
                slow = asyncio.ensure_future(client.get(s.url("/sleep?t=1.5"), timeout=20))
                await asyncio.sleep(0.3)
                t0 = time.monotonic()
                s.send_signal(signal.SIGTERM)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                took = time.monotonic() - t0
                resp = await slow
        return closed.value.rcvd.code, took, resp.status_code

    code, took, status = run(scenario())
    assert code == 1001 and took < 1.5, (code, took)
    assert status == 200, "the request in flight finished"
    assert s.proc.wait(20) == 0
    assert "1001 /ws/open" in (marks / "ws-disconnect").read_text()
    assert (marks / "lifespan").read_text().split()[2] == "shutdown"


def test_asgi2_is_wrapped_and_wsgi_is_refused(tmp_path):
    s = start(tmp_path, "asgi2", "asgiapps:Asgi2")
    try:
        ready(s)
        assert httpx.get(s.url("/two"), timeout=10).text == "asgi2 /two"
    finally:
        stop(s)
    s = start(tmp_path, "wsgi", "asgiapps:wsgi")
    assert s.proc.wait(30) == 4
    assert "looks like a WSGI application" in s.log


# -- real frameworks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frameworks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    pytest.importorskip("fastapi")
    tmp = tmp_path_factory.mktemp("frameworks")
    marks = tmp / "marks"
    marks.mkdir()
    servers = {
        "starlette": start(
            tmp,
            "starlette",
            "--asgi-loop",
            "asyncio",
            "--log-level",
            "debug",
            "asgi_frameworks:starlette_app",
        ),
        "fastapi": start(
            tmp,
            "fastapi",
            "--asgi-loop",
            "uvloop",
            "--log-level",
            "debug",
            "asgi_frameworks:fastapi_app",
            marks=marks,
        ),
    }
    servers["fastapi"].marks = marks  # type: ignore[attr-defined]
    try:
        for server in servers.values():
            ready(server)
        yield servers
    finally:
        for server in servers.values():
            stop(server)


def test_starlette_on_the_asyncio_loop(frameworks):
    s = frameworks["starlette"]
    assert "Using the uvloop event loop" not in s.log
    r = httpx.get(s.url("/users/42?q=find"), timeout=10)
    assert r.json() == {
        "id": 42,
        "q": "find",
        "greeting": "hello from lifespan",
        "root_path": "",
        "url": f"http://127.0.0.1:{s.port}/users/42?q=find",
    }
    assert httpx.get(s.url("/users/nope"), timeout=10).status_code == 404
    r = httpx.get(s.url("/numbers"), timeout=10)
    assert r.text == "0\n1\n2\n3\n4\n" and r.headers["transfer-encoding"] == "chunked"

    async def ws() -> None:
        async with websockets.connect(ws_url(s, "/ws")) as conn:
            await conn.send("hi")
            assert await conn.recv() == "echo: hi"

    run(ws())


def test_fastapi_on_uvloop(frameworks):
    s = frameworks["fastapi"]
    assert "Using the uvloop event loop" in s.log
    assert httpx.get(s.url("/items/5?q=x"), timeout=10).json() == {"item_id": 5, "q": "x"}
    bad = httpx.get(s.url("/items/five"), timeout=10)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "item_id"]
    assert httpx.post(s.url("/items"), json={"name": "a", "price": 2}, timeout=10).json() == {
        "name": "a",
        "price": 2.0,
    }
    assert httpx.post(s.url("/items"), json={"name": "a"}, timeout=10).status_code == 422
    assert httpx.get(s.url("/sync"), timeout=10).json()["pid"] in s.worker_pids()
    files = {"file": ("data.bin", os.urandom(3_000_000), "application/octet-stream")}
    assert httpx.post(s.url("/upload"), files=files, timeout=30).json() == {
        "filename": "data.bin",
        "size": 3_000_000,
    }
    assert httpx.post(s.url("/notify/alice"), timeout=10).json() == {"queued": "alice"}
    marks = s.marks  # type: ignore[attr-defined]
    wait_until(lambda: (marks / "background").exists(), 10, what="the background task")
    assert (marks / "background").read_text() == "alice\n"
    r = httpx.get(s.url("/stream"), timeout=10)
    assert r.text == "chunk 0\nchunk 1\nchunk 2\n"

    async def ws() -> None:
        async with websockets.connect(ws_url(s, "/ws/lobby")) as conn:
            await conn.send(json.dumps({"n": 1}))
            assert json.loads(await conn.recv()) == {"room": "lobby", "got": {"n": 1}}

    run(ws())


def test_django_asgi_application(greenhorn):
    pytest.importorskip("django")
    project = Path(__file__).resolve().parents[2] / "examples" / "django_project"
    s = greenhorn("-k", "asgi", "--chdir", str(project), "mysite.asgi:application")
    r = httpx.get(s.url("/info/?a=b"), headers={"X-Forwarded-Proto": "https"}, timeout=10)
    info = r.json()
    assert (info["method"], info["path"], info["query"], info["secure"]) == (
        "GET",
        "/info/",
        {"a": "b"},
        True,
    )
    assert info["pid"] in s.worker_pids()
    assert httpx.get(s.url("/missing/"), timeout=10).status_code == 404
    assert httpx.get(s.url("/"), headers={"Host": "evil.example"}, timeout=10).status_code == 400


def test_https_and_wss(greenhorn, certs):
    import ssl

    s = greenhorn(
        "-k", "asgi", "--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key),
        "asgiapps:probe", ready_path=None,
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(certs.server_cert))
    url = f"https://127.0.0.1:{s.port}"
    wait_until(lambda: _https_ok(url, ctx), 20, 0.1, "https answering")
    scope = httpx.get(url + "/scope", verify=ctx, timeout=10).json()
    assert scope["scheme"] == "https"

    async def session() -> None:
        async with websockets.connect(f"wss://127.0.0.1:{s.port}/ws/tls", ssl=ctx) as ws:
            await ws.send("scope")
            assert json.loads(await ws.recv())["scheme"] == "wss"

    run(session())


def test_proxy_header_before_the_tls_handshake(greenhorn, certs):
    import ssl

    tls = ("--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key))
    s = greenhorn("-k", "asgi", *tls, "--proxy-protocol", "v1", "asgiapps:probe", ready_path=None)
    ctx = ssl.create_default_context(cafile=str(certs.server_cert))

    def scope_via_proxy() -> dict | None:
        try:
            with socket.create_connection((s.host, s.port), timeout=5) as raw_sock:
                raw_sock.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 6543 443\r\n")
                with ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as tls_sock:
                    tls_sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = read_all(tls_sock)
        except OSError:
            return None
        return json.loads(data.partition(b"\r\n\r\n")[2]) if data else None

    scope = wait_until(scope_via_proxy, 20, 0.1, "https behind a PROXY header")
    assert scope["client"] == ["198.51.100.7", 6543] and scope["scheme"] == "https"  # type: ignore[index]


def _https_ok(url: str, ctx: object) -> bool:
    try:
        return httpx.get(url + "/", verify=ctx, timeout=2).status_code == 200  # type: ignore[arg-type]
    except httpx.HTTPError:
        return False


def test_statsd_counts_requests_and_websockets(greenhorn):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        port = udp.getsockname()[1]
        s = greenhorn("-k", "asgi", "--statsd-host", f"127.0.0.1:{port}", "asgiapps:probe")
        assert httpx.get(s.url("/status?code=404"), timeout=10).status_code == 404

        async def session() -> None:
            async with websockets.connect(ws_url(s, "/ws/statsd")) as ws:
                await ws.send("hi")
                await ws.recv()

        run(session())
        seen: list[str] = []

        def got(needles: tuple[str, ...]) -> bool:
            try:
                while True:
                    seen.append(udp.recv(4096).decode())
            except TimeoutError:
                pass
            return all(any(n in m for m in seen) for n in needles)

        needles = (
            "gunicorn.requests:1|c",
            "gunicorn.request.duration:",
            "gunicorn.request.status.404:1|c",
            "gunicorn.request.status.101:1|c",  # the WebSocket, when it ended
            "gunicorn.websocket.connections:1|c",
        )
        wait_until(lambda: got(needles), 10, what=f"statsd datagrams {seen[-10:]}")
