"""The Python API (issue 21): gunicorn's custom-application pattern with the import changed,
``greenhorn.app.wsgiapp`` as a command, and the ``paste.server_runner`` entry point.

Each runs a real process: examples/embedded.py exactly as docs/embedding.md runs it (then
HUP: ``load_config`` again, a new generation; TERM: exit 0), ``python -m
greenhorn.app.wsgiapp``, and a PasteDeploy file whose ``[server:main]`` says ``use =
egg:greenhorn#main``, served the way ``pserve`` serves it (``paste.deploy.loadserver``).
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, ROOT, Server, base_env, wait_until

pytestmark = pytest.mark.e2e


def run(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None, cwd=None) -> Server:
    err, out = tmp_path / "api.err", tmp_path / "api.out"
    with open(err, "wb") as e, open(out, "wb") as o:
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd or tmp_path),
            env=base_env(**(env or {})),
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(proc, err, out)
    server.port = int(server.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)", 20)[0])
    return server


@pytest.fixture
def stop_all():
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            try:
                server.stop(timeout=15)
            except AssertionError:
                pass
        server.kill_group()


def answer(server: Server, path: str = "/") -> str:
    return wait_until(lambda: _text(server, path), 15, what=f"an answer\n{server.log[-2000:]}")


def _text(server: Server, path: str) -> str | None:
    try:
        return server.get(path, timeout=3).text
    except OSError:
        return None


def test_embedded_example_runs_reloads_and_stops(tmp_path, stop_all):
    script = ROOT / "examples" / "embedded.py"
    server = run(
        [sys.executable, str(script)], tmp_path, env={"BIND": "127.0.0.1:0", "WORKERS": "2"}
    )
    stop_all.append(server)
    assert answer(server).startswith("Hello from an embedded greenhorn (pid ")
    first = set(server.wait_workers(2))
    wait_until(lambda: '"GET / HTTP/1.1" 200' in server.out, 10)  # accesslog = "-"
    server.send_signal(signal.SIGHUP)  # load_config() again, a new generation of workers
    wait_until(lambda: len(server.worker_pids()) == 2 and not first & set(server.worker_pids()))
    assert answer(server).startswith("Hello from an embedded greenhorn")
    assert server.stop() == 0


def test_wsgiapp_module_is_the_command_line(tmp_path, stop_all):
    argv = [sys.executable, "-m", "greenhorn.app.wsgiapp", "--pythonpath", str(APPS)]
    server = run([*argv, "-b", "127.0.0.1:0", "-w", "2", "hello:app"], tmp_path)
    stop_all.append(server)
    assert answer(server) == "Hello, world!\n"
    server.wait_workers(2)
    assert server.stop() == 0


@pytest.mark.skipif(importlib.util.find_spec("paste") is None, reason="PasteDeploy missing")
def test_paste_server_runner(tmp_path, stop_all):
    (tmp_path / "pasteapp.py").write_text(
        "def make_app(global_conf, greeting='hello', **local):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [(greeting + ' from paste\\n').encode()]\n"
        "    return app\n"
    )
    ini = tmp_path / "app.ini"
    ini.write_text(
        "[app:main]\npaste.app_factory = pasteapp:make_app\ngreeting = howdy\n\n"
        "[server:main]\nuse = egg:greenhorn#main\nhost = 127.0.0.1\nport = 0\nworkers = 2\n"
    )
    # what pserve does with the file: load the server runner by its entry point, call it
    code = (
        "import sys; sys.path.insert(0, '.'); from paste.deploy import loadapp, loadserver;"
        f"uri = 'config:{ini}'; loadserver(uri)(loadapp(uri))"
    )
    server = run([sys.executable, "-c", code], tmp_path)
    stop_all.append(server)
    assert answer(server) == "howdy from paste\n"
    server.wait_workers(2)
    assert server.stop() == 0
