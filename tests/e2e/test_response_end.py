"""A response on a connection that closes carries its FIN in its last segment.

``Connection.send_last`` sends the end of such a response with ``MSG_MORE`` and half-closes
at once, so the kernel tacks the FIN onto the last data segment (one segment and one client
ACK fewer per request). Seen from the client: by the time it has read the last byte of the
response, its socket is already in CLOSE_WAIT (the FIN came in the same segment). Without
it, the FIN follows after the server's bookkeeping and the client mostly still sees
ESTABLISHED. Kept-alive connections must not be half-closed. (Bodies without a length
on a closing connection end with the close itself: nothing to tack the FIN onto.)
"""

from __future__ import annotations

import socket

import pytest

TCP_ESTABLISHED = 1
TCP_CLOSE_WAIT = 8
ATTEMPTS = 4

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="Linux TCP_INFO")


def _complete(data: bytes, head_only: bool) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    fields = dict(line.split(": ", 1) for line in head.decode("latin-1").lower().split("\r\n")[1:])
    if "content-length" in fields:
        return len(body) >= int(fields["content-length"])
    raise AssertionError(f"not a response of known length: {head!r}")


def read_response(sock: socket.socket, head_only: bool = False) -> bytes:
    """Exactly one response: not a byte waited for past its end."""
    data = b""
    while not _complete(data, head_only):
        more = sock.recv(65536)
        assert more, f"connection closed before the response was complete: {data[:200]!r}"
        data += more
    return data


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def tcp_state_after_response(server, request: bytes, head_only: bool = False) -> int:
    """Send ``request``, read exactly the response, return the client socket's TCP state."""
    with server.connect() as sock:
        sock.sendall(request)
        read_response(sock, head_only)
        return tcp_state(sock)


def assert_fin_with_response(server, request: bytes, head_only: bool = False) -> None:
    states = [tcp_state_after_response(server, request, head_only) for _ in range(ATTEMPTS)]
    assert states == [TCP_CLOSE_WAIT] * ATTEMPTS, states


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_fin_rides_with_the_last_bytes_of_each_kind_of_response(greenhorn, kind):
    s = greenhorn("errors:app", "-k", kind, "-w", "1")
    close = b"Host: x\r\nConnection: close\r\n\r\n"
    assert_fin_with_response(s, b"GET /wsgi-errors HTTP/1.1\r\n" + close)  # known length
    assert_fin_with_response(s, b"GET /long HTTP/1.1\r\n" + close)  # cut to its length
    assert_fin_with_response(s, b"HEAD /wsgi-errors HTTP/1.1\r\n" + close, head_only=True)
    assert_fin_with_response(s, b"GET /raise HTTP/1.1\r\n" + close)  # 500
    assert_fin_with_response(s, b"GET /nothing HTTP/1.0\r\n\r\n")  # HTTP/1.0 closes
    assert_fin_with_response(s, b"BAD\r\n\r\n")  # 400 from the parser


def test_fin_leaves_before_a_slow_iterable_close(greenhorn):
    # 40000 bytes (head and body gathered in one sendmsg), then close() sleeps for 2 s: the
    # client sees the end of the stream at once, not after close(). (With a body larger than
    # the socket buffer the FIN may still leave in a segment of its own.)
    s = greenhorn("errors:app", "-w", "1", "--timeout", "30")
    with s.connect() as sock:
        sock.sendall(b"GET /slow-close HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_response(sock)
        assert data.endswith(b"x" * 40000)
        sock.settimeout(1.0)
        assert sock.recv(1) == b""  # TimeoutError if the FIN waited for close()


def test_kept_alive_connections_are_not_half_closed(greenhorn):
    s = greenhorn("errors:app", "-k", "gthread", "-w", "1")
    with s.connect() as sock:
        for _ in range(2):
            sock.sendall(b"GET /wsgi-errors HTTP/1.1\r\nHost: x\r\n\r\n")
            read_response(sock)
            assert tcp_state(sock) == TCP_ESTABLISHED
