"""``--protocol uwsgi`` behind a real nginx (``uwsgi_pass`` with ``include uwsgi_params``),
for every worker type, and bad packets on raw sockets against the real server.

One nginx for the module, one greenhorn per worker type (sync, gthread, gevent, eventlet,
asgi), each behind its own nginx ``server``: ``/`` is passed from 127.0.0.1 (allowed by
the default ``--uwsgi-allow-from``), ``/denied/`` from 127.0.0.2 (``uwsgi_bind``), which is
not. Clients reach nginx from 127.0.0.3, so the REMOTE_ADDR nginx passes (the client's)
differs from the address greenhorn's socket sees (nginx's).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Server, command, launch, read_all, wait_until

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
KINDS = ("sync", "gthread", "gevent", "eventlet", "asgi")
RAW_KINDS = ("sync", "gthread", "gevent", "eventlet", "asgi")  # bad packets
CLIENT = "127.0.0.3"  # where the test's HTTP clients connect to nginx from
DENIED = "127.0.0.2"  # where nginx connects to greenhorn from for /denied/

# nginx's own uwsgi_params, for a distribution that puts it elsewhere or not at all
UWSGI_PARAMS = """\
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;
uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;
uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
"""

NGINX_MAIN = """\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 4m;
{servers}
}}
"""

NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{h2port} http2;
        location / {{
            include {params};
            uwsgi_pass 127.0.0.1:{upstream};
        }}
        location /denied/ {{
            include {params};
            uwsgi_pass 127.0.0.1:{upstream};
            uwsgi_bind {denied};
        }}
    }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a uwsgi client of the test's own ------------------------------------------------------


def packet(pairs: list[tuple[str, str]], datasize: int | None = None, modifier1: int = 0) -> bytes:
    block = b""
    for key, value in pairs:
        k, v = key.encode("latin-1"), value.encode("latin-1")
        block += len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
    size = len(block) if datasize is None else datasize
    return bytes((modifier1,)) + size.to_bytes(2, "little") + b"\x00" + block


GET = [
    ("REQUEST_METHOD", "GET"),
    ("REQUEST_URI", "/raw?x=1"),
    ("PATH_INFO", "/raw"),
    ("QUERY_STRING", "x=1"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REMOTE_ADDR", "198.51.100.9"),
    ("REMOTE_PORT", "40000"),
    ("SERVER_NAME", "raw.example"),
    ("SERVER_PORT", "80"),
    ("HTTP_HOST", "raw.example"),
]


def uwsgi_exchange(port: int, data: bytes, close_after: bool = False) -> bytes:
    """Send ``data`` to greenhorn's uwsgi port (half-closing after it if asked) and read
    the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if close_after:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)


def answer_json(data: bytes) -> dict:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:300]
    return json.loads(body)


