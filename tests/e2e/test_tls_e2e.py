"""TLS end to end: --certfile/--keyfile, client certificates, plain HTTP on the TLS port,
a client that never handshakes, and a bad certificate at startup.

Certificates are generated per module with ``cryptography`` (tests/apps/edge/tls_certs.py).
The fixture's readiness probe is plain HTTP, so servers here start with ``wait=False`` and
we wait for the "Listening at:" line (http or https) and a successful TLS request ourselves.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import read_all, wait_until


def client_context(certs: Any, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.server_cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def tls_get(port: int, ctx: ssl.SSLContext, path: str = "/", timeout: float = 5.0) -> bytes:
    """One HTTP/1.0 request over TLS with the stdlib; the whole response."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return read_all(s)


def start_tls(greenhorn: Any, certs: Any, *args: str, timeout: float = 20.0) -> Any:
    server = greenhorn(
        "--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key), *args,
        wait=False,
    )  # fmt: skip
    m = server.wait_for_log(r"Listening at: https?://[^\s:]+:(\d+)", timeout)
    server.port = int(m[0])
    ctx = client_context(certs, (certs.client_cert, certs.client_key))

    def ready() -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited:\n{server.log[-3000:]}")
        try:
            return tls_get(server.port, ctx, timeout=2).startswith(b"HTTP/1.")
        except OSError:
            return False

    wait_until(ready, timeout, every=0.05, what=f"TLS answer\n{server.log[-2000:]}")
    return server


def body_json(data: bytes) -> dict[str, Any]:
    return json.loads(data.split(b"\n", 1)[0])


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_https(greenhorn, certs, worker_class):
    if worker_class == "gevent":
        pytest.importorskip("gevent")
    s = start_tls(greenhorn, certs, "-k", worker_class, "-w", "1", "echo:app")
    base = f"https://127.0.0.1:{s.port}"
    r = requests.get(base + "/x?y=1", verify=str(certs.server_cert), timeout=10)
    assert r.status_code == 200
    info = body_json(r.content)
    assert info["wsgi.url_scheme"] == "https"
    assert (info["PATH_INFO"], info["QUERY_STRING"]) == ("/x", "y=1")
    # a body larger than one TLS record both ways; keep-alive where the worker type has it
    payload = bytes(range(256)) * 4096  # 1 MiB
    with requests.Session() as session:
        for _ in range(2):
            r = session.post(base + "/up", data=payload, verify=str(certs.server_cert), timeout=20)
            assert r.status_code == 200
            assert body_json(r.content)["body_len"] == len(payload)
            assert r.content.split(b"\n", 1)[1] == payload
    # nothing went wrong on the server side
    assert "Traceback" not in s.log
    assert s.stop() == 0


def test_client_certificate_required(greenhorn, certs):
    s = start_tls(
        greenhorn, certs, "-w", "1", "--cert-reqs", "2", "--ca-certs", str(certs.ca_cert),
        "echo:app",
    )  # fmt: skip
    pids = s.worker_pids()
    url = f"https://127.0.0.1:{s.port}/"
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, verify=str(certs.server_cert), timeout=10)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(
            url,
            verify=str(certs.server_cert),
            cert=(str(certs.other_client_cert), str(certs.other_client_key)),
            timeout=10,
        )
    r = requests.get(
        url,
        verify=str(certs.server_cert),
        cert=(str(certs.client_cert), str(certs.client_key)),
        timeout=10,
    )
    assert r.status_code == 200
    assert body_json(r.content)["pid"] in pids
    s.wait_for_log(r"TLS handshake with 127\.0\.0\.1:\d+ failed: ", count=2)
    assert s.worker_pids() == pids
    assert "Traceback" not in s.log


def test_plain_http_on_the_tls_port_gets_400(greenhorn, certs):
    s = start_tls(greenhorn, certs, "-w", "1", "echo:app")
    pids = s.worker_pids()
    response = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close" in head
    assert body == b"plain HTTP request sent to an HTTPS port\n"
    r = requests.get(f"https://127.0.0.1:{s.port}/", verify=str(certs.server_cert), timeout=10)
    assert r.status_code == 200
    assert body_json(r.content)["pid"] in pids
    assert s.worker_pids() == pids
    s.wait_for_log(r"Plain HTTP request from 127\.0\.0\.1:\d+ on an HTTPS port")


def test_client_that_never_handshakes_is_cut_off(greenhorn, certs):
    s = start_tls(greenhorn, certs, "-w", "1", "--header-timeout", "1", "echo:app")
    silent = s.connect(timeout=10)
    try:
        time.sleep(0.1)  # let the worker pick the silent connection first
        result: dict[str, Any] = {}

        def other() -> None:
            started = time.monotonic()
            ctx = client_context(certs)
            result["response"] = tls_get(s.port, ctx, timeout=10)
            result["took"] = time.monotonic() - started

        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        started = time.monotonic()
        assert silent.recv(1) == b""  # closed by the server, no answer
        cut_after = time.monotonic() - started
        thread.join(15)
        assert result["response"].startswith(b"HTTP/1.1 200 OK\r\n")
        assert cut_after < 4.0
        assert result["took"] < 5.0
    finally:
        silent.close()
    assert "Traceback" not in s.log


def test_invalid_certfile_exits_1_with_one_line(greenhorn, certs, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    for certfile in (str(tmp_path / "missing.pem"), str(bad)):
        s = greenhorn("--certfile", certfile, "echo:app", wait=False)
        assert s.proc.wait(20) == 1
        log = s.log
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if certfile in line]
        assert len(lines) == 1, log
        assert "[ERROR]" in lines[0] and "certfile" in lines[0]


