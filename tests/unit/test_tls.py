"""greenhorn.workers.tls: the server context from the settings and the guarded handshake.

The handshake tests use a real TCP connection on 127.0.0.1 with the client in a thread;
every socket has a timeout.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenhorn.config import Config
from greenhorn.workers import tls


def cfg_for(certs: Any, **overrides: Any) -> Config:
    base = dict(certfile=str(certs.server_cert), keyfile=str(certs.server_key))
    base.update(overrides)
    return dataclasses.replace(Config(), **base)


class Log:
    """Collects (level, message) pairs like greenhorn.observe.logger.Logger's methods."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str) -> Callable[..., None]:
        def log(msg: str, *args: object, **kw: object) -> None:
            self.lines.append((level, msg % args if args else msg))

        return log

    def __getattr__(self, level: str) -> Callable[..., None]:
        if level in ("debug", "info", "warning", "error", "critical", "exception"):
            return self._add(level)
        raise AttributeError(level)


# -- server_context ---------------------------------------------------------------------------


def test_default_context(certs):
    ctx = tls.server_context(cfg_for(certs))
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    ctx = tls.server_context(cfg_for(certs, cert_reqs=2, ca_certs=str(certs.ca_cert)))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.get_ca_certs()[0]["subject"] == ((("commonName", "greenhorn test CA"),),)
    assert tls.server_context(cfg_for(certs, cert_reqs=1)).verify_mode == ssl.CERT_OPTIONAL


