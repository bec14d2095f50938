"""Every worker class through the real process: one suite, parametrized over sync, gthread,
gevent and eventlet (issue 7).

Why one suite: the worker types share the connection handler but each decides on its own
when a connection is accepted, kept alive, timed out and let go. Running the same checks
against each is how a difference in one of them shows: concurrency, keep-alive and
pipelining, graceful TERM, HUP, max_requests, the per-request timeout, bad input and the
request corpus replayed over a socket.

Speed: the protocol checks (keep-alive, pipelining, bad input, bodies, corpus) share one
server per (worker class, app) for the whole module, started on first use; the lifecycle
checks (TERM, HUP, max_requests, timeouts, the connection cap, a killed master) need a
server of their own and use ``-w 1``.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import Server, alive, launch, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "requests"))
import corpus


def _needs(lib: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(lib) is None,
        reason=f"-k {lib} needs the {lib} library, which is not importable here "
        f"(pip install {lib})",
    )


KINDS = [
    pytest.param("sync", id="sync"),
    pytest.param("gthread", id="gthread"),
    pytest.param("gevent", id="gevent", marks=_needs("gevent")),
    pytest.param("eventlet", id="eventlet", marks=_needs("eventlet")),
    pytest.param("asgi", id="asgi"),
]
KEEPALIVE_KINDS = KINDS[1:]  # the worker classes that keep connections alive
# -k asgi serves the ASGI twins of the test apps (tests/apps/asgiapps.py), which answer the
# same way; a blocking /spin there blocks the event loop.
ASGI_APPS = {
    "echo:app": "asgiapps:echo",
    "hello:app": "asgiapps:hello",
    "slow:app": "asgiapps:slow",
}


def app(kind: str, name: str) -> str:
    """The application ``name`` in the form worker type ``kind`` serves."""
    return ASGI_APPS[name] if kind == "asgi" else name


KEEPALIVE = 1  # --keep-alive for the shared servers (seconds)


def flags(kind: str, parallel: int = 1) -> list[str]:
    """Worker flags giving ``parallel`` concurrent requests with as few processes as possible:
    sync needs a process per request, gthread a thread, the green workers one process."""
    if kind == "sync":
        return ["-k", "sync", "-w", str(parallel)]
    if kind == "gthread":
        return ["-k", "gthread", "-w", "1", "--threads", str(max(parallel, 4))]
    return ["-k", kind, "-w", "1"]


def one_at_a_time(kind: str) -> list[str]:
    """Worker flags under which a second connection must wait for the first to finish, so
    that it queues in the kernel's backlog for every worker class."""
    if kind == "sync":
        return ["-k", "sync", "-w", "1"]
    if kind == "gthread":
        return ["-k", "gthread", "-w", "1", "--threads", "1"]
    return ["-k", kind, "-w", "1", "--worker-connections", "1"]


# -- raw HTTP client ---------------------------------------------------------------------------


class Resp:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def info(self) -> dict[str, Any]:
        """The echo app's JSON line."""
        return json.loads(self.body.partition(b"\n")[0])

    def __repr__(self) -> str:
        return f"<Resp {self.status} {self.headers} {self.body[:80]!r}>"


