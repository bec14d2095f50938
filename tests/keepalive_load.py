"""A load client that counts failed requests, for the graceful-stop and reload tests.

Each client thread keeps one connection alive and sends ``GET /`` on it, one request at a
time, as fast as it is answered (reconnecting when the server answers ``Connection:
close`` or closes between requests, as a browser or wrk would). What it counts:

- ``ok``: a complete ``200`` response;
- ``failures``: a request that was sent (or could not be sent) on an established
  connection and got no complete response: a reset, an early close, a timeout, another
  status. This is what a user sees as an error, and what the tests allow none of;
- ``refused``: a connection that could not be made (the server stopped listening). Expected
  after a full stop; not a failed request.
"""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["KeepAliveLoad"]

REQUEST = b"GET / HTTP/1.1\r\nHost: load\r\n\r\n"


class KeepAliveLoad:
    """``clients`` threads of keep-alive requests against 127.0.0.1:``port``."""

    def __init__(self, port: int, clients: int = 8, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self.ok = 0
        self.refused = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        sock: socket.socket | None = None
        buf = b""
        while not self._done.is_set():
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
                except OSError:
                    with self._lock:
                        self.refused += 1
                    time.sleep(0.005)
                    continue
                buf = b""
            try:
                sock.sendall(REQUEST)
                status, close, buf = _response(sock, buf)
            except (OSError, ValueError) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                sock.close()
                sock = None
                continue
            with self._lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {status}")
            if close:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def served(self, more: int, timeout: float = 15.0) -> None:
        """Wait until ``more`` further requests have been answered."""
        target = self.ok + more
        deadline = time.monotonic() + timeout
        while self.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"{more} more answered requests not seen in {timeout}s")
            time.sleep(0.01)

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)


def _response(sock: socket.socket, buf: bytes) -> tuple[int, bool, bytes]:
    """Read one response framed by Content-Length; (status, server closes, leftover)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a response head ({len(buf)} bytes)")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip().lower()
    length = int(fields.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside a response body")
        rest += data
    return status, fields.get("connection") == "close", rest[length:]
