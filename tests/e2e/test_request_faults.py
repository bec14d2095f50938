"""Faults in the request path, through the real process (issue 19: where greenhorn did worse
than gunicorn).

- A request cannot end its worker: ``sys.exit()``, ``CancelledError`` and failing request
  hooks are answered (500) and logged with their traceback; the worker serves on.
- A gthread pool thread that dies anyway takes its worker down, and the master replaces it.
- The timeout: never before ``timeout`` seconds; a client whose request is aborted before
  anything was sent gets a 500, not an empty reply; the log names the request and its stack.
- Threaded and green workers: a request that is merely slow is a warning with its stack,
  not an abort of the worker and of every other request in it.
- A response of unknown length to HTTP/1.1 is chunked also when the connection closes, so a
  body cut short is detectable; HTTP/1.0 keeps close-delimited bodies.
- A worker out of file descriptors (EMFILE in accept) stops accepting for a moment, says so
  once, serves on and accepts again: no busy loop, no exit.

Each server is started with ``-w 1`` and the fewest threads the check needs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import APPS, Server


def _needs(lib: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(lib) is None, reason=f"needs {lib}")


WSGI_KINDS = [
    pytest.param("sync", id="sync"),
    pytest.param("gthread", id="gthread"),
    pytest.param("gevent", id="gevent", marks=_needs("gevent")),
    pytest.param("eventlet", id="eventlet", marks=_needs("eventlet")),
]
CONCURRENT_KINDS = WSGI_KINDS[1:]  # workers whose loop beats while requests run


def flags(kind: str, threads: int = 2) -> list[str]:
    if kind == "asgi":
        return ["-k", "asgi", "-w", "1", "faults:asgi"]
    extra = ["--threads", str(threads)] if kind == "gthread" else []
    return ["-k", kind, "-w", "1", *extra, "faults:app"]


def request(
    server: Server, path: str, version: str = "1.1", timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection (``Connection: close``): status, headers, raw body
    (chunked framing left in), read until the server closes. Status 0: no response."""
    data = server.raw(
        f"GET {path} HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout
    )
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return 0, {}, data
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """The data of a chunked body, and whether it ended with its last chunk."""
    out = b""
    while True:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            return out, False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out, rest.startswith(b"\r\n")
        if len(rest) < size + 2:
            return out + rest[:size], False
        out += rest[:size]
        body = rest[size + 2 :]


def pid_of(server: Server) -> int:
    status, _, body = request(server, "/")
    assert status == 200, (status, body)
    return int(body.split()[1])


# -- a request cannot end its worker --------------------------------------------------------


@pytest.mark.parametrize("kind", [*WSGI_KINDS, pytest.param("asgi", id="asgi")])
def test_exit_and_failing_hooks_are_answered_and_the_worker_lives(greenhorn, kind):
    s = greenhorn(*flags(kind), "-c", str(APPS / "faults_hooks.py"), ready_path="/")
    worker = pid_of(s)
    expected = {
        "/exit?code=3": 500,  # gunicorn answers 500 to sys.exit() under sync too
        "/exit?code=4": 500,
        "/pre-raise": 500,  # pre_request raising: 500, the application is not called
        "/pre-exit": 500,
        "/post-raise": 200,  # post_request raising: the response already went out
        "/post-exit": 200,
    }
    if kind != "asgi":  # for an event loop, CancelledError is a request being cancelled
        expected["/cancel"] = 500
    got = {path: request(s, path)[0] for path in expected}
    assert got == expected
    assert pid_of(s) == worker, "the worker was replaced"
    log = s.log
    assert log.count("Booting worker") == 1, log[-3000:]
    assert "SystemExit: 3" in log and "SystemExit: 4" in log
    assert "RuntimeError: pre_request hook failed" in log
    assert "RuntimeError: post_request hook failed" in log
    assert log.count("Exception in pre_request hook") == 2
    assert log.count("Exception in post_request hook") == 2
    assert "exited with code" not in log and "Worker failed to boot" not in log


