"""Hostile clients for the tests of issue 20 and ``benchmarks/floods.py``: floods of idle,
slowloris and RUDY connections from one process, a probe that times a normal client, and
the memory figures of a worker.

Why one module for both: the tests assert generous bounds, the benchmark measures the same
attacks against greenhorn and gunicorn side by side; both must attack the same way.

- ``Flood``: ``n`` connections opened at once (non-blocking connects, so a thousand take a
  fraction of a second), each sending ``head`` at once and then ``drip`` every ``every``
  seconds from one background thread, until ``close()``.
- ``probe``: one normal request on a new connection; the seconds until its whole response.
- ``open_files(n)``: raise this process's soft open-file limit (up to the hard limit) so a
  thousand sockets fit; servers started afterwards inherit it.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import threading
import time

IDLE = b""
SLOWLORIS = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "  # then one more byte of X-Pad each drip
PROBE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def rudy_head(length: int, path: str = "/", close: bool = False) -> bytes:
    """The head of a slow upload (R-U-Dead-Yet): a POST that declares ``length`` bytes
    (``close``: asking the server to close after answering)."""
    extra = "Connection: close\r\n" if close else ""
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def open_files(needed: int) -> bool:
    """Raise the soft RLIMIT_NOFILE to at least ``needed`` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return True
    if hard != resource.RLIM_INFINITY and hard < needed:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return True


class Flood:
    """``n`` attacking connections; see the module docstring."""

    def __init__(
        self,
        port: int,
        n: int,
        head: bytes = IDLE,
        drip: bytes = b"",
        every: float = 1.0,
        host: str = "127.0.0.1",
        timeout: float = 20.0,
    ) -> None:
        self.socks: list[socket.socket] = []
        self.drip = drip
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._connect(host, port, n, timeout)
            for s in self.socks:
                if head:
                    s.send(head)  # small: fits the socket buffer at once
        except BaseException:
            self.close()
            raise
        if drip:
            self._thread = threading.Thread(target=self._drip, name="dripper", daemon=True)
            self._thread.start()

    def _connect(self, host: str, port: int, n: int, timeout: float) -> None:
        poller = select.poll()
        pending: dict[int, socket.socket] = {}
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            self.socks.append(s)
            s.connect_ex((host, port))
            pending[s.fileno()] = s
            poller.register(s, select.POLLOUT)
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} of {n} connections not established")
            for fd, _ in poller.poll(left * 1000):
                s = pending.pop(fd)
                poller.unregister(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"flood connection failed: {os.strerror(err)}")

    def _drip(self) -> None:
        while not self._stop.wait(self.every):
            for s in self.socks:
                try:
                    s.send(self.drip)
                except OSError:  # closed by the server (a deadline), or its buffer is full
                    pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for s in self.socks:
            s.close()
        self.socks = []


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes (or the socket times out)."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def probe(
    port: int, request: bytes = PROBE, timeout: float = 30.0, host: str = "127.0.0.1"
) -> float:
    """Seconds for one normal request on a new connection, until the server closes it;
    raises AssertionError unless the answer is a 200."""
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        answer = read_answer(s)
    took = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    return took


def probes(port: int, seconds: float, every: float = 0.25, **kw: object) -> list[float]:
    """``probe`` repeatedly for about ``seconds``; every latency, in order."""
    out: list[float] = []
    end = time.monotonic() + seconds
    while True:
        out.append(probe(port, **kw))  # type: ignore[arg-type]
        if time.monotonic() >= end:
            return out
        time.sleep(every)


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> bool:
    """Reset the peak-RSS mark (VmHWM) of ``pid`` to its current RSS (Linux 4.0+)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
