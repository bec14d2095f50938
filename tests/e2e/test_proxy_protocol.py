"""PROXY protocol end to end: v1 and v2 headers set REMOTE_ADDR/REMOTE_PORT, malformed or
untrusted headers close the connection without an answer, plain HTTP still works."""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

import pytest

from conftest import APPS, read_all

EDGE = APPS / "edge"
PATH = ["--pythonpath", f"{APPS},{EDGE}"]
REQ = b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
V1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n"


def v2(command: int = 1, fam: int = 0x11, body: bytes | None = None) -> bytes:
    if body is None:
        body = bytes([1, 2, 3, 4, 5, 6, 7, 8]) + struct.pack(">HH", 1111, 80)
    head = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, fam])
    return head + struct.pack(">H", len(body)) + body


def environ_of(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), response[:300]
    return json.loads(body)


def send(server: Any, *parts: bytes, pause: float = 0.0) -> bytes:
    with server.connect() as s:
        for part in parts:
            s.sendall(part)
            if pause:
                time.sleep(pause)
        return read_all(s)


@pytest.fixture
def proxied(greenhorn: Any) -> Any:
    return greenhorn(*PATH, "-w", "1", "--proxy-protocol", "auto", "envdump:app")


def test_v1_sets_remote_addr(proxied):
    env = environ_of(send(proxied, V1 + REQ))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("1.2.3.4", "1111")
    assert env["PATH_INFO"] == "/p"


def test_v1_header_trickling_in(proxied):
    env = environ_of(send(proxied, V1[:3], V1[3:20], V1[20:] + REQ[:5], REQ[5:], pause=0.05))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("1.2.3.4", "1111")


def test_v1_tcp6(proxied):
    env = environ_of(send(proxied, b"PROXY TCP6 2001:db8::7 ::1 65535 443\r\n" + REQ))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::7", "65535")


def test_v2_sets_remote_addr(proxied):
    header = v2()
    env = environ_of(send(proxied, header[:7], header[7:14], header[14:] + REQ, pause=0.05))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("1.2.3.4", "1111")
    tlv = b"\x01\x00\x02h2"
    six = v2(fam=0x21, body=bytes(15) + b"\x05" + bytes(15) + b"\x01" + b"\x00\x50\x01\xbb" + tlv)
    env = environ_of(send(proxied, six + REQ))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("::5", "80")


@pytest.mark.parametrize("header", [v2(command=0, fam=0, body=b""), b"PROXY UNKNOWN\r\n"])
def test_local_and_unknown_keep_the_peer(proxied, header):
    env = environ_of(send(proxied, header + REQ))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_plain_http_still_works(proxied):
    env = environ_of(send(proxied, REQ))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize(
    "bad",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01111 80\r\n",
        b"PROXY TCP4 1.2.3.999 5.6.7.8 1111 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\n",
        b"PROXY TCP4 " + b"9" * 120 + b"\r\n",
        v2(fam=0x12),
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",
    ],
)
def test_malformed_header_closes_without_answer(proxied, bad):
    pid = proxied.worker_pids()
    assert send(proxied, bad + REQ) == b""
    proxied.wait_for_log(r"\[WARNING\] Invalid PROXY header from ip=127\.0\.0\.1: PROXY v[12]: ")
    assert environ_of(send(proxied, V1 + REQ))["REMOTE_ADDR"] == "1.2.3.4"
    assert proxied.worker_pids() == pid


def test_untrusted_peer_is_refused(greenhorn):
    s = greenhorn(
        *PATH, "-w", "1", "--proxy-protocol", "--proxy-allow-from", "10.9.9.9", "envdump:app"
    )
    pid = s.worker_pids()
    assert send(s, V1 + REQ) == b""
    assert send(s, v2() + REQ) == b""
    s.wait_for_log(r"PROXY header from untrusted ip=127\.0\.0\.1 refused", count=2)
    assert environ_of(send(s, REQ))["REMOTE_ADDR"] == "127.0.0.1"  # plain HTTP is fine
    assert s.worker_pids() == pid


def test_single_version_mode_ignores_the_other_version(greenhorn):
    s = greenhorn(*PATH, "-w", "1", "--proxy-protocol", "v2", "envdump:app")
    assert environ_of(send(s, v2() + REQ))["REMOTE_ADDR"] == "1.2.3.4"
    # a v1 line is not a PROXY header in v2 mode: the HTTP parser refuses it as a request
    assert send(s, V1 + REQ).startswith(b"HTTP/1.1 400 ")


def test_keep_alive_connection_keeps_the_proxied_address(greenhorn):
    s = greenhorn(*PATH, "-k", "gthread", "-w", "1", "--proxy-protocol", "v1", "envdump:app")
    keep = REQ.replace(b"Connection: close", b"Connection: keep-alive")
    with s.connect() as c:
        c.sendall(V1 + keep + REQ)
        data = read_all(c)
    responses = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 2
    for response in responses:
        assert json.loads(response.partition(b"\r\n\r\n")[2])["REMOTE_ADDR"] == "1.2.3.4"


def test_forwarded_headers_are_trusted_by_the_real_peer(proxied):
    req = REQ.replace(b"Host: x\r\n", b"Host: x\r\nX-Forwarded-Proto: https\r\n")
    env = environ_of(send(proxied, V1 + req))
    assert env["REMOTE_ADDR"] == "1.2.3.4"
    assert env["wsgi.url_scheme"] == "https"


def test_gunicorn_proxy_environ_keys(proxied):
    env = environ_of(send(proxied, V1 + REQ))
    assert (env.get("PROXY_PROTOCOL"), env.get("PROXY_ADDR"), env.get("PROXY_PORT")) == (
        "TCP4",
        "5.6.7.8",
        "80",
    )


def test_unix_socket_peer_is_a_trusted_proxy(greenhorn, tmp_path):
    """A unix-socket peer has no address; only local processes reach it, so its PROXY
    header is accepted whatever proxy_allow_ips lists (as in gunicorn)."""
    path = tmp_path / "g.sock"
    s = greenhorn(
        *PATH, "-b", f"unix:{path}", "--proxy-protocol", "--proxy-allow-from", "10.9.9.9",
        "envdump:app", wait=False,
    )  # fmt: skip
    s.wait_for_log(r"Listening at: unix:")
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(str(path))
        c.sendall(V1 + REQ)
        env = environ_of(read_all(c))
    assert env["REMOTE_ADDR"] == "1.2.3.4"