def test_base_exceptions_do_not_empty_the_thread_pool(greenhorn):
    # issue 19: eight requests raising SystemExit or CancelledError killed every thread of
    # -w 2 --threads 4, and the server answered nothing from then on
    s = greenhorn(*flags("gthread", threads=4), ready_path="/")
    worker = pid_of(s)
    for i in range(8):
        assert request(s, "/exit?code=1" if i % 2 else "/cancel")[0] == 500
    results: list[int] = []
    t0 = time.monotonic()
    clients = [
        threading.Thread(target=lambda: results.append(request(s, "/sleep?t=1")[0]))
        for _ in range(4)
    ]
    for c in clients:
        c.start()
    for c in clients:
        c.join(20)
    assert results == [200] * 4
    assert time.monotonic() - t0 < 3.5, "the four threads did not serve in parallel"
    assert pid_of(s) == worker


FATAL_LOGGER = '''
from greenhorn.observe.logger import Logger


class FatalLogger(Logger):
    """A logger that cannot log a request error: it raises SystemExit instead."""

    def exception(self, msg, *args, **kwargs):
        if "request" in str(msg) or "connection" in str(msg):
            raise SystemExit("the logger gave up")
        super().exception(msg, *args, **kwargs)
'''


def test_a_pool_thread_that_dies_stops_its_worker_which_is_replaced(greenhorn, tmp_path):
    # the handler contains what a request raises; if a thread dies anyway (here: the
    # logger itself raises SystemExit while reporting the error), the worker must not sit
    # alive with no thread to serve: it exits and the master starts another
    (tmp_path / "fatal_logger.py").write_text(FATAL_LOGGER)
    s = greenhorn(
        *flags("gthread", threads=1),
        "--pythonpath",
        f"{APPS},{tmp_path}",
        "--logger-class",
        "fatal_logger.FatalLogger",
        ready_path="/",
    )
    first = pid_of(s)
    assert request(s, "/exit?code=1", timeout=10)[0] in (0, 500)  # no answer is expected
    s.wait_for_log(r"Pool thread greenhorn-0 died; the worker stops")
    s.wait_for_log(rf"Worker \(pid:{first}\) exited with code 1")
    second = s.wait_workers(1, exclude={first})[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            status, _, body = request(s, "/", timeout=2)
        except OSError:
            status, body = 0, b""
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200 and int(body.split()[1]) == second


# -- the timeout ------------------------------------------------------------------------------

# How each worker type's loop gets stuck: the sync worker's loop is the request; a threaded
# or green worker's loop stops only when a request holds the GIL (or the hub) in C code.
STUCK = {
    "sync": "/sleep?t=30",
    "gthread": "/hold?t=5&then=30",
    "gevent": "/hold?t=5&then=30",
    "eventlet": "/hold?t=5&then=30",
}


@pytest.mark.parametrize("kind", WSGI_KINDS)
def test_timeout_never_fires_early_and_answers_500(greenhorn, kind):
    # issue 19: with --timeout 2 a request was aborted after 1.1-2.0 s, and its client got
    # an empty reply; gunicorn aborts after 2.1-2.8 s and answers 500
    s = greenhorn(*flags(kind), "-t", "2", ready_path="/")
    victim = pid_of(s)
    path = STUCK[kind]
    t0 = time.monotonic()
    status, headers, body = request(s, path)
    elapsed = time.monotonic() - t0
    assert elapsed >= 2.0, f"aborted after {elapsed:.2f}s with --timeout 2"
    assert elapsed < 10, f"the stuck request ran {elapsed:.1f}s with --timeout 2"
    assert status == 500, (status, body)
    assert b"timeout" in body and headers.get("connection") == "close"
    s.wait_workers(1, exclude={victim})
    assert pid_of(s) != victim
    target = re.escape(path)
    expected = [
        rf"WORKER TIMEOUT \(pid:{victim}\) while serving GET {target} for \d",  # the master
        rf"Worker timeout: aborting while serving GET {target}",  # the worker
        r'File ".*faults\.py", line \d+,? in (app|_hold)',  # the stack of the request
    ]
    if kind in ("gevent", "eventlet"):  # faulthandler sees the hub; these show the request
        expected.append(r"Greenlet stacks \(\d+\):")
    log = s.log
    assert all(re.search(rx, log) for rx in expected), log


@pytest.mark.parametrize("kind", CONCURRENT_KINDS)
def test_a_slow_request_is_a_warning_and_its_neighbours_live(greenhorn, kind):
    # issue 19: with -k gthread -t 10 a legitimate 15 s stream was cut at 10.7 s and the
    # whole worker aborted, with every other request in it; gunicorn served all of it
    s = greenhorn(*flags(kind, threads=4), "-t", "2", ready_path="/")
    worker = pid_of(s)
    results: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def fetch(path: str) -> None:
        results[path] = request(s, path)

    clients = [
        threading.Thread(target=fetch, args=(path,))
        for path in ("/stream?n=5&t=1", "/sleep?t=3.5", "/sleep?t=0.5")
    ]
    for c in clients:
        c.start()
    for c in clients:
        c.join(30)
    status, headers, body = results["/stream?n=5&t=1"]
    assert status == 200 and headers.get("transfer-encoding") == "chunked"
    assert dechunk(body) == (b"".join(b"line %d\n" % i for i in range(5)), True)
    assert results["/sleep?t=3.5"][0] == results["/sleep?t=0.5"][0] == 200
    assert pid_of(s) == worker
    s.wait_for_log(r"Request running for [\d.]+s, past the 2s timeout: GET /stream\?n=5&t=1")
    s.wait_for_log(r'File ".*faults\.py", line \d+, in lines')  # the stack of the stream
    s.wait_for_log(r"Request running for [\d.]+s, past the 2s timeout: GET /sleep\?t=3\.5")
    assert "WORKER TIMEOUT" not in s.log
    assert "/sleep?t=0.5" not in s.log.partition("past the")[2]


# -- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WSGI_KINDS[:2])
def test_unknown_length_is_chunked_when_closing_and_a_cut_body_shows(greenhorn, kind):
    # issue 19: a body without Content-Length was close-delimited, so an application error
    # midway looked like a complete response (curl exited 0)
    s = greenhorn(*flags(kind), ready_path="/")
    status, headers, body = request(s, "/stream?n=3")
    assert status == 200 and headers["connection"] == "close"
    assert headers.get("transfer-encoding") == "chunked"
    assert dechunk(body) == (b"line 0\nline 1\nline 2\n", True)

    status, headers, body = request(s, "/fail-midway")
    assert status == 200 and headers.get("transfer-encoding") == "chunked"
    assert dechunk(body) == (b"partial\n", False), "the cut body looks complete"

    status, headers, body = request(s, "/stream?n=3", version="1.0")  # no chunked in 1.0
    assert status == 200 and "transfer-encoding" not in headers
    assert body == b"line 0\nline 1\nline 2\n"

    curl = shutil.which("curl")
    if curl is not None:  # what a user sees: curl fails on the cut body, not on the whole one
        for path, ok in (("/stream?n=3", True), ("/fail-midway", False)):
            done = subprocess.run(
                [curl, "-sS", "-o", "/dev/null", s.url(path)], capture_output=True, timeout=20
            )
            assert (done.returncode == 0) is ok, (path, done.returncode, done.stderr)


# -- out of file descriptors ------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize("kind", [*WSGI_KINDS, pytest.param("asgi", id="asgi")])
def test_out_of_file_descriptors_pauses_accepting(greenhorn, kind):
    # issue 19: under ulimit -n 256 with 600 keep-alive connections held, both gthread
    # workers died with "OSError: [Errno 24] Too many open files" in accept()
    s = greenhorn(*flags(kind), wrapper=("prlimit", "--nofile=256:256", "--"))
    worker = pid_of(s)
    assert request(s, "/hog?t=2")[0] == 200
    time.sleep(0.5)  # the worker holds every descriptor it may open now, for 2 s
    cpu = _cpu_seconds(worker)
    t0 = time.monotonic()
    status, _, body = request(s, "/")  # queued by the kernel until accept() works again
    waited = time.monotonic() - t0
    assert status == 200, (status, body, s.log[-3000:])
    burnt = _cpu_seconds(worker) - cpu
    assert pid_of(s) == worker, f"the worker was replaced\n{s.log[-3000:]}"
    assert waited > 0.5, "accept() did not fail: the test no longer tests anything"
    assert burnt < 0.5, f"{burnt:.2f}s of CPU in {waited:.2f}s: a busy loop"
    log = s.log
    assert log.count("Too many open files") == 1, log[-3000:]
    assert "Traceback" not in log and "Booting worker" in log and log.count("Booting") == 1
