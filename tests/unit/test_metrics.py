"""greenhorn.master.metrics: the text rendering (pure) and the non-blocking HTTP listener, driven by
a select loop in the test thread exactly as the master drives it."""

from __future__ import annotations

import math
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from greenhorn.master import endpoints, metrics
from greenhorn.master.endpoints import StreamEndpoint
from greenhorn.master.listeners import BindError
from greenhorn.master.metrics import MetricsServer, answer, format_value, render

BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf]


def worker(pid: int, state: str = "idle", **kw: Any) -> dict[str, Any]:
    base = {
        "pid": pid, "age": 1, "generation": 0, "state": state, "booted": True,
        "requests": 0, "in_flight": 0, "rss": 10 * 1048576, "uptime": 5.0, "current": [],
        "status": dict.fromkeys(("1xx", "2xx", "3xx", "4xx", "5xx"), 0),
        "rejected": 0, "bytes_out": 0,
    }  # fmt: skip
    base.update(kw)
    return base


def make_status(**master: Any) -> dict[str, Any]:
    m = {
        "pid": 100, "version": "0.1.0", "uptime": 12.5, "state": "running", "ready": True,
        "workers_target": 3, "generation": 0, "worker_class": "sync",
        "listeners": ["http://127.0.0.1:8000"],
    }  # fmt: skip
    m.update(master)
    return {
        "master": m,
        "workers": [
            worker(101, "idle", requests=7),
            worker(
                102,
                "busy",
                requests=4,
                in_flight=2,
                rss=None,
                current=[{"request": "GET /slow", "seconds": 1.5}],
            ),
            worker(103, "booting", booted=False, rss=123),
        ],
        "totals": {
            "requests": 20,
            "status": {"1xx": 0, "2xx": 15, "3xx": 1, "4xx": 3, "5xx": 1},
            "rejected": 2,
            "bytes_out": 4096,
            "histogram": [5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 5],
            "duration_sum": 61.25,
        },
        "buckets": BUCKETS,
        "restarts": {"timeout": 1, "max-requests": 4},
        "backlog": {"http://127.0.0.1:8000": 2, 'unix:/run/a"b\\c\nd': 0, "fd://3": None},
    }


# -- render ---------------------------------------------------------------------------------

SAMPLE = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})?'
    r" (?P<value>-?[0-9.e+-]+|[+-]Inf|NaN)"
)  # fmt: skip


