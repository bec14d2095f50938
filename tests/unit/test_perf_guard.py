"""Regression guard for the sync worker's per-request cost, without timing anything.

Why: timings are noise on a shared 2-core machine, but the work a request costs is not. The
number of Python and C function calls ``Handler.serve`` makes for one hello request, and the
socket system calls it issues, are exact and deterministic; when a change adds work to the
hot path they grow, and this test says by how much. The ceilings sit about 20% above the
counts measured when this guard was written (see ``benchmarks/README.md``): raise them only
on purpose, lower them when the path gets cheaper.

The handler is built as ``SyncWorker.run`` builds it (``Config()`` defaults, the logger from
``greenhorn.observe.create``, a real scoreboard), and each request is served the way the sync
worker's loop serves an accepted connection whose request is all there (``poll_request``
says READY, ``run`` serves it, the connection is closed), on a ``socketpair`` whose client
side has already written the request.
"""

from __future__ import annotations

import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from greenhorn import observe
from greenhorn.config import Config
from greenhorn.ipc.scoreboard import WorkerTmp, choose_tmp_dir
from greenhorn.workers.base import limits_from
from greenhorn.workers.connection import Connection
from greenhorn.workers.handler import READY, Handler

# Measured on 2026-11-25: 23 Python calls, 33 C calls, 4 socket system calls per request
# (50 and 90 at first; 38 and 79 after the no-op hooks were skipped and the head was
# received before parsing; 23 and 41 with cached response heads and field lines; 23 and 32
# with the sync worker's scoreboard counters buffered; 23 and 33 with the FIN sent with the
# response).
MAX_PY_CALLS = 28
MAX_C_CALLS = 39
# recv, send, shutdown, close: the minimum for one request when the FIN leaves with the
# response (``Connection.send_last``: one more call, one segment fewer)
MAX_SOCKET_SYSCALLS = 4

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n"
    b"Accept: */*\r\nConnection: close\r\n\r\n"
)
N = 200
SYSCALL_METHODS = frozenset(
    ("recv", "recv_into", "recvfrom", "send", "sendall", "sendmsg", "sendto", "close",
     "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername", "settimeout",
     "setblocking")
)  # fmt: skip


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!\n"]


class Worker:
    """What the handler reads from its worker."""

    alive = True
    nr = 0
    max_requests = 1 << 62


class CountingSocket:
    """A real socket whose system-call methods are counted."""

    def __init__(self, sock: socket.socket, counts: Counter[str]) -> None:
        self._sock = sock
        self._counts = counts

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._sock, name)
        if name not in SYSCALL_METHODS:
            return attr
        counts = self._counts

        def counted(*args: Any, **kw: Any) -> Any:
            counts[name] += 1
            return attr(*args, **kw)

        return counted


@pytest.fixture
def serve() -> Iterator[Callable[[Any], None]]:
    """Serve one connection exactly as SyncWorker's loop does (minus accept)."""
    cfg = Config()
    tmp = WorkerTmp(choose_tmp_dir(None))
    tmp.board.buffer()  # as SyncWorker.run: counters published when idle
    handler = Handler(
        hello,
        cfg,
        observe.create(cfg),
        Worker(),
        keep_alive=False,
        multithread=False,
        board=tmp.board,
    )
    limits = limits_from(cfg)

    def serve_one(sock: Any) -> None:
        server = ("127.0.0.1", "8000")
        conn = Connection(sock, ("127.0.0.1", 40000), server, limits, time.monotonic())
        assert handler.poll_request(conn) == READY
        try:
            handler.run(conn)
        finally:
            conn.close()

    try:
        yield serve_one
    finally:
        tmp.close()


def _pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    pairs = [socket.socketpair() for _ in range(n)]
    for client, _ in pairs:
        client.sendall(REQUEST)
    return pairs


def _check_responses(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    for client, _ in pairs:
        data = client.recv(65536)
        client.close()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:80]
        assert data.endswith(b"\r\n\r\nHello, world!\n"), data[-80:]


def test_function_calls_per_request(serve: Callable[[Any], None]) -> None:
    warm = _pairs(20)  # fill the header-name and header-validation caches first
    for _, server in warm:
        serve(server)
    _check_responses(warm)

    counts: Counter[str] = Counter()

    def profiler(frame: Any, event: str, arg: Any) -> None:
        counts[event] += 1

    pairs = _pairs(N)
    sys.setprofile(profiler)
    try:
        for _, server in pairs:
            serve(server)
    finally:
        sys.setprofile(None)
    _check_responses(pairs)
    py_calls = counts["call"] / N
    c_calls = counts["c_call"] / N
    detail = f"{py_calls:.1f} Python and {c_calls:.1f} C function calls per request"
    assert py_calls <= MAX_PY_CALLS, f"{detail}: over the ceiling of {MAX_PY_CALLS} Python calls"
    assert c_calls <= MAX_C_CALLS, f"{detail}: over the ceiling of {MAX_C_CALLS} C calls"


def test_socket_syscalls_per_request(serve: Callable[[Any], None]) -> None:
    counts: Counter[str] = Counter()
    pairs = _pairs(50)
    for _, server in pairs:
        serve(CountingSocket(server, counts))
        server.close()  # already closed by the handler; releases the proxy's socket
    _check_responses(pairs)
    per_request = {name: n / len(pairs) for name, n in sorted(counts.items())}
    total = sum(per_request.values())
    assert total <= MAX_SOCKET_SYSCALLS, (
        f"{total:g} socket system calls per request {per_request}: "
        f"over the ceiling of {MAX_SOCKET_SYSCALLS}"
    )
    assert per_request.get("recv", 0) >= 1 and per_request.get("close", 0) == 1, per_request
