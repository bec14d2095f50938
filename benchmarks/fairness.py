"""How evenly the threaded workers share keep-alive connections under load (issue 7).

Why this script: a gthread worker that accepts whenever its listener is readable can take
most of the connections while its siblings idle (gunicorn's behaviour); greenhorn's listens
only while it has a free thread. ``tests/e2e/test_fairness.py`` checks that with a generous
bound; this script measures it under heavier load, for greenhorn and, when available,
gunicorn in the same run, and prints each worker's share of connections and requests.

Load: ``--connections`` client threads for ``--duration`` seconds. Each client opens a
keep-alive connection, sends ``--requests-per-connection`` requests one after another (each
answer names the worker pid), closes and reconnects. Both servers run the same tiny app
(written to a temporary directory), which sleeps ``?ms=`` milliseconds to stand for work:
each value of ``--work-ms`` is one scenario (0 = a hello-world app, where threads are
rarely all busy; 20 = requests that hold a thread).

    python benchmarks/fairness.py
    python benchmarks/fairness.py --connections 64 --duration 5 --work-ms 0,20
    python benchmarks/fairness.py --gunicorn /path/to/gunicorn   # default: /work/gvenv/bin/gunicorn
    python benchmarks/fairness.py --reuse-port -k sync --connections 8 --requests-per-connection 1

``--reuse-port`` runs both servers with it (each worker its own SO_REUSEPORT socket; both
bind a free port chosen here, since gunicorn's workers cannot share port 0), and ``-k``
picks the worker type (default gthread).

Standard library only. Every server is started in its own session on 127.0.0.1 port 0 and
stopped by its PID (SIGTERM, then SIGKILL to its process group after a timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_GUNICORN = "/work/gvenv/bin/gunicorn"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

APP = '''\
"""Answers with the worker pid; ?ms=N sleeps N milliseconds first."""
import os
import time


def app(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if query.startswith("ms="):
        time.sleep(int(query[3:]) / 1000.0)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

CONF = """\
import os
MARKS = {marks!r}


def post_worker_init(worker):
    open(os.path.join(MARKS, str(os.getpid())), "w").close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tally:
    """What the clients saw: connections and requests per worker pid, and failures."""

    connections: Counter[int] = field(default_factory=Counter)
    requests: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def read_body(sock: socket.socket, buf: bytearray) -> bytes:
    """The body of the next response (Content-Length framing); ``buf`` keeps the surplus."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a response head")
        buf += data
    head = bytes(buf).partition(b"\r\n\r\n")[0]
    if not head.startswith(b"HTTP/1.1 200 "):
        raise ConnectionError(f"unexpected status: {head[:40]!r}")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if match is None:
        raise ConnectionError("response without Content-Length")
    start, length = len(head) + 4, int(match.group(1))
    while len(buf) < start + length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside a response body")
        buf += data
    body = bytes(buf[start : start + length])
    del buf[: start + length]
    return body


def client(port: int, path: bytes, per_conn: int, deadline: float, tally: Tally) -> None:
    request = b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n"
    while time.monotonic() < deadline:
        served: Counter[int] = Counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                buf = bytearray()
                for _ in range(per_conn):
                    sock.sendall(request)
                    served[int(read_body(sock, buf))] += 1
                    if time.monotonic() >= deadline:
                        break
        except (OSError, ValueError) as exc:
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
        with tally.lock:
            for pid, n in served.items():
                tally.connections[pid] += 1
                tally.requests[pid] += n


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    log: Path
    port: int = 0

    def workers(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []


def wait_for(predicate: Callable[[], object], timeout: float, what: str, server: Server) -> object:
    """Poll ``predicate`` until truthy; RuntimeError (with the log tail) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name}: timed out waiting for {what}\n{tail}")


@contextlib.contextmanager
def running(
    name: str, argv: list[str], workdir: Path, workers: int, port: int = 0
) -> Iterator[Server]:
    """Start a server, wait until all its workers have booted, stop it by PID afterwards."""
    marks = workdir / f"marks-{name}"
    marks.mkdir()
    conf = workdir / f"{name}.conf.py"
    conf.write_text(CONF.format(marks=str(marks)))
    log = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_CMD_ARGS")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*argv, "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(workdir),
            env=env,
            start_new_session=True,
        )
    server = Server(name, proc, log)
    try:
        if port:  # gunicorn --reuse-port logs no address: its master holds no socket
            server.port = port
        else:
            rx = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
            found = wait_for(
                lambda: rx.findall(log.read_text(errors="replace")), START_TIMEOUT, "listen", server
            )
            server.port = int(found[0])  # type: ignore[index]

        def booted() -> bool:
            pids = set(server.workers())
            return len(pids) == workers and pids <= {int(p.name) for p in marks.iterdir()}

        wait_for(booted, START_TIMEOUT, f"{workers} booted workers", server)
        yield server
    finally:
        stop(server)


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(5)


