"""Fair accept in the threaded worker (issue 7): concurrent keep-alive clients are spread over
the workers instead of being hoarded by whichever worker wakes first.

Why: gunicorn's gthread worker accepts whenever its listener is readable, so under load one
worker can take most connections while a sibling idles. greenhorn's listens only while it has
a free thread. This test drives 16 concurrent keep-alive connections at ``-w 2 --threads 2``
and checks the split with a generous bound; ``benchmarks/fairness.py`` measures the same under
heavier load, side by side with gunicorn.

Each request holds its thread for 20 ms (``slow:app?t=0.02``, which names the worker pid in
its answer), so the connections really are concurrent at the server. With a hello-world app
a request is over before the next connection arrives, a worker rarely has both threads busy,
and the split is left to the kernel's wake-up order: measured 8-13 of 16 for greenhorn (and
8-15 for gunicorn), too loose for a bound that must hold on every run. With 20 ms of work,
greenhorn measured 8/8 every time and gunicorn 11-16 of 16.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from pathlib import Path

from conftest import wait_until

CONNECTIONS = 16
WORK = 0.02  # seconds each request holds a thread
REQUESTS_PER_CONNECTION = 4
MAX_SHARE = 0.8


def boot_marker(tmp: Path) -> tuple[Path, Path]:
    """A config file whose post_worker_init hook drops ``<dir>/<pid>`` once a worker is ready."""
    marks = tmp / "booted"
    marks.mkdir()
    conf = tmp / "marker.conf.py"
    conf.write_text(
        "import os\n"
        "def post_worker_init(worker):\n"
        f"    open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()\n"
    )
    return conf, marks


def read_response(sock: socket.socket, buf: bytearray) -> bytes:
    """The body of the next response (framed by Content-Length); ``buf`` keeps the surplus."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full response head: {bytes(buf)!r}")
        buf += data
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    start = len(head) + 4
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"\r\nconnection: close" not in head.lower(), "keep-alive was refused"
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(buf) < start + length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside a response body")
        buf += data
    body = bytes(buf[start : start + length])
    del buf[: start + length]
    return body


def client(port: int, gate: threading.Barrier, out: list[list[int]], errors: list[str]) -> None:
    """One keep-alive connection sending a few requests; records the worker pid of each."""
    pids: list[int] = []
    try:
        gate.wait(10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            buf = bytearray()
            for i in range(REQUESTS_PER_CONNECTION):
                sock.sendall(f"GET /?t={WORK}&i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                body = read_response(sock, buf)  # b"slept 0.02 in <pid>\n"
                pids.append(int(body.split()[-1]))
    except (OSError, AssertionError, threading.BrokenBarrierError) as exc:
        errors.append(repr(exc))
    out.append(pids)


def test_gthread_spreads_keep_alive_connections_over_workers(greenhorn, tmp_path):
    conf, marks = boot_marker(tmp_path)
    s = greenhorn(
        "slow:app",
        "-k",
        "gthread",
        "-w",
        "2",
        "--threads",
        "2",
        "-c",
        str(conf),
        ready_path="/?t=0",
    )

    def booted() -> set[int] | None:
        pids = set(s.worker_pids())
        return pids if len(pids) == 2 and pids <= {int(p.name) for p in marks.iterdir()} else None

    workers = wait_until(booted, 20, what="2 booted workers")
    gate = threading.Barrier(CONNECTIONS)
    out: list[list[int]] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=client, args=(s.port, gate, out, errors))
        for _ in range(CONNECTIONS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a client is still running after 30s"
    assert not errors, errors[:3]
    assert all(len(set(p)) == 1 for p in out), "a keep-alive connection moved between workers"
    per_worker = Counter(p[0] for p in out)
    assert set(per_worker) <= workers
    split = {pid: f"{n}/{CONNECTIONS}" for pid, n in per_worker.most_common()}
    print(f"connections per worker: {split}")
    busiest = per_worker.most_common(1)[0][1]
    assert busiest <= MAX_SHARE * CONNECTIONS, f"one worker hoarded the connections: {split}"
