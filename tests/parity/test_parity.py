"""The same scenarios through gunicorn 27.0.1 and greenhorn, diffed (issue 21, "Done means").

gunicorn is a dev dependency (pyproject.toml); both servers run from this interpreter, with
the same arguments, the same config file and the same application
(tests/apps/parity_app.py, whose answers do not depend on the server). Each scenario starts
both servers at once and compares what a deployment sees:

- **hook order**: tests/apps/hook_recorder.py as the config file; boot, two requests, HUP,
  one more request, TERM. Each process's sequence of hooks (the master's, and every worker's) must be the
  same, and both masters exit 0.
- **access log**: the default format and one with every atom that does not measure time,
  for the same requests (query, Basic auth user, referer, user agent, a request and a
  response header, HEAD, POST, 404): the lines must be equal once the timestamp is blanked.
- **environ**: the WSGI environ for the same requests must have the same keys and values,
  except the keys listed in ``ENVIRON_DIFFERS`` (each with the reason, documented in
  docs/migrating.md, and greenhorn's value asserted), and the values that name the server
  or the client's port; once plain, once mounted with ``SCRIPT_NAME`` behind a trusted
  proxy that sends forwarder headers (``REMOTE_USER`` among them) and the scheme.
- **exit codes**: TERM, INT and QUIT stop both masters with the same status
  (tests/e2e/test_exit_status.py compares the failure statuses).

Lean on purpose: each scenario is one pair of servers, started in parallel.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS, Server, base_env, wait_until

pytestmark = pytest.mark.e2e
gunicorn = pytest.importorskip("gunicorn")

SERVERS = ("gunicorn", "greenhorn")
HOOKS = str(APPS / "hook_recorder.py")


# -- both servers --------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Callable[..., dict[str, Server]]]:
    """``pair(*args, env=...)`` → {"gunicorn": Server, "greenhorn": Server}, both ready;
    ``{server}`` in an argument or an environment value becomes the server's name."""
    started: list[Server] = []

    def start_one(name: str, args: tuple[str, ...], env: dict[str, str]) -> Server:
        argv = [sys.executable, "-m", name, "--pythonpath", str(APPS), "-b", "127.0.0.1:0"]
        stem = tmp_path / name
        with (
            open(stem.with_suffix(".err"), "wb") as err,
            open(stem.with_suffix(".out"), "wb") as out,
        ):
            proc = subprocess.Popen(
                [*argv, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=base_env(**env), cwd=tmp_path, start_new_session=True,
            )  # fmt: skip
        server = Server(proc, stem.with_suffix(".err"), stem.with_suffix(".out"))
        started.append(server)
        server.port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 20)[0])
        wait_until(lambda: _answers(server), 20, every=0.05, what=f"{name} answering")
        return server

    def start(*args: str, env: dict[str, str] | None = None) -> dict[str, Server]:
        def per_server(name: str) -> Server:
            own = {k: v.replace("{server}", name) for k, v in (env or {}).items()}
            return start_one(name, tuple(a.replace("{server}", name) for a in args), own)

        with ThreadPoolExecutor(2) as pool:
            return dict(zip(SERVERS, pool.map(per_server, SERVERS), strict=True))

    yield start
    for server in started:
        if server.proc.poll() is None:
            try:
                server.stop(signal.SIGTERM, timeout=15)
            except AssertionError:
                pass
        server.kill_group()


def _answers(server: Server) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"exited ({server.proc.returncode}):\n{server.log[-3000:]}")
    try:
        return exchange(server.port, b"GET /ready HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.")
    except OSError:
        return False


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def both(servers: dict[str, Server], fn: Callable[[Server], Any]) -> dict[str, Any]:
    return {name: fn(server) for name, server in servers.items()}


# -- hook order -----------------------------------------------------------------------------


