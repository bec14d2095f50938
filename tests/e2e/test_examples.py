"""The example applications in examples/ served by the real greenhorn.

hello.py is what the README's set-up command serves; the Flask app and the Django project
show that framework applications need nothing greenhorn-specific (flask and django are
test-only dependencies, in the dev extras); greenhorn.conf.py is the example config file
that the deployment examples share.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Server, base_env, wait_until

EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.e2e


@pytest.fixture
def plain_greenhorn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``greenhorn ARGS`` from the repository root, as a user would. (The shared
    fixture puts tests/apps first on the Python path, whose hello.py would shadow
    examples/hello.py.)"""
    started: list[Server] = []

    def start(*args: str) -> Server:
        n = len(started)
        err, out = tmp_path / f"plain{n}.err", tmp_path / f"plain{n}.out"
        with open(err, "wb") as e, open(out, "wb") as o:
            proc = subprocess.Popen(
                [sys.executable, "-m", "greenhorn", "-b", "127.0.0.1:0", *args],
                cwd=str(ROOT),
                env=base_env(),
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = Server(proc, err, out)
        started.append(server)
        server.port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 20)[0])
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            try:
                server.stop(timeout=15)
            except AssertionError:
                pass
        server.kill_group()


def test_hello_example_as_in_the_readme(plain_greenhorn):
    s = plain_greenhorn("--chdir", "examples", "hello:app")
    r = wait_until(lambda: _get(s), 10, what="hello answering")

    assert r.status_code == 200
    assert r.text == "Hello from greenhorn!\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_worker_type_written_against_greenhorn(plain_greenhorn):
    """docs/custom-classes.md: examples/one_at_a_time.py, a worker type on greenhorn's
    base class, serves hello:app and honours max_requests (the base class's count)."""
    s = plain_greenhorn(
        "--chdir", "examples", "-k", "one_at_a_time:OneAtATime", "--max-requests", "2",
        "hello:app",
    )  # fmt: skip
    for n in (1, 2):
        r = wait_until(lambda: _get(s), 10, what="hello answering")
        assert r.text == "Hello from greenhorn!\n"
        s.wait_for_log(rf"OneAtATime served request {n}")
    s.wait_for_log(r"Autorestarting worker after current request")
    assert wait_until(lambda: _get(s), 10).status_code == 200  # its replacement
    assert s.stop() == 0


def test_flask_example(greenhorn):
    pytest.importorskip("flask")
    s = greenhorn("--chdir", str(EXAMPLES), "-w", "2", "flask_app:app")
    r = s.get("/")
    assert r.status_code == 200
    assert r.text == "Hello from Flask on greenhorn!\n"
    # From a trusted proxy address (127.0.0.1 is in the default forwarded_allow_ips)
    # X-Forwarded-Proto sets the scheme Flask sees.
    r = s.get("/info?x=1", headers={"X-Forwarded-Proto": "https"})
    info = r.json()
    assert info["scheme"] == "https"
    assert info["path"] == "/info"
    assert info["args"] == {"x": "1"}
    assert info["remote_addr"] == "127.0.0.1"
    assert info["server"].startswith("greenhorn")
    body = b"x" * 200_000
    r = s.get("/echo")  # GET on a POST-only route: Flask's 405, passed through
    assert r.status_code == 405
    r = requests.post(s.url("/echo"), data=body, timeout=10)
    assert r.json() == {"length": len(body), "start": "x" * 32}


def test_django_example(greenhorn):
    pytest.importorskip("django")
    project = EXAMPLES / "django_project"
    s = greenhorn("--chdir", str(project), "mysite.wsgi:application", ready_path="/")
    r = s.get("/")
    assert r.status_code == 200
    assert r.text == "Hello from Django on greenhorn!\n"
    r = s.get("/info/?a=b", headers={"X-Forwarded-Proto": "https"})
    info = r.json()
    assert info == {
        "method": "GET",
        "path": "/info/",
        "host": f"127.0.0.1:{s.port}",
        "secure": True,
        "query": {"a": "b"},
        "server": info["server"],
        "pid": info["pid"],
    }
    assert info["server"].startswith("greenhorn")
    assert info["pid"] in s.worker_pids()
    # Django's own 404, and its host validation (ALLOWED_HOSTS) reached through greenhorn.
    assert s.get("/missing/").status_code == 404
    assert s.get("/", headers={"Host": "evil.example"}).status_code == 400


def _get(s: Server) -> requests.Response | None:
    try:
        return s.get("/", timeout=2)
    except requests.RequestException:
        return None


def test_example_config_file_is_clean_and_its_hooks_run(plain_greenhorn):
    conf = "examples/greenhorn.conf.py"
    argv = ["-c", conf, "--chdir", "examples", "--check-config", "hello:app"]
    checked = subprocess.run(
        [sys.executable, "-m", "greenhorn", *argv],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=30,
        env=base_env(),
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == "", "no warnings (a misspelt setting would warn)"

    s = plain_greenhorn("-c", conf, "--chdir", "examples", "hello:app")
    s.wait_for_log(r"starting hello:app")  # on_starting
    s.wait_for_log(r"ready to fork 1 worker")  # when_ready
    r = wait_until(lambda: _get(s), 10, what="hello answering")
    assert r.text == "Hello from greenhorn!\n"  # type: ignore[union-attr]
    # accesslog = "-": the file's format, with the duration in microseconds at the end.
    wait_until(
        lambda: re.search(r'"GET / HTTP/1.1" 200 22 "-" "[^"]*" \d+us$', s.out, re.M),
        10,
        what=f"an access log line on stdout: {s.out!r}",
    )
    assert s.stop() == 0
    assert "bye" in s.log  # on_exit
