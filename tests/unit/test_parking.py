"""The parking lot: connections waiting for bytes in epoll, each until its deadline.

Driven with a real ``epoll`` and socket pairs, no processes: a parked connection is
reported once when its peer writes (``EPOLLONESHOT``), expired connections come out in
deadline order (a changed deadline replaces the old one), and reaching the limit is
logged once.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from greenhorn.http.parser import Limits
from greenhorn.workers.connection import Connection
from greenhorn.workers.parking import FD_RESERVE, ParkingLot, connection_limit


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, msg: object, *args: object) -> None:
        self.lines.append(str(msg) % args)


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, Connection]]]:
    made: list[tuple[socket.socket, Connection]] = []

    def close() -> None:
        for client, conn in made:
            client.close()
            conn.close()

    yield made
    close()


def pair(made: list, deadline: float | None) -> tuple[socket.socket, Connection]:
    server, client = socket.socketpair()
    conn = Connection(server, ("127.0.0.1", 1), ("x", "80"), Limits(), time.monotonic())
    conn.deadline = deadline
    made.append((client, conn))
    return client, conn


def test_a_parked_connection_is_reported_once_when_readable(pairs):
    poller = select.epoll()
    lot = ParkingLot(poller, 10, Log())
    client, conn = pair(pairs, None)
    assert lot.park(conn) and len(lot) == 1
    assert poller.poll(0) == []
    client.send(b"x")
    (fd, _), *rest = poller.poll(1)
    assert not rest and fd == conn.fileno()
    assert lot.take(fd) is conn and not lot
    client.send(b"y")
    assert poller.poll(0) == []  # disarmed until parked again
    assert lot.park(conn)
    assert [fd for fd, _ in poller.poll(1)] == [conn.fileno()]
    poller.close()


def test_expired_connections_come_out_by_deadline(pairs):
    lot = ParkingLot(select.epoll(), 10, Log())
    now = time.monotonic()
    _, late = pair(pairs, now + 50)
    _, soon = pair(pairs, now + 1)
    _, never = pair(pairs, None)
    for conn in (late, soon, never):
        lot.park(conn)
    assert lot.expired(now) == []
    assert lot.wait_time(now, 5.0) == pytest.approx(1.0)
    assert lot.expired(now + 2) == [soon]
    late.deadline = now + 3  # parked again with a new deadline: the old entry is skipped
    lot.take(late.fileno())
    lot.park(late)
    assert lot.expired(now + 4) == [late]
    assert lot.expired(now + 100) == []
    assert len(lot) == 1 and lot.all() == [never]


def test_a_closed_or_taken_connection_does_not_expire(pairs):
    lot = ParkingLot(select.epoll(), 10, Log())
    now = time.monotonic()
    _, taken = pair(pairs, now + 1)
    _, closed = pair(pairs, now + 1)
    lot.park(taken)
    lot.park(closed)
    lot.take(taken.fileno())
    assert lot.remove(closed)
    closed.close()
    assert lot.expired(now + 2) == []


def test_the_limit_is_logged_once(pairs):
    log = Log()
    lot = ParkingLot(select.epoll(), 2, log)
    for _ in range(2):
        lot.park(pair(pairs, None)[1])
    assert lot.full and len(log.lines) == 1
    assert "Worker holds 2 connections" in log.lines[0]
    conn = lot.all()[0]
    lot.park(conn)
    lot.park(pair(pairs, None)[1])
    assert len(log.lines) == 1  # at most one line every FULL_LOG_EVERY seconds


def test_connection_limit_fits_the_open_file_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_limit(10) == 10
    if soft != resource.RLIM_INFINITY:
        assert connection_limit(soft * 2) == soft - FD_RESERVE