def test_proxy_header_before_tls(greenhorn, certs):
    """HAProxy's send-proxy with ssl: the PROXY line comes in clear before the handshake."""
    s = start_tls(greenhorn, certs, "-w", "1", "--proxy-protocol", "v1", "echo:app")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        raw.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 443\r\n")
        with client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as t:
            t.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            response = read_all(t)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    info = body_json(response.partition(b"\r\n\r\n")[2])
    assert info["wsgi.url_scheme"] == "https"


def test_proxy_header_before_tls_sets_remote_addr(greenhorn, certs):
    s = start_tls(greenhorn, certs, "-w", "1", "--proxy-protocol", "v1", "echo:app")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        raw.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 443\r\n")
        with client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as t:
            t.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            response = read_all(t)
    info = body_json(response.partition(b"\r\n\r\n")[2])
    assert (info["REMOTE_ADDR"], info["REMOTE_PORT"]) == ("1.2.3.4", "1111")


def test_ssl_context_hook_in_the_config_file(greenhorn, certs, tmp_path):
    marker = tmp_path / "hook.called"
    conf = tmp_path / "tls.conf.py"
    conf.write_text(
        "import ssl\n"
        "def ssl_context(config, default_ssl_context_factory):\n"
        "    ctx = default_ssl_context_factory()\n"
        "    ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n"
        f"    open({str(marker)!r}, 'a').write('called\\n')\n"
        "    return ctx\n"
    )
    s = start_tls(greenhorn, certs, "-c", str(conf), "echo:app")
    assert marker.exists()
    old = client_context(certs)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        tls_get(s.port, old)  # the hook's minimum version is enforced
    r = requests.get(f"https://127.0.0.1:{s.port}/", verify=str(certs.server_cert), timeout=10)
    assert r.status_code == 200


def served_certificate(port: int) -> tuple[bytes, bytes]:
    """(the DER certificate a new TLS connection gets, the response to a GET over it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw) as s:
        der = s.getpeercert(binary_form=True)
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        return der or b"", read_all(s)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def put(path: Path, data: bytes) -> None:
    """Replace ``path`` at once, as certbot and cert-manager renew (write, then rename)."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.mark.parametrize("worker_class, app", [("sync", "hello:app"), ("asgi", "asgiapps:hello")])
def test_renewed_certificate_files_serve_new_connections_without_a_hup(
    greenhorn, certs, tmp_path, worker_class, app
):
    """Certificate and key files renewed in place are what the next connection gets, with
    no HUP (gunicorn rereads them for every connection); a renewal that does not load (a
    key that does not match) is logged once and the previous certificate kept."""
    (tmp_path / "renewed").mkdir()
    renewed = sys.modules["greenhorn_tls_certs"].make_certs(tmp_path / "renewed")  # ``certs``'
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(certs.server_cert.read_bytes())
    key.write_bytes(certs.server_key.read_bytes())
    s = greenhorn(
        "--certfile", str(cert), "--keyfile", str(key), "-k", worker_class, "-w", "1", app,
        wait=False,
    )  # fmt: skip
    s.port = int(s.wait_for_log(r"Listening at: https://[^\s:]+:(\d+)", 20)[0])
    first = wait_until(lambda: _try(served_certificate, s.port), 20, what="a TLS answer")
    assert first[0] == der(certs.server_cert) and first[1].startswith(b"HTTP/1.")
    pid = s.wait_workers(1)[0]

    put(key, renewed.server_key.read_bytes())  # the key first: a pair that does not match
    assert served_certificate(s.port)[0] == der(certs.server_cert)  # the old pair still serves
    s.wait_for_log(r"TLS certificate files changed but do not load .*previous certificate")
    assert served_certificate(s.port)[0] == der(certs.server_cert)
    put(cert, renewed.server_cert.read_bytes())
    now = served_certificate(s.port)
    assert now[0] == der(renewed.server_cert) and now[1].startswith(b"HTTP/1.1 200")
    s.wait_for_log(r"TLS certificate files changed: new connections use them")
    assert s.log.count("do not load") == 1  # logged once, not per connection
    assert s.worker_pids() == [pid] and "Handling signal: hup" not in s.log
    assert s.stop() == 0


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError:
        return None


def test_an_ssl_context_hook_is_asked_for_every_connection(greenhorn, certs, tmp_path):
    """A custom ssl_context hook may read files greenhorn does not know of: it is called
    for each new connection, as gunicorn calls it, so what it returns serves at once."""
    (tmp_path / "renewed").mkdir()
    renewed = sys.modules["greenhorn_tls_certs"].make_certs(tmp_path / "renewed")
    which = tmp_path / "which"
    which.write_text(f"{certs.server_cert}\n{certs.server_key}\n")
    conf = tmp_path / "tls.conf.py"
    conf.write_text(
        "def ssl_context(config, default_ssl_context_factory):\n"
        "    ctx = default_ssl_context_factory()\n"
        f"    cert, key = open({str(which)!r}).read().split()\n"
        "    ctx.load_cert_chain(cert, key)\n"
        "    return ctx\n"
    )
    s = greenhorn(
        "-c", str(conf), "--certfile", str(certs.server_cert), "--keyfile",
        str(certs.server_key), "-w", "1", "hello:app", wait=False,
    )  # fmt: skip
    s.port = int(s.wait_for_log(r"Listening at: https://[^\s:]+:(\d+)", 20)[0])
    first = wait_until(lambda: _try(served_certificate, s.port), 20, what="a TLS answer")
    assert first[0] == der(certs.server_cert)
    which.write_text(f"{renewed.server_cert}\n{renewed.server_key}\n")
    assert served_certificate(s.port)[0] == der(renewed.server_cert)
    assert s.stop() == 0
