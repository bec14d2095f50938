"""Connections waiting for bytes, in the worker's ``epoll``, each until its own deadline.

Why a module of its own: a connection whose request has not fully arrived must not hold a
sync worker or a thread (slowloris, RUDY, a silent socket); it waits here instead, however
many there are, while the worker serves the connections that are ready. The sync and the
threaded worker both park connections here: new ones whose head is incomplete, ones whose
small body is still arriving, and (threaded) idle keep-alive ones.

- A parked connection is registered with ``EPOLLONESHOT``: its first readable event disarms
  it, so it is reported once and then belongs to whoever took it until it is parked again
  (re-armed with one ``epoll_ctl``). Closing a socket removes it from the poller.
- Deadlines sit in a heap (entries for deadlines that have since changed are skipped when
  they come up), so finding the expired connections costs nothing while none has expired.
- ``limit`` is the most connections one worker holds (``worker_connections``, capped by the
  open-file limit). At the limit the worker stops accepting, so that new connections wait
  in the kernel's listen queue (or go to a sibling worker), and says so in the log, at most
  once every ``FULL_LOG_EVERY`` seconds.

The lot is not thread-safe: the threaded worker holds its lock around every call.
"""

from __future__ import annotations

import heapq
import resource
import select
import time
from typing import Protocol

from greenhorn.workers.connection import Connection

__all__ = ["FULL_LOG_EVERY", "ParkingLot", "connection_limit"]

_ONESHOT_IN = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP
FULL_LOG_EVERY = 30.0  # seconds between two "limit reached" lines of one worker
FD_RESERVE = 64  # open files kept for the application, logs, listeners and the poller


class _Poller(Protocol):
    def register(self, fd: int, eventmask: int = ...) -> None: ...

    def modify(self, fd: int, eventmask: int) -> None: ...


class _Log(Protocol):
    def warning(self, msg: object, *args: object) -> None: ...


def connection_limit(worker_connections: int) -> int:
    """``worker_connections``, lowered when the open-file limit could not hold that many."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover
        return worker_connections
    if soft == resource.RLIM_INFINITY:
        return worker_connections
    return max(1, min(worker_connections, soft - FD_RESERVE))


class ParkingLot:
    """Connections waiting to become readable, by file descriptor, with deadlines."""

    __slots__ = ("_heap", "_log", "_logged_at", "_parked", "_poller", "_queued", "_seq", "limit")

    def __init__(self, poller: _Poller, limit: int, log: _Log) -> None:
        self._poller = poller
        self.limit = limit
        self._log = log
        self._parked: dict[int, Connection] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._queued: dict[Connection, float] = {}  # the deadline of each one's live entry
        self._seq = 0
        self._logged_at = -FULL_LOG_EVERY

    def __len__(self) -> int:
        return len(self._parked)

    @property
    def full(self) -> bool:
        return len(self._parked) >= self.limit

    def park(self, conn: Connection) -> bool:
        """Wait for ``conn`` to become readable, until ``conn.deadline`` (None: no deadline).
        False if the socket could not be registered (it is closed then)."""
        fd = conn.sock.fileno()
        try:
            if conn.registered:
                self._poller.modify(fd, _ONESHOT_IN)
            else:
                self._poller.register(fd, _ONESHOT_IN)
                conn.registered = True
        except (OSError, ValueError):
            conn.close()
            return False
        self._parked[fd] = conn
        deadline = conn.deadline
        if deadline is not None and self._queued.get(conn) != deadline:
            self._queued[conn] = deadline
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, conn))
        if len(self._parked) == self.limit:
            now = time.monotonic()
            if now - self._logged_at >= FULL_LOG_EVERY:
                self._logged_at = now
                self._log.warning(
                    "Worker holds %d connections waiting for their request (worker_connections): "
                    "new connections wait in the listen queue",
                    len(self._parked),
                )
        return True

    def take(self, fd: int) -> Connection | None:
        """The parked connection on ``fd`` (its event was reported), or None."""
        return self._parked.pop(fd, None)

    def remove(self, conn: Connection) -> bool:
        """Take ``conn`` out of the lot (e.g. to close it); False if it was not parked."""
        try:
            fd = conn.sock.fileno()
        except (OSError, ValueError):  # pragma: no cover
            return False
        if self._parked.get(fd) is not conn:
            return False
        del self._parked[fd]
        return True

    def expired(self, now: float) -> list[Connection]:
        """Take out and return the parked connections whose deadline has passed."""
        heap = self._heap
        if not heap or heap[0][0] > now:
            return []
        out = []
        queued = self._queued
        parked = self._parked
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if queued.get(conn) != deadline:
                continue  # a later deadline replaced this entry
            del queued[conn]
            if conn.closed or conn.deadline != deadline:
                continue  # closed meanwhile, or waiting without a deadline now
            fd = conn.sock.fileno()
            if parked.get(fd) is conn:
                del parked[fd]
                out.append(conn)
        return out

    def wait_time(self, now: float, longest: float) -> float:
        """Seconds the worker may wait in ``poll`` before the next deadline (<= longest)."""
        heap = self._heap
        if not heap:
            return longest
        return max(0.0, min(longest, heap[0][0] - now))

    def all(self) -> list[Connection]:
        """Take out and return every parked connection."""
        conns = list(self._parked.values())
        self._parked.clear()
        self._heap.clear()
        self._queued.clear()
        return conns