def test_ciphers_applied(certs):
    ctx = tls.server_context(cfg_for(certs, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-AES128-GCM-SHA256"]


def test_hook_gets_the_default_factory(certs):
    seen = {}

    def hook(config: Any, factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        seen["config"] = config
        ctx = factory()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    cfg = cfg_for(certs, ssl_context=hook)
    ctx = tls.server_context(cfg)
    assert seen["config"] is cfg
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


def _bad(path: Path) -> Path:
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(
    "overrides, words",
    [
        (lambda c, t: {"certfile": str(t / "missing.pem")}, ["certfile", "missing.pem", "No such"]),
        (lambda c, t: {"keyfile": str(t / "missing.key")}, ["keyfile", "missing.key"]),
        (lambda c, t: {"ca_certs": str(t / "nope.pem")}, ["ca_certs", "nope.pem"]),
        (lambda c, t: {"certfile": str(_bad(t / "bad.pem"))}, ["certfile", "bad.pem", "PEM"]),
        (lambda c, t: {"keyfile": str(c.client_key)}, ["does not match"]),
        (lambda c, t: {"keyfile": None}, ["certfile", "key"]),
        (lambda c, t: {"ca_certs": str(_bad(t / "ca.pem"))}, ["ca_certs", "ca.pem"]),
        (lambda c, t: {"ciphers": "NO-SUCH-CIPHER"}, ["ciphers", "NO-SUCH-CIPHER"]),
        (lambda c, t: {"ssl_context": lambda cfg, f: 1 / 0}, ["ssl_context hook", "division"]),
        (lambda c, t: {"ssl_context": lambda cfg, f: "ctx"}, ["ssl_context hook", "str"]),
    ],
)
def test_invalid_settings_one_line(certs, tmp_path, overrides, words):
    with pytest.raises(tls.TLSConfigError) as info:
        tls.server_context(cfg_for(certs, **overrides(certs, tmp_path)))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_unreadable_file(certs, tmp_path):
    cert = tmp_path / "locked.pem"
    cert.write_bytes(certs.server_cert.read_bytes())
    cert.chmod(0)
    try:
        with open(cert, "rb"):
            pytest.skip("running as root: mode 0 files are readable")
    except PermissionError:
        pass
    with pytest.raises(tls.TLSConfigError, match=r"certfile .*Permission denied"):
        tls.server_context(cfg_for(certs, certfile=str(cert)))


def test_ssl_version_warns_once_and_is_ignored(certs, caplog, monkeypatch):
    monkeypatch.setattr(tls, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="greenhorn.error"):
        logging.getLogger("greenhorn.error").propagate = True
        try:
            tls.server_context(cfg_for(certs))
            assert not caplog.records
            cfg = cfg_for(certs, ssl_version=int(ssl.PROTOCOL_TLS_SERVER))
            ctx = tls.server_context(cfg)
            tls.server_context(cfg)
        finally:
            logging.getLogger("greenhorn.error").propagate = False
    # one record (the capture handler may see it twice when another test has shared the
    # greenhorn.error handlers with the root logger: count records, not deliveries)
    warned = {id(r): r.getMessage() for r in caplog.records if "ssl_version" in r.getMessage()}
    assert list(warned.values()) == [
        "ssl_version is deprecated and ignored; set minimum_version in an ssl_context hook instead"
    ]
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


# -- looks_like_http --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, verdict",
    [
        (b"GET / HTTP/1.1\r\n", True),
        (b"OPTIONS * HTTP/1.1", True),
        (b"M-SEARCH * ", True),
        (b"G", None),
        (b"PROPFIND", None),
        (b"\x16\x03\x01\x02\x00\x01", False),
        (b" GET /", False),
        (b"GET\t/", False),
        (b"\x80\x2e\x01", False),
        (b"A" * 24, False),
    ],
)
def test_looks_like_http(head, verdict):
    assert tls.looks_like_http(head) is verdict


# -- handshake --------------------------------------------------------------------------------


@pytest.fixture
def server_pair() -> Iterator[Callable[[Callable[[socket.socket], Any]], tuple[Any, Any]]]:
    """Run ``client(sock)`` in a thread against a fresh accepted server socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    threads: list[threading.Thread] = []

    def run(client: Callable[[socket.socket], Any]) -> tuple[socket.socket, dict[str, Any]]:
        out: dict[str, Any] = {}

        def target() -> None:
            s = socket.create_connection(listener.getsockname(), timeout=10)
            try:
                out["result"] = client(s)
            except Exception as exc:
                out["error"] = exc
            finally:
                s.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append(thread)
        conn, _ = listener.accept()
        return conn, out

    yield run
    for thread in threads:
        thread.join(10)
    listener.close()


def _tls_client(certs: Any, cert: tuple[Path, Path] | None = None) -> Callable[..., Any]:
    def client(s: socket.socket) -> bytes:
        ctx = ssl.create_default_context(cafile=str(certs.server_cert))
        if cert is not None:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            t.sendall(b"ping")
            return t.recv(100)

    return client


@pytest.mark.parametrize("on_connect", [False, True])
def test_handshake_ok(certs, server_pair, on_connect):
    # do_handshake_on_connect changes nothing: the handshake is always complete on return
    cfg = cfg_for(certs, do_handshake_on_connect=on_connect)
    conn, out = server_pair(_tls_client(certs))
    log = Log()
    tls_sock = tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log)
    assert isinstance(tls_sock, ssl.SSLSocket)
    assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")  # handshake done
    assert tls_sock.gettimeout() is not None and 0 < tls_sock.gettimeout() <= 5
    assert tls_sock.recv(100) == b"ping"
    tls_sock.sendall(b"pong")
    tls_sock.close()
    time.sleep(0.05)
    assert out.get("result") == b"pong", out
    assert log.lines == []


def test_client_certificate_required(certs, server_pair):
    cfg = cfg_for(certs, cert_reqs=2, ca_certs=str(certs.ca_cert))
    ctx = tls.server_context(cfg)
    # trusted client certificate
    conn, out = server_pair(_tls_client(certs, (certs.client_cert, certs.client_key)))
    tls_sock = tls.handshake(ctx, conn, time.monotonic() + 5, cfg, Log())
    assert tls_sock is not None
    assert tls_sock.getpeercert()["subject"] == ((("commonName", "client"),),)
    tls_sock.close()
    # no certificate, and a certificate from an unknown issuer
    for cert in (None, (certs.other_client_cert, certs.other_client_key)):
        log = Log()
        conn, out = server_pair(_tls_client(certs, cert))
        assert tls.handshake(ctx, conn, time.monotonic() + 5, cfg, log) is None
        assert conn.fileno() == -1
        assert len(log.lines) == 1 and log.lines[0][0] == "info", log.lines
        assert "TLS handshake with 127.0.0.1:" in log.lines[0][1]


def test_plain_http_gets_400(certs, server_pair):
    cfg = cfg_for(certs)

    def client(s: socket.socket) -> bytes:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        chunks = []
        while data := s.recv(4096):
            chunks.append(data)
        return b"".join(chunks)

    conn, out = server_pair(client)
    log = Log()
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log) is None
    time.sleep(0.05)
    response = out["result"]
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close\r\n" in response
    assert response.endswith(b"\r\n\r\nplain HTTP request sent to an HTTPS port\n")
    assert log.lines and "Plain HTTP" in log.lines[0][1]


def test_plain_http_method_trickling_in(certs, server_pair):
    cfg = cfg_for(certs)

    def client(s: socket.socket) -> bytes:
        for part in (b"PO", b"ST", b" /x HTTP/1.0\r\n\r\n"):
            s.sendall(part)
            time.sleep(0.05)
        return s.recv(4096)

    conn, out = server_pair(client)
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, Log()) is None
    time.sleep(0.2)
    assert out["result"].startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("sends", [b"", b"\x16\x03\x01", b"GE"])
def test_silent_or_stalled_client_is_cut_at_the_deadline(certs, server_pair, sends):
    cfg = cfg_for(certs)
    stop = threading.Event()

    def client(s: socket.socket) -> None:
        s.sendall(sends)
        stop.wait(10)

    conn, out = server_pair(client)
    log = Log()
    start = time.monotonic()
    result = tls.handshake(tls.server_context(cfg), conn, start + 0.5, cfg, log)
    took = time.monotonic() - start
    stop.set()
    assert result is None
    assert 0.4 < took < 3.0
    assert conn.fileno() == -1
    assert len(log.lines) == 1 and "timed out" in log.lines[0][1], log.lines


def test_client_closing_at_once(certs, server_pair):
    cfg = cfg_for(certs)
    conn, out = server_pair(lambda s: None)
    log = Log()
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log) is None
    assert log.lines and log.lines[0][0] == "debug"


def test_garbage_is_a_failed_handshake(certs, server_pair):
    cfg = cfg_for(certs)

    def client(s: socket.socket) -> bytes:
        s.sendall(b"\x00\x01\x02garbage" * 10)
        return s.recv(100)

    conn, out = server_pair(client)
    log = Log()
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log) is None
    assert len(log.lines) == 1 and log.lines[0][0] == "info"
    assert "failed" in log.lines[0][1]


def test_deadline_already_passed(certs, server_pair):
    cfg = cfg_for(certs)
    conn, out = server_pair(_tls_client(certs))
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() - 1, cfg, Log()) is None
    assert conn.fileno() == -1


# -- a PROXY header before the handshake ------------------------------------------------------


def _proxied_tls_client(certs: Any, prefix: bytes) -> Callable[..., Any]:
    tls_client = _tls_client(certs)

    def client(s: socket.socket) -> Any:
        s.sendall(prefix)
        return tls_client(s)

    return client


@pytest.mark.parametrize(
    "prefix, src",
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 443\r\n", "1.2.3.4"),
        (
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
            + bytes([9, 8, 7, 6, 5, 6, 7, 8])
            + b"\x04\x57\x01\xbb",
            "9.8.7.6",
        ),
        (b"", None),  # the header is optional
    ],
)
def test_proxy_header_read_before_tls(certs, server_pair, prefix, src):
    cfg = cfg_for(certs, proxy_protocol="auto", proxy_allow_ips=["127.0.0.1"])
    conn, out = server_pair(_proxied_tls_client(certs, prefix))
    log = Log()
    tls_sock = tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log)
    assert tls_sock is not None, log.lines
    header = tls.proxy_header(tls_sock)
    if src is None:
        assert header is None
    else:
        assert header is not None and header.src_addr == src
    assert tls_sock.recv(100) == b"ping"
    tls_sock.sendall(b"pong")
    tls_sock.close()


def test_proxy_header_before_tls_from_untrusted_peer(certs, server_pair):
    cfg = cfg_for(certs, proxy_protocol="v1", proxy_allow_ips=["10.9.9.9"])
    conn, out = server_pair(_proxied_tls_client(certs, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
    log = Log()
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log) is None
    assert log.lines == [("warning", "PROXY header from untrusted ip=127.0.0.1 refused")]


def test_malformed_proxy_header_before_tls(certs, server_pair):
    cfg = cfg_for(certs, proxy_protocol="auto")
    conn, out = server_pair(_proxied_tls_client(certs, b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"))
    log = Log()
    assert tls.handshake(tls.server_context(cfg), conn, time.monotonic() + 5, cfg, log) is None
    assert len(log.lines) == 1 and log.lines[0][0] == "warning"
    assert log.lines[0][1].startswith("Invalid PROXY header from ip=127.0.0.1: ")


def test_tls_defaults_are_the_ssl_constants():
    # written as numbers in the settings table, so that a server without TLS never loads ssl
    cfg = Config()
    assert cfg.ssl_version == ssl.PROTOCOL_TLS and cfg.cert_reqs == ssl.CERT_NONE