def measure(server: Server, args: argparse.Namespace, work_ms: int) -> Tally:
    tally = Tally()
    path = f"/?ms={work_ms}".encode() if work_ms else b"/"
    deadline = time.monotonic() + args.duration
    threads = [
        threading.Thread(
            target=client,
            args=(server.port, path, args.requests_per_connection, deadline, tally),
            daemon=True,
        )
        for _ in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 30)
    return tally


def report(name: str, work_ms: int, workers: list[int], tally: Tally, seconds: float) -> str:
    conns = sum(tally.connections.values())
    reqs = sum(tally.requests.values())
    lines = [
        f"{name:<10} work={work_ms}ms  {conns} connections, {reqs} requests "
        f"({reqs / seconds:.0f} req/s), errors: {dict(tally.errors) or 'none'}"
    ]
    for rank, pid in enumerate(sorted(workers, key=lambda p: -tally.connections[p])):
        c, r = tally.connections[pid], tally.requests[pid]
        lines.append(
            f"  worker {rank + 1} (pid {pid}): connections {c:>6} ({100 * c / max(conns, 1):5.1f}%)"
            f"   requests {r:>7} ({100 * r / max(reqs, 1):5.1f}%)"
        )
    busiest = max(tally.connections.values(), default=0)
    lines.append(f"  busiest worker's share of connections: {100 * busiest / max(conns, 1):.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--requests-per-connection", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--work-ms", default="0,20", help="comma-separated app sleep per request, one run each"
    )
    parser.add_argument(
        "--gunicorn", default=None, help=f"gunicorn executable ({DEFAULT_GUNICORN})"
    )
    parser.add_argument("--no-gunicorn", action="store_true", help="measure greenhorn only")
    parser.add_argument("--reuse-port", action="store_true", help="run both with --reuse-port")
    parser.add_argument("-k", "--worker-class", default="gthread", help="default: gthread")
    args = parser.parse_args(argv)

    gunicorn = None
    if not args.no_gunicorn:
        candidate = args.gunicorn or DEFAULT_GUNICORN
        gunicorn = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if gunicorn is None and args.gunicorn:
            parser.error(f"--gunicorn {args.gunicorn}: not an executable")
    flags = ["-k", args.worker_class, "-w", str(args.workers), "--threads", str(args.threads)]
    flags += ["--keep-alive", "5"] + (["--reuse-port"] if args.reuse_port else [])
    with tempfile.TemporaryDirectory(prefix="fairness-") as tmp:
        workdir = Path(tmp)
        (workdir / "pidapp.py").write_text(APP)
        servers = [
            (
                "greenhorn",
                [sys.executable, "-m", "greenhorn", "--pythonpath", tmp, *flags, "pidapp:app"],
            )
        ]
        if gunicorn is not None:
            servers.append(("gunicorn", [gunicorn, "--chdir", tmp, *flags, "pidapp:app"]))
        else:
            print("gunicorn: not found (use --gunicorn PATH); measuring greenhorn only\n")
        print(
            f"{args.connections} keep-alive clients x {args.duration:g}s, "
            f"{args.requests_per_connection} requests per connection, "
            f"-k {args.worker_class} -w {args.workers} --threads {args.threads}"
            f"{' --reuse-port' if args.reuse_port else ''}\n"
        )
        for work_ms in (int(w) for w in args.work_ms.split(",") if w.strip()):
            for name, argv_ in servers:
                port = free_port() if args.reuse_port else 0
                argv_ = [*argv_, "-b", f"127.0.0.1:{port}"]
                with running(f"{name}-{work_ms}", argv_, workdir, args.workers, port) as server:
                    workers = server.workers()
                    t0 = time.monotonic()
                    tally = measure(server, args, work_ms)
                    print(report(name, work_ms, workers, tally, time.monotonic() - t0))
                    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