# -- the stack: greenhorn per worker type, one nginx in front ------------------------------


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: dict[str, Server] = {}
        self.ports: dict[str, int] = {}  # nginx's port for each kind
        self.h2ports: dict[str, int] = {}  # ... and its HTTP/2 (prior knowledge) port
        self.nginx: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for kind in KINDS:  # all at once: they boot in parallel
            app = "uwsgi_echo:asgi" if kind == "asgi" else "uwsgi_echo:wsgi"
            argv = ["-b", "127.0.0.1:0", "--protocol", "uwsgi", "-k", kind, "-w", "1"]
            argv += ["--access-logfile", "-", "--header-timeout", "2", app]
            self.servers[kind] = launch(argv, self.tmp / kind, cwd=self.tmp)
        for server in self.servers.values():
            m = server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 30)
            server.port = int(m[0])
        for kind, server in self.servers.items():
            wait_until(lambda s=server: self._answers(s), 30, 0.05, f"{kind} serving uwsgi")
        params = Path("/etc/nginx/uwsgi_params")
        if not params.is_file():
            params = self.tmp / "uwsgi_params"
            params.write_text(UWSGI_PARAMS)
        blocks = []
        for kind, server in self.servers.items():
            self.ports[kind] = port = free_port()
            self.h2ports[kind] = h2port = free_port()
            blocks.append(
                NGINX_SERVER.format(
                    port=port, h2port=h2port, params=params, upstream=server.port, denied=DENIED
                )
            )
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_MAIN.format(d=self.tmp, servers="".join(blocks)))
        assert NGINX is not None
        self.nginx_err = self.tmp / "nginx.stderr"
        with open(self.nginx_err, "wb") as err:
            self.nginx = subprocess.Popen(
                [NGINX, "-p", f"{self.tmp}/", "-c", str(conf), "-e", str(self.error_log)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(self._nginx_up, 15, 0.05, "nginx listening")

    @property
    def error_log(self) -> Path:
        return self.tmp / "nginx-error.log"

    def _answers(self, server: Server) -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.log}")
        try:
            data = uwsgi_exchange(server.port, packet(GET))
        except OSError:
            return False
        return data.startswith(b"HTTP/1.1 200 ")

    def _nginx_up(self) -> bool:
        assert self.nginx is not None
        if self.nginx.poll() is not None:
            raise AssertionError(
                f"nginx exited {self.nginx.returncode}: {self.nginx_err.read_text()}"
                + (self.error_log.read_text() if self.error_log.exists() else "")
            )
        try:
            for port in self.ports.values():
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    def request(
        self,
        kind: str,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request through nginx, from ``CLIENT``."""
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.ports[kind], timeout=20, source_address=(CLIENT, 0)
        )
        try:
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            os.kill(self.nginx.pid, signal.SIGQUIT)
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait(5)
        for server in self.servers.values():
            try:
                server.stop(signal.SIGTERM, timeout=15)
            except AssertionError:
                pass
            server.kill_group()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if NGINX is None:
        pytest.skip("nginx not installed")
    the = Stack(tmp_path_factory.mktemp("uwsgi"))
    try:
        the.start()
        yield the
    finally:
        the.stop()
    errors = the.error_log.read_text() if the.error_log.exists() else ""
    assert not re.search(r"\[(emerg|alert|crit)\]", errors), errors


# -- behind nginx ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_get_with_query_headers_and_the_clients_address(stack, kind):
    status, headers, body = stack.request(
        kind,
        "GET",
        "/a%20b/c?x=1&y=%2F",
        headers={"Host": "shop.example:8443", "X-Custom": "hello", "Cookie": "a=1"},
    )
    assert status == 200, body
    assert headers["x-app"] == ("asgi" if kind == "asgi" else "wsgi")
    info = json.loads(body)
    if kind == "asgi":
        assert info["method"] == "GET" and info["http_version"] == "1.1"
        assert (info["path"], info["raw_path"]) == ("/a b/c", "/a%20b/c")
        assert info["query_string"] == "x=1&y=%2F" and info["scheme"] == "http"
        assert info["client"][0] == CLIENT  # the client's, as nginx passed it
        assert info["server"] == ["shop.example", stack.ports[kind]]
        sent = dict(info["headers"])
        assert sent["x-custom"] == "hello" and sent["cookie"] == "a=1"
        assert sent["host"].startswith("shop.example")
    else:
        assert info["REQUEST_METHOD"] == "GET" and info["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert info["PATH_INFO"] == "/a b/c" and info["QUERY_STRING"] == "x=1&y=%2F"
        assert info["REQUEST_URI"] == info["RAW_URI"] == "/a%20b/c?x=1&y=%2F"
        assert info["REMOTE_ADDR"] == CLIENT  # not nginx's 127.0.0.1: gunicorn's mistake
        assert int(info["REMOTE_PORT"]) > 0
        assert info["HTTP_X_CUSTOM"] == "hello" and info["HTTP_COOKIE"] == "a=1"
        assert info["HTTP_HOST"].startswith("shop.example")
        assert info["SERVER_PORT"] == str(stack.ports[kind])  # nginx's, where the client came
        assert info["SERVER_NAME"] == "shop.example"
        assert info["wsgi.url_scheme"] == "http" and info["REQUEST_SCHEME"] == "http"
        assert "DOCUMENT_ROOT" in info  # the proxy's other variables pass through
        assert "CONTENT_LENGTH" not in info and "CONTENT_TYPE" not in info
    # the access log names the client too
    server = stack.servers[kind]
    wait_until(lambda: f"{CLIENT} - - " in server.out, 10, what=server.out)
    assert '"GET /a%20b/c?x=1&y=%2F HTTP/1.1" 200' in server.out


@pytest.mark.parametrize("kind", KINDS)
def test_a_1_mib_post_is_echoed_with_its_checksum(stack, kind):
    body = os.urandom(1 << 20)
    status, _, answer = stack.request(
        kind, "POST", "/upload", body=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 200, answer[:300]
    info = json.loads(answer)
    assert info["body_len"] == len(body)
    assert info["body_sha256"] == hashlib.sha256(body).hexdigest()
    if kind != "asgi":
        assert info["CONTENT_LENGTH"] == str(len(body))
        assert info["CONTENT_TYPE"] == "application/octet-stream"


@pytest.mark.parametrize("kind", KINDS)
def test_a_peer_outside_uwsgi_allow_from_is_refused(stack, kind):
    server = stack.servers[kind]
    before = server.log.count("refused: not in uwsgi_allow_ips")
    status, _, body = stack.request(kind, "GET", "/denied/x")
    assert status == 403, body
    server.wait_for_log(rf"uWSGI request from ip={re.escape(DENIED)} refused", count=before + 1)
    assert "/denied/" not in server.out  # the application never saw it
    status, _, _ = stack.request(kind, "GET", "/after")  # and the worker serves on
    assert status == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("kind", ["sync", "asgi"])
def test_an_http2_client_is_reported_as_such(stack, kind):
    """nginx speaks HTTP/2 to the client and uwsgi to greenhorn: the application sees the
    client's protocol (SERVER_PROTOCOL HTTP/2.0, ASGI http_version 2), not HTTP/1.0."""
    url = f"http://127.0.0.1:{stack.h2ports[kind]}/h2?q=1"
    proc = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "--interface", CLIENT, "--max-time", "20", url],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    if kind == "asgi":
        assert info["http_version"] == "2" and info["client"][0] == CLIENT
    else:
        assert info["SERVER_PROTOCOL"] == "HTTP/2.0" and info["REMOTE_ADDR"] == CLIENT
        server = stack.servers[kind]
        wait_until(lambda: '"GET /h2?q=1 HTTP/2.0" 200' in server.out, 10, what=server.out)


@pytest.mark.parametrize("kind", ["sync", "asgi"])
def test_uwsgi_allow_from_names_who_may_connect_and_unix_peers_always_may(tmp_path, kind):
    """``--uwsgi-allow-from 192.0.2.1``: nginx on this machine (127.0.0.1) is refused over
    TCP, while a peer on the UNIX socket, which has no address, is served (as gunicorn)."""
    short = Path(tempfile.mkdtemp(prefix="gh-uw-"))
    sock_path = short / "app.sock"
    app = "uwsgi_echo:asgi" if kind == "asgi" else "uwsgi_echo:wsgi"
    argv = ["-b", "127.0.0.1:0", "-b", f"unix:{sock_path}", "--protocol", "uwsgi", "-k", kind]
    server = launch([*argv, "--uwsgi-allow-from", "192.0.2.1", app], tmp_path / "s", cwd=tmp_path)
    try:
        port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 30)[0])

        def over_unix() -> bytes | None:
            if server.proc.poll() is not None:
                raise AssertionError(server.log)
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(10)
                    s.connect(str(sock_path))
                    s.sendall(packet(GET))
                    return read_all(s) or None
            except OSError:
                return None

        answer = wait_until(over_unix, 30, 0.05, "served over the UNIX socket")
        info = answer_json(answer)
        client = info["client"][0] if kind == "asgi" else info["REMOTE_ADDR"]
        assert client == "198.51.100.9"  # the packet's, over a socket with no address
        answer = uwsgi_exchange(port, packet(GET))
        assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
        server.wait_for_log(r"uWSGI request from ip=127\.0\.0\.1 refused")
        assert server.worker_pids()
    finally:
        server.stop(signal.SIGTERM, timeout=15)
        server.kill_group()
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.parametrize("kind", ["sync", "gevent"])  # the handler's two ways to a head
def test_the_packets_script_name_is_the_mount_point_the_path_is_held_to(tmp_path, kind):
    """Mounted with the SCRIPT_NAME environment variable (/mnt), a packet that carries its
    own SCRIPT_NAME (``uwsgi_param SCRIPT_NAME /app``) is held to that one, as its environ
    is built with it: /app/x is served as ("/app", "/x"), and /mnt/x or /application (not
    under /app) get 400. Without the variable the environment's /mnt applies. (gunicorn 27
    ignores the packet's SCRIPT_NAME and answers 500 for a path outside the environment's.)
    """
    argv = ["-b", "127.0.0.1:0", "--protocol", "uwsgi", "-k", kind, "uwsgi_echo:wsgi"]
    server = launch(argv, tmp_path / "s", env={"SCRIPT_NAME": "/mnt"}, cwd=tmp_path)
    try:
        port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 30)[0])

        def get(path: str, script_name: str | None) -> bytes:
            pairs = [(k, v) for k, v in GET if k not in ("REQUEST_URI", "PATH_INFO")]
            pairs += [("REQUEST_URI", path), ("PATH_INFO", path)]
            if script_name is not None:
                pairs.append(("SCRIPT_NAME", script_name))
            return uwsgi_exchange(port, packet(pairs))

        def served(path: str, script_name: str | None) -> tuple[str, str]:
            info = answer_json(get(path, script_name))
            return info["SCRIPT_NAME"], info["PATH_INFO"]

        assert served("/app/x", "/app") == ("/app", "/x")
        assert served("/mnt/x", None) == ("/mnt", "/x")
        for path, script_name, mount in [
            ("/mnt/x", "/app", "/app"),
            ("/application", "/app", "/app"),
            ("/other", None, "/mnt"),
        ]:
            answer = get(path, script_name)
            assert answer.startswith(b"HTTP/1.1 400 "), (path, script_name, answer[:200])
            assert f"is not under SCRIPT_NAME '{mount}'".encode() in answer, answer
        pid = answer_json(get("/app/y", "/app"))["pid"]
        assert server.worker_pids() == [pid]
    finally:
        server.stop(signal.SIGTERM, timeout=15)
        server.kill_group()