def per_process(path: Path) -> tuple[list[str], list[list[str]]]:
    """(the master's hooks in order, each worker's hooks in order, by first appearance)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    master = rows[0]["pid"]
    workers: dict[int, list[str]] = {}
    for row in rows:
        if row["pid"] != master:
            workers.setdefault(row["pid"], []).append(row["hook"])
    return [r["hook"] for r in rows if r["pid"] == master], list(workers.values())


def test_hook_order(pair, tmp_path):
    servers = pair(
        "-c", HOOKS, "-w", "1", "parity_app:app", env={"HOOK_LOG": str(tmp_path / "{server}.hooks")}
    )
    for server in servers.values():
        [first] = server.wait_workers(1)
        for path in ("/a", "/b"):
            assert exchange(server.port, f"GET {path} HTTP/1.0\r\n\r\n".encode()).startswith(
                b"HTTP/1."
            )
        server.send_signal(signal.SIGHUP)
        wait_until(
            lambda s=server, f=first: len(s.worker_pids()) == 1 and f not in s.worker_pids(), 20
        )
        assert exchange(server.port, b"GET /c HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.")
    codes = both(servers, lambda s: s.stop())
    assert codes == {"gunicorn": 0, "greenhorn": 0}
    seen = {name: per_process(tmp_path / f"{name}.hooks") for name in SERVERS}
    assert seen["greenhorn"] == seen["gunicorn"], json.dumps(seen, indent=1)


# -- access log -----------------------------------------------------------------------------

ATOMS = (
    '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(m)s %(U)s ?%(q)s %(H)s '
    "%({x-test}i)s %({content-type}o)s %({x-app}o)s"
)
AUTH = base64.b64encode(b"ann:secret").decode()
REQUESTS = [
    b"GET /page?x=1&y=2 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\nReferer: http://r/\r\n"
    b"X-Test: t1\r\nConnection: close\r\n\r\n",
    f"GET /private HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {AUTH}\r\n"
    "Connection: close\r\n\r\n".encode(),
    b"HEAD /page HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n\r\nhello",
    b"GET /status/404 HTTP/1.0\r\n\r\n",
    b"GET /caf%C3%A9/x%20y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
]


def access_lines(server: Server, path: Path) -> list[str]:
    for request in REQUESTS:
        assert exchange(server.port, request).startswith(b"HTTP/1.")
    wait_until(lambda: path.exists() and path.read_text().count("\n") >= len(REQUESTS) + 1, 10)
    lines = [line for line in path.read_text().splitlines() if "/ready" not in line]
    return [
        re.sub(r"\[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", "[TIME]", line) for line in lines
    ]


@pytest.mark.parametrize("fmt", [None, ATOMS], ids=["default", "atoms"])
def test_access_log_lines(pair, tmp_path, fmt):
    args = ["--access-logfile", str(tmp_path / "{server}.access")]
    if fmt is not None:
        args += ["--access-logformat", fmt]
    servers = pair(*args, "parity_app:app")
    lines = {name: access_lines(servers[name], tmp_path / f"{name}.access") for name in SERVERS}
    assert lines["greenhorn"] == lines["gunicorn"]


# -- environ -----------------------------------------------------------------------------------

ENVIRON_REQUESTS = {
    "get": b"GET /environ?x=1&y=%20 HTTP/1.1\r\nHost: example.com:81\r\nX-Custom: a\r\n"
    b"X-Custom: b\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    "post": b"POST /environ HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    "http/1.0": b"GET /environ HTTP/1.0\r\n\r\n",
    "encoded path": b"GET /environ%2Fx/caf%C3%A9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
}
# Keys whose values differ on purpose (docs/migrating.md, "The WSGI environ"): for each
# request, greenhorn's value is asserted, and gunicorn's.
PROXIED_REQUESTS = {  # from 127.0.0.1, a trusted forwarder by default
    "mounted": b"GET /app/environ?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    "forwarded": b"GET /app/environ HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n"
    b"REMOTE_USER: mallory\r\nX_Other: dropped\r\nConnection: close\r\n\r\n",
    "proxy's own mount": b"GET /shop/environ HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /shop\r\n"
    b"Connection: close\r\n\r\n",
}
SCENARIOS = {
    "plain": ((), {}, ENVIRON_REQUESTS),
    "behind a proxy": (
        ("--forwarder-headers", "SCRIPT_NAME,PATH_INFO,REMOTE_USER"),
        {"SCRIPT_NAME": "/app"},
        PROXIED_REQUESTS,
    ),
}
ENVIRON_DIFFERS = {
    "SERVER_NAME": "from Host (CGI), where gunicorn gives the listening address",
    "SERVER_PORT": "the same",
    "REQUEST_URI": "greenhorn also names the target as Apache and uWSGI do (= RAW_URI)",
    "greenhorn.socket": "greenhorn's name for gunicorn.socket, which it also sets",
}


def normalized(env: dict[str, Any], name: str, port: int) -> dict[str, Any]:
    """What may differ only because the servers are two processes: the client's port, the
    server's own port and name."""
    env = dict(env)
    assert env["REMOTE_PORT"].isdigit()
    env["REMOTE_PORT"] = "<client port>"
    assert env["SERVER_SOFTWARE"].startswith(f"{name}/")
    env["SERVER_SOFTWARE"] = "<server>/<version>"
    if env.get("SERVER_PORT") == str(port):
        env["SERVER_PORT"] = "<listening port>"
    return env


