"""Forwarded scheme headers end to end: secure_scheme_headers are honoured only from
forwarded_allow_ips peers, and trusted headers that disagree answer 400."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from conftest import read_all


def get(server: Any, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return server.raw(f"GET /f HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())


def scheme(response: bytes) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), response[:300]
    return json.loads(body.split(b"\n", 1)[0])["wsgi.url_scheme"]


def test_trusted_by_default_from_localhost(greenhorn):
    s = greenhorn("-w", "1", "echo:app")
    assert scheme(get(s)) == "http"
    assert scheme(get(s, "X-Forwarded-Proto: https")) == "https"
    assert scheme(get(s, "X-Forwarded-Ssl: on")) == "https"
    assert scheme(get(s, "X-Forwarded-Protocol: ssl")) == "https"
    assert scheme(get(s, "X-Forwarded-Proto: http")) == "http"
    # two trusted headers that agree
    assert scheme(get(s, "X-Forwarded-Proto: https", "X-Forwarded-Ssl: on")) == "https"


@pytest.mark.parametrize(
    "headers",
    [
        ("X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"),
        ("X-Forwarded-Proto: http", "X-Forwarded-Ssl: on"),
        ("X-Forwarded-Proto: https", "X-Forwarded-Proto: http"),
    ],
)
def test_conflicting_trusted_headers_are_400(greenhorn, headers):
    s = greenhorn("-w", "1", "echo:app")
    pids = s.worker_pids()
    assert get(s, *headers).startswith(b"HTTP/1.1 400 ")
    assert scheme(get(s)) == "http"
    assert s.worker_pids() == pids


def test_untrusted_peer_cannot_set_the_scheme(greenhorn):
    s = greenhorn("-w", "1", "--forwarded-allow-ips", "10.0.0.1", "echo:app")
    assert scheme(get(s, "X-Forwarded-Proto: https")) == "http"
    # and headers that would conflict are ignored, not refused, from an untrusted peer
    assert scheme(get(s, "X-Forwarded-Proto: https", "X-Forwarded-Ssl: off")) == "http"


def test_environment_variable_sets_the_default(greenhorn):
    s = greenhorn("-w", "1", "echo:app", env={"FORWARDED_ALLOW_IPS": "10.0.0.1"})
    assert scheme(get(s, "X-Forwarded-Proto: https")) == "http"


@pytest.mark.parametrize("allow", ["*", "10.0.0.1,127.0.0.0/8"])
def test_allow_everyone_or_a_network(greenhorn, allow):
    s = greenhorn("-w", "1", "--forwarded-allow-ips", allow, "echo:app")
    assert scheme(get(s, "X-Forwarded-Proto: https")) == "https"


def test_custom_secure_scheme_headers(greenhorn, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("secure_scheme_headers = {'X-Scheme': 'https'}\n")
    s = greenhorn("-w", "1", "-c", str(conf), "echo:app")
    assert scheme(get(s, "X-Scheme: https")) == "https"
    assert scheme(get(s, "X-Forwarded-Proto: https")) == "http"  # the defaults are replaced


def test_unix_socket_peer_is_trusted(greenhorn, tmp_path):
    """Only local processes reach a unix socket: its peers are trusted (as in gunicorn)."""
    path = tmp_path / "f.sock"
    s = greenhorn(
        "-b", f"unix:{path}", "-w", "1", "--forwarded-allow-ips", "10.0.0.1", "echo:app",
        wait=False,
    )  # fmt: skip
    s.wait_for_log(r"Listening at: unix:")
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(str(path))
        c.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
        )
        response = read_all(c)
    assert scheme(response) == "https"


def info(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), response[:300]
    return json.loads(body.split(b"\n", 1)[0])


def forwarded(server: Any, path: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    return server.raw(request.encode())


def test_trusted_proxy_sets_script_name_through_forwarder_headers(greenhorn):
    """forwarder_headers (default SCRIPT_NAME, PATH_INFO): a trusted proxy mounts the app
    under a prefix; the environ gets SCRIPT_NAME and the PATH_INFO below it."""
    s = greenhorn("-w", "1", "echo:app")
    env = info(forwarded(s, "/shop/cart?x=1", "SCRIPT_NAME: /shop"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/shop", "/cart")
    assert env["headers"]["HTTP_SCRIPT_NAME"] == "/shop"  # also as gunicorn 27 maps it
    env = info(forwarded(s, "/shop/cart", "SCRIPT_NAME: /shop", "PATH_INFO: /other"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/shop", "/other")
    # a name the setting does not list is dropped (header_map's default)
    env = info(forwarded(s, "/a", "REMOTE_USER: mallory"))
    assert "HTTP_REMOTE_USER" not in env["headers"] and env["PATH_INFO"] == "/a"


@pytest.mark.parametrize("header_map, expect", [("drop", 200), ("refuse", 400), ("dangerous", 200)])
def test_untrusted_peer_forwarder_headers_follow_header_map(greenhorn, header_map, expect):
    s = greenhorn(
        "-w", "1", "--forwarded-allow-ips", "10.0.0.1", "--header-map", header_map, "echo:app"
    )
    response = forwarded(s, "/shop/cart", "SCRIPT_NAME: /shop")
    assert response.startswith(f"HTTP/1.1 {expect} ".encode())
    if expect == 200:
        env = info(response)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/shop/cart")
        carried = env["headers"].get("HTTP_SCRIPT_NAME")
        assert carried == ("/shop" if header_map == "dangerous" else None)


def test_remote_user_from_a_trusted_proxy_is_only_a_header(greenhorn):
    """REMOTE_USER listed in forwarder_headers: the application sees HTTP_REMOTE_USER, as
    under gunicorn 27, never REMOTE_USER itself (what frameworks read as a user the server
    authenticated): a header a proxy forgot to strip must not log anyone in."""
    s = greenhorn(
        "-w", "1", "--forwarder-headers", "SCRIPT_NAME,PATH_INFO,REMOTE_USER", "echo:app"
    )  # fmt: skip
    env = info(forwarded(s, "/a", "REMOTE_USER: mallory"))
    assert env["REMOTE_USER"] is None
    assert env["headers"]["HTTP_REMOTE_USER"] == "mallory"


def test_script_name_environment_refuses_paths_outside_it(greenhorn):
    """SCRIPT_NAME in the server's environment mounts the application there: a path under
    it is served with the prefix split off, a path outside it (at a segment boundary) is
    refused with 400, as gunicorn refuses it, and the worker lives; a trusted proxy's
    SCRIPT_NAME is held to the same rule."""
    s = greenhorn("-w", "1", "echo:app", env={"SCRIPT_NAME": "/shop"})
    env = info(forwarded(s, "/shop/cart?x=1"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/shop", "/cart")
    env = info(forwarded(s, "/shop"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/shop", "")
    for outside in ("/other", "/shopping", "/"):
        response = forwarded(s, outside)
        assert response.startswith(b"HTTP/1.1 400 "), (outside, response[:200])
    s.wait_for_log(r"is not under SCRIPT_NAME '/shop'")
    pid = info(forwarded(s, "/shop/x"))["pid"]
    response = forwarded(s, "/b/x", "SCRIPT_NAME: /a")  # the proxy's own prefix
    assert response.startswith(b"HTTP/1.1 400 "), response[:200]
    env = info(forwarded(s, "/a/x", "SCRIPT_NAME: /a"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["pid"]) == ("/a", "/x", pid)