# -- bad packets on a raw socket: logged, the connection closed, the worker lives -----------

OK_BLOCK_SIZE = len(packet(GET)) - 4
BAD_PACKETS = {
    # the connection closes inside the packet: datasize says more than comes
    "truncated": (packet(GET, datasize=OK_BLOCK_SIZE + 50), True, 400, "closed inside a uwsgi"),
    # a value size that points past the end of the packet (datasize itself is right)
    "sizes that lie": (
        b"\x00\x15\x00\x00" + b"\x0e\x00REQUEST_METHOD\x40\x00GET",
        False,
        400,
        "value of REQUEST_METHOD runs past the end of the packet",
    ),
    # a variable over limit_request_field_size
    "oversized variable": (
        packet([*GET, ("HTTP_X_BIG", "b" * 9000)]),
        False,
        431,
        "header field over",
    ),
    "modifier1": (packet(GET, modifier1=5), False, 501, "modifier1 5"),
}


@pytest.mark.parametrize("case", list(BAD_PACKETS))
@pytest.mark.parametrize("kind", RAW_KINDS)
def test_bad_packets_close_the_connection_and_the_worker_lives(stack, kind, case):
    data, half_close, status, text = BAD_PACKETS[case]
    server = stack.servers[kind]
    pid = answer_json(uwsgi_exchange(server.port, packet(GET)))["pid"]
    before = server.log.count(text)
    answer = uwsgi_exchange(server.port, data, close_after=half_close)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"connection: close" in answer.lower()
    server.wait_for_log(
        r"Invalid request from ip=127\.0\.0\.1: .*" + re.escape(text), count=before + 1
    )
    assert answer_json(uwsgi_exchange(server.port, packet(GET)))["pid"] == pid
    assert server.worker_pids() == [pid]


@pytest.mark.parametrize(
    "flags, text",
    [
        (
            ("--protocol", "fastcgi"),
            "--protocol: invalid value 'fastcgi': expected one of http, uwsgi",
        ),
        (("--uwsgi-allow-from", "nginx.local"), "--uwsgi-allow-from: invalid value 'nginx.local'"),
    ],
)
def test_bad_values_stop_with_one_line(tmp_path, flags, text):
    proc = subprocess.run(
        command(*flags, "uwsgi_echo:wsgi"), capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], lines