def parse(text: str) -> dict[str, Any]:
    """A strict reader of the 0.0.4 text format: {series: value} plus the TYPE of each family."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    series: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in types, line
            types[name] = kind
            continue
        m = SAMPLE.fullmatch(line)
        assert m, f"not a valid sample line: {line!r}"
        key = line.rsplit(" ", 1)[0]
        assert key not in series, f"duplicate series {key}"
        family = re.sub(r"_(bucket|sum|count)$", "", m["name"])
        assert m["name"] in types or family in types, f"sample before its TYPE: {line}"
        series[key] = float(m["value"].replace("Inf", "inf"))
    return {"types": types, "series": series}


def test_render_is_valid_exposition_format_with_expected_values() -> None:
    text = render(make_status())
    out = parse(text)
    types = out["types"]
    assert all(name.startswith("greenhorn_") for name in types)
    assert types["greenhorn_requests_total"] == "counter"
    assert types["greenhorn_request_duration_seconds"] == "histogram"
    assert types["greenhorn_workers"] == "gauge"
    lines = text.splitlines()
    for expected in (
        "greenhorn_up 1",
        "greenhorn_ready 1",
        'greenhorn_info{version="0.1.0",worker_class="sync"} 1',
        "greenhorn_uptime_seconds 12.5",
        'greenhorn_requests_total{status="2xx"} 15',
        'greenhorn_requests_total{status="5xx"} 1',
        "greenhorn_requests_rejected_total 2",
        "greenhorn_response_bytes_total 4096",
        "greenhorn_in_flight_requests 2",
        'greenhorn_workers{state="idle"} 1',
        'greenhorn_workers{state="busy"} 1',
        'greenhorn_workers{state="booting"} 1',
        'greenhorn_workers{state="retiring"} 0',
        "greenhorn_workers_target 3",
        'greenhorn_worker_restarts_total{reason="max-requests"} 4',
        'greenhorn_worker_restarts_total{reason="timeout"} 1',
        'greenhorn_accept_queue_length{listener="http://127.0.0.1:8000"} 2',
        'greenhorn_worker_rss_bytes{pid="101"} 10485760',
        'greenhorn_worker_rss_bytes{pid="103"} 123',
        'greenhorn_worker_requests_total{pid="101"} 7',
    ):
        assert expected in lines, expected
    assert not any('pid="102"' in line and "rss" in line for line in lines)  # unknown RSS
    assert "fd://3" not in text  # unknown queue length: no sample rather than a made-up 0


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    lines = render(make_status()).splitlines()
    buckets = [line for line in lines if line.startswith("greenhorn_request_duration_seconds_b")]
    assert buckets == [
        'greenhorn_request_duration_seconds_bucket{le="0.005"} 5',
        'greenhorn_request_duration_seconds_bucket{le="0.01"} 9',
        'greenhorn_request_duration_seconds_bucket{le="0.025"} 12',
        'greenhorn_request_duration_seconds_bucket{le="0.05"} 14',
        'greenhorn_request_duration_seconds_bucket{le="0.1"} 15',
        'greenhorn_request_duration_seconds_bucket{le="0.25"} 15',
        'greenhorn_request_duration_seconds_bucket{le="0.5"} 15',
        'greenhorn_request_duration_seconds_bucket{le="1.0"} 15',
        'greenhorn_request_duration_seconds_bucket{le="2.5"} 15',
        'greenhorn_request_duration_seconds_bucket{le="5.0"} 15',
        'greenhorn_request_duration_seconds_bucket{le="10.0"} 15',
        'greenhorn_request_duration_seconds_bucket{le="+Inf"} 20',
    ]
    assert "greenhorn_request_duration_seconds_sum 61.25" in lines
    assert "greenhorn_request_duration_seconds_count 20" in lines


def test_histogram_gets_an_inf_bucket_when_the_bounds_lack_one() -> None:
    status = make_status()
    status["buckets"] = [0.1, 1.0]
    status["totals"]["histogram"] = [2, 3]
    lines = render(status).splitlines()
    assert 'greenhorn_request_duration_seconds_bucket{le="1.0"} 5' in lines
    assert 'greenhorn_request_duration_seconds_bucket{le="+Inf"} 5' in lines
    assert "greenhorn_request_duration_seconds_count 5" in lines


def test_label_values_are_escaped() -> None:
    text = render(make_status())
    assert 'greenhorn_accept_queue_length{listener="unix:/run/a\\"b\\\\c\\nd"} 0' in text
    assert metrics.escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    parse(text)  # still one sample per line


@pytest.mark.parametrize("state,ready,expected", [
    ("running", True, 1), ("starting", False, 0), ("stopping", True, 0), ("reloading", True, 1),
])  # fmt: skip
def test_ready_gauge(state: str, ready: bool, expected: int) -> None:
    assert f"greenhorn_ready {expected}" in render(make_status(state=state, ready=ready))


def test_format_value() -> None:
    assert format_value(3) == "3"
    assert format_value(True) == "1"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"


def test_render_with_no_workers_and_empty_tables() -> None:
    status = make_status(ready=False, state="starting")
    status.update(workers=[], restarts={}, backlog={})
    status["totals"]["histogram"] = [0] * len(BUCKETS)
    out = parse(render(status))["series"]
    assert out["greenhorn_in_flight_requests"] == 0
    assert out['greenhorn_workers{state="idle"}'] == 0
    assert out["greenhorn_request_duration_seconds_count"] == 0


# -- answer (the HTTP logic, pure) ------------------------------------------------------------


def split(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 ")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def get(path: str, method: str = "GET", status: Any = None) -> tuple[int, dict[str, str], bytes]:
    data = f"{method} {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n".encode()
    reply = answer(data, False, lambda: status if status is not None else make_status())
    assert reply is not None
    return split(reply)


def test_metrics_route() -> None:
    code, headers, body = get("/metrics?x=1")
    assert code == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert body.decode() == render(make_status())


def test_head_has_length_but_no_body() -> None:
    code, headers, body = get("/metrics", "HEAD")
    assert code == 200 and body == b""
    assert int(headers["content-length"]) == len(render(make_status()).encode())


def test_livez_does_not_need_status() -> None:
    def boom() -> dict[str, Any]:
        raise AssertionError("status read for /livez")

    reply = answer(b"GET /livez HTTP/1.1\r\n\r\n", False, boom)
    assert reply is not None and split(reply)[0] == 200 and split(reply)[2] == b"ok\n"


@pytest.mark.parametrize("state,ready,code", [
    ("running", True, 200), ("starting", False, 503), ("stopping", True, 503),
    ("stopping", False, 503), ("reloading", True, 200),
])  # fmt: skip
def test_readyz(state: str, ready: bool, code: int) -> None:
    assert get("/readyz", status=make_status(state=state, ready=ready))[0] == code


def test_other_paths_methods_and_garbage() -> None:
    assert get("/")[0] == 404
    assert get("/metrics/")[0] == 404
    code, headers, _ = get("/metrics", "POST")
    assert code == 405 and headers["allow"] == "GET, HEAD"
    for bad in (
        b"GARBAGE\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /met rics HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS hello
    ):
        reply = answer(bad, False, make_status)
        assert reply is not None and split(reply)[0] == 400, bad


def test_incomplete_requests_wait_or_fail_at_eof() -> None:
    assert answer(b"", False, make_status) is None
    assert answer(b"GET /metrics HT", False, make_status) is None
    assert answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", False, make_status) is None
    reply = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", True, make_status)
    assert reply is not None and split(reply)[0] == 400


def test_bare_lf_line_endings_are_accepted() -> None:
    reply = answer(b"GET /livez HTTP/1.0\nHost: x\n\n", False, make_status)
    assert reply is not None and split(reply)[0] == 200


def test_a_failing_status_is_a_500_not_an_exception() -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("master")

    for path in (b"/metrics", b"/readyz"):
        reply = answer(b"GET " + path + b" HTTP/1.1\r\n\r\n", False, broken)
        assert reply is not None and split(reply)[0] == 500


# -- the listener, driven by a select loop like the master's ------------------------------------


def pump(
    server: Any,
    call: Callable[[int], None],
    until: Callable[[], bool],
    timeout: float = 5.0,
    writes: bool = True,
) -> None:
    """Run the master's side: select on fds() (and wfds()), handle, expire; until ``until``."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out pumping the server"
        wanted = server.wfds() if writes else []
        r, w, _ = select.select(server.fds(), wanted, [], 0.02)
        for fd in [*r, *w]:
            call(fd)
        server.expire(time.monotonic())