class Reader:
    """Reads responses one at a time off a client socket (framed by Content-Length)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data

    def response(self, head_only: bool = False) -> Resp | None:
        """The next response; None when the server closed cleanly between responses."""
        while b"\r\n\r\n" not in self.buf:
            if self.eof:
                assert not self.buf, f"connection closed inside a response head: {self.buf!r}"
                return None
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_only or status < 200 or status in (204, 304):
            length = 0
        else:
            assert "content-length" in headers, f"unframed response: {head!r}"
            length = int(headers["content-length"])
        while len(rest) < length and not self.eof:
            self.buf = rest
            self._fill()
            rest = self.buf
        assert len(rest) >= length, f"body truncated: {len(rest)} of {length} bytes"
        self.buf = rest[length:]
        return Resp(status, headers, rest[:length])

    def closed_within(self, seconds: float) -> float:
        """Wait for the server to close (nothing else may arrive); return the seconds taken."""
        t0 = time.monotonic()
        self.sock.settimeout(seconds)
        try:
            self._fill()
        except TimeoutError:
            raise AssertionError(f"connection still open after {seconds}s") from None
        assert self.eof, f"unexpected bytes instead of a close: {self.buf!r}"
        return time.monotonic() - t0


def get(path: str, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def exchange(server: Server, data: bytes) -> Resp:
    """One request on a fresh connection, one response."""
    with server.connect() as c:
        c.sendall(data)
        resp = Reader(c).response()
    assert resp is not None, "server closed without answering"
    return resp


# -- servers -----------------------------------------------------------------------------------


def boot_marker(tmp: Path) -> tuple[Path, Path]:
    """A config file whose post_worker_init hook drops ``<dir>/<pid>`` once a worker is ready."""
    marks = tmp / "booted"
    marks.mkdir(exist_ok=True)
    conf = tmp / "marker.conf.py"
    conf.write_text(
        "import os\n"
        "def post_worker_init(worker):\n"
        f"    open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()\n"
    )
    return conf, marks


def wait_booted(server: Server, marks: Path, n: int, exclude: set[int] = frozenset()) -> set[int]:
    """Pids of ``n`` running workers that have all finished booting (see ``boot_marker``)."""

    def ready() -> set[int] | None:
        pids = set(server.worker_pids()) - exclude
        booted = {int(p.name) for p in marks.iterdir()}
        return pids if len(pids) == n and pids <= booted else None

    return wait_until(ready, 20, what=f"{n} booted workers\n{server.log[-2000:]}")  # type: ignore[return-value]


class Fleet:
    """Servers shared by this module's protocol tests, one per (worker class, app)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: dict[tuple[str, str], Server] = {}

    def get(self, kind: str, app: str) -> Server:
        server = self.servers.get((kind, app))
        if server is not None and server.proc.poll() is None:
            return server
        n = len(list(self.tmp.glob("*.err")))
        argv = ["-b", "127.0.0.1:0", *flags(kind), "--keep-alive", str(KEEPALIVE), app]
        server = launch(argv, self.tmp / f"{kind}-{n}", cwd=self.tmp)
        self.servers[(kind, app)] = server
        server.port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 20)[0])
        wait_until(lambda: _answers(server), 20, 0.05, f"{kind} {app} answering\n{server.log}")
        return server

    def close(self) -> None:
        for server in self.servers.values():
            try:  # a quick stop: graceful stops are tested on servers of their own
                server.stop(signal.SIGQUIT, timeout=15)
            except AssertionError:
                pass
            server.kill_group()
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(5)


def _answers(server: Server) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.log[-3000:]}")
    try:
        return exchange(server, get("/", close=True)).status == 200
    except (OSError, AssertionError):
        return False


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    yield f
    f.close()


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_slow_requests_are_served_in_parallel(greenhorn, tmp_path, kind):
    n = 4
    conf, marks = boot_marker(tmp_path)
    s = greenhorn(app(kind, "slow:app"), *flags(kind, n), "-c", str(conf), ready_path="/?t=0")
    wait_booted(s, marks, n if kind == "sync" else 1)

    def one(_: int) -> str:
        r = requests.get(s.url("/?t=1"), timeout=15)
        assert r.status_code == 200
        return r.text.split()[-1]

    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        pids = list(pool.map(one, range(n), timeout=30))
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, f"{n} one-second requests took {elapsed:.2f}s: not served in parallel"
    # sync: one request per process, so each went to its own worker
    assert len(set(pids)) == (n if kind == "sync" else 1), pids


# -- keep-alive and pipelining -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_keep_alive_two_requests_on_one_socket(fleet, kind):
    s = fleet.get(kind, app(kind, "echo:app"))
    with s.connect() as c:
        reader = Reader(c)
        c.sendall(get("/one"))
        first = reader.response()
        assert first is not None and first.status == 200
        if kind == "sync":
            assert first.headers.get("connection") == "close"
            reader.closed_within(2.0)
            return
        assert "connection" not in first.headers, first.headers
        c.sendall(get("/two"))
        second = reader.response()
        assert second is not None and second.status == 200
        assert "connection" not in second.headers, second.headers
    assert (first.info["PATH_INFO"], second.info["PATH_INFO"]) == ("/one", "/two")
    assert first.info["REMOTE_PORT"] == second.info["REMOTE_PORT"]
    assert first.info["pid"] == second.info["pid"]


