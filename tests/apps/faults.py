"""Requests that fail the way issue 19 found them failing, one per path, as a WSGI ``app``
and an ASGI ``asgi`` twin (for -k asgi).

- ``/exit?code=N``: ``sys.exit(N)`` inside the request;
- ``/cancel``: raises ``asyncio.CancelledError`` (a BaseException);
- ``/sleep?t=S``: sleeps (releasing the GIL);
- ``/hold?t=S&then=R``: holds the GIL (a thread or greenlet that never lets the worker's
  loop run) for S seconds at most: until something is written to the error log (stderr),
  i.e. the master logs the timeout or faulthandler dumps the stacks, so the worker's
  control thread can answer before the master's SIGKILL; then sleeps R more seconds
  without holding it. It starts after 0.2 s without the GIL, so that the previous request
  (e.g. the readiness probe) has ended;
- ``/stream?n=N&t=S``: N lines, S seconds apart, without a Content-Length;
- ``/fail-midway``: a first line without a Content-Length, then an exception;
- ``/hog?t=S``: answers at once; then (0.2 s later, once the connection is closed) takes
  every file descriptor the process may still open, for S seconds (accept() fails with
  EMFILE meanwhile), then gives them back;
- anything else: ``ok <pid>``.

With ``faults_hooks.py`` as the config, the path also picks what the request hooks do:
``/pre-raise``, ``/pre-exit``, ``/post-raise``, ``/post-exit``.
"""

import asyncio
import ctypes
import os
import sys
import threading
import time
from urllib.parse import parse_qs


def _hold(seconds: float) -> float:
    """Hold the GIL until stderr grows or ``seconds`` pass; the seconds left."""
    libc = ctypes.PyDLL(None)  # PyDLL: calls that keep the GIL
    libc.lseek.restype = ctypes.c_long
    libc.lseek.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_int]
    fd = os.open("/proc/self/fd/2", os.O_RDONLY)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)  # no forced switch to another thread meanwhile
    try:
        size = libc.lseek(fd, 0, os.SEEK_END)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and libc.lseek(fd, 0, os.SEEK_END) == size:
            libc.usleep(10000)
        return max(0.0, deadline - time.monotonic())
    finally:
        sys.setswitchinterval(interval)
        os.close(fd)


def _hog(seconds: float) -> None:
    time.sleep(0.2)
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    time.sleep(seconds)
    for fd in held:
        os.close(fd)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/exit":
        sys.exit(int(qs.get("code", "3")))
    if path == "/cancel":
        raise asyncio.CancelledError()
    if path == "/sleep":
        time.sleep(float(qs.get("t", "1")))
    if path == "/hold":
        time.sleep(0.2)  # the thread that served the previous request finishes first
        left = _hold(float(qs.get("t", "1")))
        time.sleep(left + float(qs.get("then", "0")))
    if path == "/stream":
        n, pause = int(qs.get("n", "3")), float(qs.get("t", "0"))

        def lines():
            for i in range(n):
                yield b"line %d\n" % i
                time.sleep(pause)

        start_response("200 OK", [("Content-Type", "text/plain")])
        return lines()
    if path == "/hog":
        threading.Thread(target=_hog, args=(float(qs.get("t", "2")),), daemon=True).start()
    if path == "/fail-midway":

        def fail():
            yield b"partial\n"
            raise RuntimeError("failed midway")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return fail()
    body = f"ok {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    qs = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/exit":
        sys.exit(int(qs.get("code", "3")))
    if path == "/hog":
        threading.Thread(target=_hog, args=(float(qs.get("t", "2")),), daemon=True).start()
    body = f"ok {os.getpid()}\n".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
