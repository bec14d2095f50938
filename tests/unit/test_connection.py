"""``Connection.send_last`` / ``sendv_last``: all the bytes, then the end of the stream.

Driven over socket pairs: the client sees the whole response and then EOF while the server
socket is still open (the half-close went with the data), also when the data does not fit
the socket buffer at once and the send has to wait for the reader.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from greenhorn.http.parser import Limits
from greenhorn.workers.connection import Connection


def _pair(family: int) -> tuple[Connection, socket.socket]:
    if family == socket.AF_UNIX:
        server, client = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = Connection(server, ("127.0.0.1", 40000), ("localhost", "80"), Limits(), 0.0)
    return conn, client


def _read_to_eof(client: socket.socket, out: bytearray, slow: bool, eof: list[bool]) -> None:
    client.settimeout(5)
    while True:
        try:
            data = client.recv(8192)
        except TimeoutError:
            return
        if not data:
            eof.append(True)
            return
        out += data
        if slow:
            time.sleep(0.001)


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
@pytest.mark.parametrize("size", [20, 300_000])
@pytest.mark.parametrize("gathered", [False, True])
def test_the_client_gets_every_byte_then_eof(family, size, gathered):
    conn, client = _pair(family)
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    got = bytearray()
    eof: list[bool] = []
    reader = threading.Thread(target=_read_to_eof, args=(client, got, size > 1000, eof))
    reader.start()
    try:
        if gathered:
            sent = conn.sendv_last((b"head:", payload), time.monotonic() + 10)
            expected = b"head:" + payload
        else:
            sent = conn.send_last(payload, time.monotonic() + 10)
            expected = payload
        reader.join(10)
        assert eof, "no EOF after send_last: the half-close did not happen"
        assert sent == len(expected)
        assert bytes(got) == expected
        assert not conn.closed  # the socket itself is closed later, as usual
    finally:
        conn.close()
        client.close()


def test_reading_still_works_after_the_half_close():
    conn, client = _pair(socket.AF_INET)
    try:
        conn.send_last(b"response", time.monotonic() + 5)
        client.sendall(b"late body bytes")
        assert conn.recv(time.monotonic() + 5) == b"late body bytes"
    finally:
        conn.close()
        client.close()