@pytest.mark.parametrize("kind", KINDS)
def test_pipelined_requests_are_answered_in_order(fleet, kind):
    s = fleet.get(kind, app(kind, "echo:app"))
    with s.connect() as c:
        reader = Reader(c)
        c.sendall(get("/a") + get("/b?x=1") + get("/c", close=True))
        responses = []
        while (resp := reader.response()) is not None:
            responses.append(resp)
    paths = [r.info["RAW_URI"] for r in responses]
    if kind == "sync":
        assert paths == ["/a"], "the sync worker answers one request per connection"
        assert responses[0].headers["connection"] == "close"
    else:
        assert paths == ["/a", "/b?x=1", "/c"]
        assert [r.headers.get("connection") for r in responses] == [None, None, "close"]


@pytest.mark.parametrize("kind", KINDS)
def test_idle_keep_alive_connection_is_closed_after_keepalive(fleet, kind):
    s = fleet.get(kind, app(kind, "hello:app"))
    with s.connect() as c:
        reader = Reader(c)
        c.sendall(get("/"))
        resp = reader.response()
        assert resp is not None and resp.status == 200
        waited = reader.closed_within(KEEPALIVE + 4.0)
    if kind == "sync":
        assert waited < 1.0, f"the sync worker closes at once, took {waited:.2f}s"
    else:
        # kept open for about --keep-alive seconds, not closed at once, not held forever
        assert KEEPALIVE * 0.5 <= waited <= KEEPALIVE + 3.0, f"closed after {waited:.2f}s"


@pytest.mark.parametrize("kind", KEEPALIVE_KINDS)
def test_worker_connections_cap_frees_up_when_keep_alive_expires(greenhorn, kind):
    # two idle keep-alive connections fill the cap; a third client waits for one of them
    # to be closed after --keep-alive, then is served (gthread once stopped listening for
    # good: expiring parked connections did not re-arm the listeners)
    cap = ["--worker-connections", "2", "--keep-alive", str(KEEPALIVE)]
    threads = ["--threads", "1"] if kind == "gthread" else []
    s = greenhorn(app(kind, "echo:app"), "-k", kind, "-w", "1", *threads, *cap)
    idle = [s.connect(), s.connect()]
    try:
        for i, c in enumerate(idle):
            c.sendall(get(f"/idle{i}"))
            resp = Reader(c).response()
            assert resp is not None and resp.status == 200
        t0 = time.monotonic()
        with s.connect(timeout=KEEPALIVE + 3.0) as late:
            late.sendall(get("/late"))
            try:
                resp = Reader(late).response()
            except TimeoutError:
                resp = None
        waited = time.monotonic() - t0
    finally:
        for c in idle:
            c.close()
    assert resp is not None and resp.status == 200, f"not served after {waited:.1f}s"
    assert waited >= KEEPALIVE * 0.5, f"served after {waited:.2f}s: the cap was not enforced"


# -- signals and recycling ---------------------------------------------------------------------


def refused(port: int) -> bool:
    # a SYN that comes while the last worker drains the queue is dropped (the port takes no
    # new connection then, so that none is reset): not answered, so not refused yet
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.25):
            return False
    except ConnectionRefusedError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("kind", KINDS)
