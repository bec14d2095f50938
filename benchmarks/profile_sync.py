"""Profile the sync worker's per-request Python path, without a network or a load generator.

Why: server CPU per request under wrk mixes kernel work (accept, TCP, close) with Python
work; this script isolates the Python part. It builds a ``Handler`` the way
``SyncWorker.run`` builds it (``Config()`` defaults, the logger from
``greenhorn.observe.create``, a real scoreboard), then serves N requests, each on a fresh
``socketpair`` whose client side has already written the request, exactly as the sync worker
serves an accepted connection: ``Connection(...)``, ``handler.serve(conn)``, ``conn.close()``.

It prints: µs per request without a profiler, Python and C function calls per request, the
socket methods called per request, and the top functions by own time under cProfile (µs per
request, inflated by the profiler itself: compare them with each other, not with wrk).

    python benchmarks/profile_sync.py [-n 20000] [--app hello|big|echo|stream] [--top 25]

``--protocol uwsgi`` serves the packet nginx's ``uwsgi_pass`` sends for the same request
(``include uwsgi_params``) to a ``--protocol uwsgi`` handler instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "apps"))

import benchapp  # noqa: E402

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n"
    b"Accept: */*\r\nConnection: close\r\n\r\n"
)


def _uwsgi_packet(pairs: list[tuple[str, str]]) -> bytes:
    block = b"".join(
        len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
        for k, v in pairs
    )
    return b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block


# what nginx 1.22 sends with uwsgi_pass and its uwsgi_params for wrk's GET /
UWSGI_REQUEST = _uwsgi_packet(
    [
        ("QUERY_STRING", ""), ("REQUEST_METHOD", "GET"), ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""), ("REQUEST_URI", "/"), ("PATH_INFO", "/"),
        ("DOCUMENT_ROOT", "/etc/nginx/html"), ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"), ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000"),
        ("SERVER_PORT", "8080"), ("SERVER_NAME", ""), ("HTTP_HOST", "127.0.0.1:8080"),
    ]
)  # fmt: skip
SOCKET_METHODS = frozenset(
    ("recv", "recv_into", "send", "sendall", "sendmsg", "close", "shutdown", "setsockopt",
     "getsockopt", "getsockname", "getpeername", "settimeout", "setblocking")
)  # fmt: skip


class CountingSocket:
    """Forward to a real socket, counting the methods that are system calls."""

    def __init__(self, sock: socket.socket, counts: Counter[str]) -> None:
        self._sock = sock
        self._counts = counts

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._sock, name)
        if name in SOCKET_METHODS:
            counts = self._counts

            def counted(*args: Any, **kw: Any) -> Any:
                counts[name] += 1
                return attr(*args, **kw)

            return counted
        return attr


def make_server(
    app_name: str, protocol: str = "http"
) -> tuple[Callable[[socket.socket], None], Callable[[], None]]:
    """(serve one connection like SyncWorker.serve, cleanup)."""
    import dataclasses

    from greenhorn import observe
    from greenhorn.config import Config
    from greenhorn.http.uwsgi import UwsgiParser
    from greenhorn.ipc.scoreboard import WorkerTmp, choose_tmp_dir
    from greenhorn.workers.base import limits_from
    from greenhorn.workers.connection import Connection
    from greenhorn.workers.handler import Handler

    cfg = dataclasses.replace(Config(), protocol=protocol)
    log = observe.create(cfg)
    tmp = WorkerTmp(choose_tmp_dir(None))

    class Worker:  # what the handler reads from its worker
        alive = True
        nr = 0
        max_requests = 1 << 62

    handler = Handler(
        getattr(benchapp, app_name),
        cfg,
        log,
        Worker(),
        keep_alive=False,
        multithread=False,
        board=tmp.board,
    )
    limits = limits_from(cfg)
    monotonic = time.monotonic

    def serve(sock: Any) -> None:
        server = ("127.0.0.1", "8000")
        parser = UwsgiParser(limits) if protocol == "uwsgi" else None
        conn = Connection(sock, ("127.0.0.1", 40000), server, limits, monotonic(), "http", parser)
        try:
            handler.serve(conn)
        finally:
            conn.close()

    return serve, tmp.close


def one_request(serve: Callable[[Any], None], wrap: Callable[[Any], Any] = lambda s: s) -> None:
    client, server = socket.socketpair()
    try:
        client.sendall(REQUEST)
        serve(wrap(server))
        client.recv(65536)
    finally:
        client.close()


def best_batch(fn: Callable[[], None], n: int, batch: int = 200) -> float:
    """Microseconds per call: the fastest of ``n // batch`` batches of ``batch`` calls."""
    best = float("inf")
    for _ in range(max(1, n // batch)):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / batch * 1e6


def count_calls(serve: Callable[[Any], None], n: int) -> tuple[float, float]:
    """(Python calls, C calls) per request inside ``serve``."""
    counts = Counter()

    def profiler(frame: Any, event: str, arg: Any) -> None:
        counts[event] += 1

    client_server = [socket.socketpair() for _ in range(n)]
    for client, _ in client_server:
        client.sendall(REQUEST)
    sys.setprofile(profiler)
    try:
        for _, server in client_server:
            serve(server)
    finally:
        sys.setprofile(None)
    for client, _ in client_server:
        client.close()
    return counts["call"] / n, counts["c_call"] / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="requests (default 20000)")
    ap.add_argument("--app", default="hello", choices=("hello", "big", "echo", "stream"))
    ap.add_argument("--top", type=int, default=25, help="functions to list")
    ap.add_argument("--protocol", default="http", choices=("http", "uwsgi"))
    args = ap.parse_args(argv)
    global REQUEST
    if args.protocol == "uwsgi":
        REQUEST = UWSGI_REQUEST
    serve, cleanup = make_server(args.app, args.protocol)
    try:
        for _ in range(500):  # warm up
            one_request(serve)

        # plain timing, best batch (other work on the machine only ever adds time); the
        # socketpair set-up is timed the same way and subtracted
        def setup_only() -> None:
            client, server = socket.socketpair()
            client.sendall(REQUEST)
            server.close()
            client.close()

        setup = best_batch(setup_only, args.n)
        total = best_batch(lambda: one_request(serve), args.n)
        print(
            f"{args.app}: {total - setup:.2f} us per request in serve "
            f"(best batch; socketpair set-up {setup:.2f} us subtracted)"
        )

        py_calls, c_calls = count_calls(serve, 2000)
        print(f"function calls per request: {py_calls:.1f} Python, {c_calls:.1f} C")

        methods: Counter[str] = Counter()
        for _ in range(100):
            one_request(serve, lambda s: CountingSocket(s, methods))
        per = ", ".join(f"{k} {v / 100:g}" for k, v in sorted(methods.items()))
        print(f"socket system calls per request: {per}")

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            one_request(serve)
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        rows = []
        for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{os.path.basename(file)}:{line}" if line else "~"
            rows.append((tt, ct, nc, f"{where}({name})"))
        rows.sort(reverse=True)
        print(
            f"\ntop {args.top} by own time under cProfile (us per request; includes the test's "
            "own socketpair/sendall/recv):"
        )
        print(f"{'own us':>8} {'cum us':>8} {'calls/req':>9}  function")
        for tt, ct, nc, label in rows[: args.top]:
            print(f"{tt / args.n * 1e6:8.2f} {ct / args.n * 1e6:8.2f} {nc / args.n:9.2f}  {label}")
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