def environ_of(server: Server, request: bytes) -> dict[str, Any]:
    head, _, body = exchange(server.port, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    if b"chunked" in head.lower():
        body = b"".join(_chunks(body))
    return json.loads(body)


def _chunks(data: bytes) -> Iterator[bytes]:
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return
        yield data[:n]
        data = data[n + 2 :]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_environ(pair, scenario):
    args, env, requests = SCENARIOS[scenario]
    servers = pair(*args, "parity_app:app", env=env)
    diffs = {}
    for label, request in requests.items():
        env = both(servers, lambda s, r=request: environ_of(s, r))
        g = normalized(env["gunicorn"], "gunicorn", servers["gunicorn"].port)
        gh = normalized(env["greenhorn"], "greenhorn", servers["greenhorn"].port)
        host = re.search(rb"\r\nHost: ([^:\r]+)(?::(\d+))?", request)
        if host is None:  # no Host: both give the listening address
            assert (gh["SERVER_NAME"], gh["SERVER_PORT"]) == ("127.0.0.1", "<listening port>")
        else:
            expected = (host.group(1).decode(), (host.group(2) or b"80").decode())
            assert (gh["SERVER_NAME"], gh["SERVER_PORT"]) == expected, label
        assert (g["SERVER_NAME"], g["SERVER_PORT"]) == ("127.0.0.1", "<listening port>"), label
        assert gh["REQUEST_URI"] == gh["RAW_URI"] and "REQUEST_URI" not in g
        assert gh["greenhorn.socket"] == "<greenhorn.socket>" and "greenhorn.socket" not in g
        for key in sorted((set(g) | set(gh)) - set(ENVIRON_DIFFERS)):
            if g.get(key, "<absent>") != gh.get(key, "<absent>"):
                diffs[(label, key)] = (g.get(key, "<absent>"), gh.get(key, "<absent>"))
    assert not diffs, "\n".join(
        f"{k}: gunicorn {v[0]!r}, greenhorn {v[1]!r}" for k, v in diffs.items()
    )


# -- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=lambda s: s.name
)
def test_exit_code_on_a_stop_signal(pair, sig):
    servers = pair("-w", "2", "parity_app:app")
    for server in servers.values():
        server.wait_workers(2)
    codes = both(servers, lambda s: s.stop(sig))
    assert codes["greenhorn"] == codes["gunicorn"] == 0, codes