def test_term_finishes_in_flight_serves_queued_and_refuses_new(greenhorn, kind):
    s = greenhorn(
        app(kind, "slow:app"), *one_at_a_time(kind), "--graceful-timeout", "20", ready_path="/?t=0"
    )
    in_flight = s.connect()
    queued: list[socket.socket] = []
    try:
        in_flight.sendall(get("/?t=2"))
        time.sleep(0.5)  # the request is now in the app and holds the only slot
        for i in range(3):  # accepted by the kernel, not yet by the worker
            queued.append(s.connect())
            queued[-1].sendall(get(f"/?t=0&q={i}"))
        time.sleep(0.2)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(s.port), 5, every=0.01, what="new connections refused")
        refused_after = time.monotonic() - t0
        resp = Reader(in_flight).response()
        assert resp is not None and resp.status == 200 and resp.body.startswith(b"slept 2.0")
        for c in queued:
            resp = Reader(c).response()
            assert resp is not None and resp.status == 200, "a queued connection was not served"
    finally:
        for c in [in_flight, *queued]:
            c.close()
    assert refused_after < 2.0, f"new connections still accepted {refused_after:.2f}s after TERM"
    assert s.proc.wait(20) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_hup_under_light_load_loses_nothing(greenhorn, kind):
    s = greenhorn(app(kind, "echo:app"), *flags(kind))
    old = set(s.wait_workers(1))
    failures: list[str] = []
    seen: list[tuple[float, int]] = []  # (when the request was sent, pid that answered)
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            sent = time.monotonic()
            try:
                r = requests.get(s.url("/load"), timeout=10)
                if r.status_code != 200:
                    failures.append(str(r.status_code))
                else:
                    seen.append((sent, json.loads(r.content.partition(b"\n")[0])["pid"]))
            except requests.RequestException as exc:
                failures.append(repr(exc))
            time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        s.send_signal(signal.SIGHUP)
        new = set(s.wait_workers(1, exclude=old, timeout=20))
        wait_until(lambda: not set(s.worker_pids()) & old, 20, what="old worker gone")
        after = time.monotonic()
        wait_until(lambda: any(t > after for t, _ in seen), 10, what="requests sent later")
        time.sleep(0.3)
    finally:
        done.set()
        for t in threads:
            t.join(15)
    assert not failures, failures[:5]
    assert len(seen) > 10
    late = {pid for t, pid in seen if t > after}  # sent once the old worker was gone
    assert late and late <= new and not late & old, (late, new, old)
    assert "Handling signal: hup" in s.log


@pytest.mark.parametrize("kind", KINDS)
def test_max_requests_replaces_the_worker(greenhorn, kind):
    s = greenhorn(app(kind, "echo:app"), *flags(kind), "--max-requests", "3", ready_path=None)
    first = s.wait_workers(1)[0]
    pids = [exchange(s, get(f"/{i}", close=True)).info["pid"] for i in range(3)]
    assert pids == [first] * 3
    s.wait_for_log("Autorestarting worker after current request")
    second = s.wait_workers(1, exclude={first})[0]
    assert exchange(s, get("/after", close=True)).info["pid"] == second
    s.wait_for_log(rf"Worker exited \(pid: {first}\) \[max-requests\]")


@pytest.mark.parametrize("kind", KEEPALIVE_KINDS)
def test_last_response_before_max_requests_says_close(greenhorn, kind):
    # gunicorn counts the request before answering it and forces "Connection: close" on the
    # one that reaches max_requests; otherwise a client reusing the connection races the
    # worker's exit (its next request is reset, and a non-idempotent one cannot be retried)
    s = greenhorn(app(kind, "echo:app"), *flags(kind), "--max-requests", "3", ready_path=None)
    first = s.wait_workers(1)[0]
    with s.connect() as c:
        reader = Reader(c)
        seen = []
        for i in range(3):
            c.sendall(get(f"/{i}"))
            resp = reader.response()
            assert resp is not None and resp.status == 200 and resp.info["pid"] == first
            seen.append(resp.headers.get("connection"))
        reader.closed_within(5.0)
    assert seen == [None, None, "close"]


@pytest.mark.parametrize("kind", KEEPALIVE_KINDS)
def test_a_kept_alive_connection_counts_its_requests_not_its_end(greenhorn, kind):
    """--max-requests 3: two requests on a kept-alive connection the client then closes,
    and a third on a new connection, all served by the first worker, which then leaves.
    (The gevent and eventlet workers counted the client's close as a request too.)"""
    s = greenhorn(app(kind, "echo:app"), *flags(kind), "--max-requests", "3", ready_path=None)
    first = s.wait_workers(1)[0]
    with s.connect() as c:
        reader = Reader(c)
        for i in range(2):
            c.sendall(get(f"/{i}"))
            resp = reader.response()
            assert resp is not None and resp.info["pid"] == first
    time.sleep(0.2)  # the worker sees the close before the next connection
    assert exchange(s, get("/2", close=True)).info["pid"] == first
    s.wait_for_log(rf"Worker exited \(pid: {first}\) \[max-requests\]")