class Reader:
    """A non-blocking client that collects everything until the server closes."""

    def __init__(self, port: int, data: bytes = b"", family: int = socket.AF_INET) -> None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.sock = socket.create_connection((host, port), timeout=5)
        if data:
            self.sock.sendall(data)
        self.sock.setblocking(False)
        self.data = bytearray()
        self.closed = False
        self.reset = False

    def done(self) -> bool:
        while not self.closed:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                self.reset = self.closed = True
                break
            if not chunk:
                self.closed = True
            self.data += chunk
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Any:
    srv = MetricsServer("127.0.0.1:0", make_status)
    yield srv
    srv.close()


def fetch(srv: MetricsServer, path: str, status: Callable[[], Any] = make_status) -> bytes:
    client = Reader(srv.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    srv.status = status
    try:
        pump(srv, srv.handle, client.done)
    finally:
        client.close()
    return bytes(client.data)


def test_server_name_has_the_real_port(server: MetricsServer) -> None:
    assert server.port > 0
    assert server.name == f"http://127.0.0.1:{server.port}"
    assert len(server.fds()) == 1


def test_server_answers_every_route(server: MetricsServer) -> None:
    code, headers, body = split(fetch(server, "/metrics"))
    assert code == 200 and body.decode() == render(make_status())
    assert split(fetch(server, "/livez"))[0] == 200
    assert split(fetch(server, "/readyz"))[0] == 200
    assert split(fetch(server, "/readyz", lambda: make_status(state="stopping")))[0] == 503
    assert split(fetch(server, "/nope"))[0] == 404
    assert server.clients == {}


def test_request_split_into_pieces(server: MetricsServer) -> None:
    client = Reader(server.port)
    handle = server.handle
    for piece in (b"GET /li", b"vez HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        assert not client.done(), "answered before the request was complete"
        client.sock.sendall(piece)
        end = time.monotonic() + 0.05
        pump(server, handle, lambda end=end: time.monotonic() > end)  # type: ignore[misc]
    pump(server, handle, client.done)
    client.close()
    assert split(bytes(client.data))[0] == 200


def test_silent_client_is_dropped_by_expire_and_never_blocks(server: MetricsServer) -> None:
    silent = Reader(server.port)
    handle = server.handle
    pump(server, handle, lambda: len(server.clients) == 1)
    t0 = time.monotonic()
    server.handle(server.fds()[-1])  # nothing to read: returns at once
    assert time.monotonic() - t0 < 0.5
    server.expire(time.monotonic())  # not yet due
    assert len(server.clients) == 1
    # meanwhile another client is served normally
    assert split(fetch(server, "/livez"))[0] == 200
    server.expire(time.monotonic() + endpoints.TIMEOUT + 0.1)
    assert server.clients == {}
    pump(server, handle, silent.done)
    assert silent.data == b""
    silent.close()


def test_megabyte_of_garbage_is_cut_off_at_the_cap(server: MetricsServer) -> None:
    outcome: dict[str, Any] = {}

    def flood() -> None:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"A" * (1 << 20))
                outcome["sent"] = True
                outcome["reply"] = s.recv(65536)
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    seen: list[int] = []
    original = metrics.answer

    def spy(data: bytes, eof: bool, status_fn: Any) -> bytes | None:
        seen.append(len(data))
        return original(data, eof, status_fn)

    server.respond = lambda d, e: spy(d, e, make_status)
    handle = server.handle
    pump(server, handle, lambda: bool(seen) and not server.clients)
    thread.join(10)
    assert not thread.is_alive()
    assert max(seen) <= metrics.MAX_HEAD
    assert "error" in outcome or outcome.get("reply", b"").startswith(b"HTTP/1.1 431 "), outcome
    assert split(fetch(server, "/livez"))[0] == 200  # still serving


def test_too_many_clients_are_turned_away(server: MetricsServer) -> None:
    handle = server.handle
    clients: list[Reader] = []
    try:
        for _ in range(endpoints.MAX_CLIENTS + 6):
            clients.append(Reader(server.port))
            pump(server, handle, lambda: not select.select(server.fds()[:1], [], [], 0)[0])
        pump(server, handle, lambda: sum(c.done() for c in clients) >= 6)
        assert len(server.clients) == endpoints.MAX_CLIENTS
        assert sum(c.done() for c in clients) == 6  # the rest are still waiting
    finally:
        for c in clients:
            c.close()
    server.expire(time.monotonic() + endpoints.TIMEOUT + 0.1)
    assert server.clients == {}


def test_large_reply_is_finished_by_later_writes_and_by_expire() -> None:
    big = make_status()
    big["workers"] = [worker(1000 + i, requests=i) for i in range(20000)]
    expected = render(big).encode()
    assert len(expected) > endpoints.SEND_BUFFER * 4
    for writes in (True, False):
        srv = MetricsServer("127.0.0.1:0", make_status)
        try:
            client = Reader(srv.port, b"GET /metrics HTTP/1.1\r\n\r\n")
            srv.status = lambda: big
            handle = srv.handle
            # the client reads nothing until the reply no longer fits the socket buffers
            pump(srv, handle, lambda s=srv: bool(s.wfds()), 20, writes)  # type: ignore[misc]
            pump(srv, handle, client.done, 20, writes)
            client.close()
            code, headers, body = split(bytes(client.data))
            assert code == 200 and body == expected
        finally:
            srv.close()


def test_close_and_close_in_child_release_the_port() -> None:
    for method in ("close", "close_in_child"):
        srv = MetricsServer("127.0.0.1:0", make_status)
        client = Reader(srv.port)
        pump(srv, srv.handle, lambda s=srv: bool(s.clients))
        getattr(srv, method)()
        assert srv.fds() == [] and srv.wfds() == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        client.close()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = MetricsServer("[::1]:0", make_status)
    except BindError:
        pytest.skip("cannot bind ::1")
    try:
        assert srv.name == f"http://[::1]:{srv.port}"
        client = Reader(srv.port, b"GET /livez HTTP/1.1\r\n\r\n", socket.AF_INET6)
        pump(srv, srv.handle, client.done)
        client.close()
        assert split(bytes(client.data))[0] == 200
    finally:
        srv.close()


@pytest.mark.parametrize("bind", ["unix:/tmp/x.sock", "fd://3", "127.0.0.1:99999", "a b:80"])
def test_bad_addresses_raise_one_line_bind_errors(bind: str) -> None:
    with pytest.raises(BindError) as info:
        MetricsServer(bind, make_status)
    assert "\n" not in str(info.value) and "metrics" in str(info.value).lower()


def test_port_in_use_is_a_bind_error(server: MetricsServer) -> None:
    with pytest.raises(BindError, match="Cannot bind metrics listener"):
        MetricsServer(f"127.0.0.1:{server.port}", make_status)


def test_listener_is_not_inherited(server: MetricsServer) -> None:
    assert os.get_inheritable(server.fds()[0]) is False


def test_stream_endpoint_ignores_unknown_fds(server: MetricsServer) -> None:
    endpoint: StreamEndpoint = server
    endpoint.handle(99999)  # no error, nothing happens
    assert endpoint.clients == {}