# A spinning request stops the loop of these worker types (the sync worker's loop is the
# request; a green or asyncio worker's hub never gets control back). A gthread worker's loop
# keeps beating beside a spinning thread: gunicorn's meaning of the timeout, tested with a
# request that holds the GIL in tests/e2e/test_request_faults.py.
LOOP_STOPPING_KINDS = [k for k in KINDS if k.values[0] != "gthread"]


@pytest.mark.parametrize("kind", LOOP_STOPPING_KINDS)
def test_hung_request_is_killed_at_timeout(greenhorn, kind):
    s = greenhorn(app(kind, "slow:app"), *flags(kind), "-t", "2", ready_path="/?t=0")
    victim = s.wait_workers(1)[0]
    t0 = time.monotonic()
    r = None
    try:
        r = requests.get(s.url("/spin?t=60"), timeout=30)
    except requests.RequestException:
        pass
    elapsed = time.monotonic() - t0
    assert elapsed < 15, f"the hung request ran {elapsed:.1f}s with -t 2"
    assert r is None or r.status_code >= 500
    s.wait_for_log(rf"WORKER TIMEOUT \(pid:{victim}\) while serving GET /spin\?t=60")
    if kind == "asgi":  # the event loop was blocked: its stack shows the blocking code
        s.wait_for_log(r'File ".*asgiapps\.py", line \d+ in slow')
        s.wait_for_log(r"Worker timeout: aborting while serving GET /spin\?t=60")
    else:
        s.wait_for_log(r'File ".*slow\.py", line \d+ in app')
    s.wait_workers(1, exclude={victim})
    r = requests.get(s.url("/?t=0"), timeout=10)
    assert r.status_code == 200 and str(victim) not in r.text


@pytest.mark.parametrize("kind", KINDS)
def test_workers_exit_when_the_master_is_killed(greenhorn, tmp_path, kind):
    # gunicorn's workers leave with "Parent changed, shutting down"; orphans would keep
    # serving unsupervised. The control socket goes in tmp_path: a killed master leaves it.
    s = greenhorn(
        app(kind, "hello:app"), *flags(kind), "--control-socket", str(tmp_path / "ctl.sock")
    )
    worker = s.wait_workers(1)[0]
    s.proc.kill()  # SIGKILL to the master alone: it gets no chance to stop its workers
    s.proc.wait(10)
    try:
        # the worker loops look about once a second (gunicorn's too)
        wait_until(lambda: not alive(worker), 5, 0.05, f"worker {worker} to leave")
    finally:
        s.kill_group()  # the orphans are still in the master's process group


# -- bad input and bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_request_gets_400_and_the_worker_lives(fleet, kind):
    s = fleet.get(kind, app(kind, "hello:app"))
    before = s.worker_pids()
    resp = exchange(s, b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
    assert resp.status == 400 and resp.headers["connection"] == "close"
    assert exchange(s, get("/")).status == 200
    assert s.worker_pids() == before
    assert "Invalid request from ip=127.0.0.1" in s.log


@pytest.mark.parametrize("kind", KINDS)
def test_post_bodies_are_echoed(fleet, kind):
    s = fleet.get(kind, app(kind, "echo:app"))
    body = bytes(range(256)) * 800
    resp = exchange(
        s,
        b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert resp.status == 200 and resp.info["body_len"] == len(body)
    assert resp.body.partition(b"\n")[2] == body
    pieces = [b"first ", b"x" * 5000, b"", b"last"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\nX-T: 1\r\n\r\n"
    resp = exchange(
        s, b"POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    )
    assert resp.status == 200 and resp.info["body_len"] == sum(map(len, pieces))
    assert resp.body.partition(b"\n")[2] == b"".join(pieces)
    with s.connect() as c:
        c.sendall(
            b"POST /ex HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        reader = Reader(c)
        interim = reader.response()
        assert interim is not None and interim.status == 100, "no 100 Continue"
        c.sendall(b"hello")
        resp = reader.response()
    assert resp is not None and resp.status == 200 and resp.body.endswith(b"\nhello")


# -- the request corpus over a socket ----------------------------------------------------------


def _spread(cases: list[corpus.Case], k: int) -> list[corpus.Case]:
    """``k`` cases evenly spaced over ``cases`` (first and last included)."""
    if k <= 0 or not cases:
        return []
    if k == 1 or len(cases) <= k:
        return cases[:k]
    return [cases[round(i * (len(cases) - 1) / (k - 1))] for i in range(k)]


def corpus_sample() -> list[corpus.Case]:
    """~22 cases: the pipelined valid ones and a spread of the rest; for invalid ones, one
    per status code, a spread of the pipelined ones, of the EOF ones and of the rest. Cases
    that need non-default parser limits are left out (the servers run with the defaults)."""
    usable = [c for c in corpus.load() if not c.limits]
    valid = [c for c in usable if c.kind == "valid"]
    invalid = [c for c in usable if c.kind == "invalid"]
    pick = [c for c in valid if len(c.expect["requests"]) > 1]
    pick += _spread([c for c in valid if len(c.expect["requests"]) == 1], 10 - len(pick))
    bad: list[corpus.Case] = []
    for status in sorted({c.expect["status"] for c in invalid}):
        bad.append(next(c for c in invalid if c.expect["status"] == status))
    bad += _spread([c for c in invalid if c.expect["requests_before"]], 3)
    bad += _spread([c for c in invalid if c.eof and not c.expect["requests_before"]], 2)
    chosen = {c.name for c in bad}
    bad += _spread([c for c in invalid if c.name not in chosen and not c.eof], 2)
    return pick + list({c.name: c for c in bad}.values())


def expected_statuses(case: corpus.Case, kind: str) -> list[int | str]:
    """What the server must answer: '2xx' per complete request, then the error's status."""
    if case.kind == "valid":
        count = 0
        for req in case.expect["requests"]:
            count += 1
            if not req.get("keep_alive", True):
                break
        statuses: list[int | str] = ["2xx"] * count
    else:
        statuses = ["2xx"] * case.expect["requests_before"] + [case.expect["status"]]
    # the sync worker answers the first request and closes
    return statuses[:1] if kind == "sync" else statuses


@pytest.mark.parametrize("case", corpus_sample(), ids=lambda c: c.name)
@pytest.mark.parametrize("kind", KINDS)
def test_corpus_case_over_the_socket(fleet, kind, case):
    # valid cases on hello (never reads the body); invalid ones on echo, which reads the
    # body, so errors in the body are reached before the response is sent
    s = fleet.get(kind, app(kind, "hello:app" if case.kind == "valid" else "echo:app"))
    assert replay(s, case) == expected_statuses(case, kind), case.data[:300]


def replay(s: Server, case: corpus.Case) -> list[int | str]:
    """Send ``case`` then EOF on a fresh connection: what the server answered, in order."""
    methods = [r.get("method", "GET") for r in case.expect.get("requests", [])]
    got: list[int | str] = []
    with s.connect() as c:
        c.sendall(case.data)
        c.shutdown(socket.SHUT_WR)  # the peer's EOF: the server must answer, then close
        reader = Reader(c)
        while True:
            head_only = len(got) < len(methods) and methods[len(got)] == "HEAD"
            resp = reader.response(head_only=head_only)
            if resp is None:
                break
            if resp.status >= 200:
                got.append("2xx" if 200 <= resp.status < 300 else resp.status)
    return got


def test_the_whole_corpus_through_the_asgi_worker(fleet):
    # the asgi worker has its own request cycle over the shared parser: every corpus case
    # (not only the sample above) gets the answers the WSGI workers give
    valid = fleet.get("asgi", app("asgi", "hello:app"))
    invalid = fleet.get("asgi", app("asgi", "echo:app"))
    wrong = {}
    for case in corpus.load():
        if case.limits:
            continue  # the shared servers run with the default parser limits
        got = replay(valid if case.kind == "valid" else invalid, case)
        if got != expected_statuses(case, "asgi"):
            wrong[case.name] = (got, expected_statuses(case, "asgi"))
    assert not wrong, wrong
