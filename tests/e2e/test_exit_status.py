"""Exit statuses of the real executable, side by side with gunicorn 27.0.1 (a dev dependency).

The statuses are gunicorn's (docs/migrating.md), except where greenhorn deliberately
differs, and each difference is asserted here with both servers' statuses, so the test
breaks if either side moves:

- a configuration mistake is 2 for greenhorn (gunicorn: 2 only for command-line parse
  errors, 1 for the rest);
- a worker that exits with 3 or 4 after it booted (the application's own ``os._exit``) is
  replaced; gunicorn stops the whole server with that status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import APPS, base_env, launch, wait_until

pytestmark = pytest.mark.e2e

# name: (arguments, greenhorn's status, gunicorn's status)
SAME = {
    "module not found": (["no_such_module:app"], 3, 3),
    "module raises on import": (["broken:app"], 3, 3),
    "factory raises": (["factories:boom()"], 3, 3),
    "attribute not found": (["hello:no_such_attribute"], 4, 4),
    "application not callable": (["factories:NOT_CALLABLE"], 4, 4),
    "--preload, module not found": (["--preload", "no_such_module:app"], 1, 1),
    "post_worker_init raises": (["-c", "{tmp}/pwi.conf.py", "hello:app"], 3, 3),
    "on_starting raises": (["-c", "{tmp}/starting.conf.py", "hello:app"], 1, 1),
    "when_ready raises": (["-c", "{tmp}/ready.conf.py", "hello:app"], 1, 1),
    "--check-config, module not found": (["--check-config", "no_such_module:app"], 1, 1),
    "unknown option": (["--no-such-option", "hello:app"], 2, 2),
}
DIFFERENT = {
    "no application module": ([], 2, 1),
    "config file not found": (["-c", "{tmp}/missing.conf.py", "hello:app"], 2, 1),
    "unknown worker class": (["-k", "no_such_worker", "hello:app"], 2, 1),
    "--chdir to a missing directory": (["--chdir", "{tmp}/missing", "hello:app"], 2, 1),
}


def write_fixtures(tmp: Path) -> None:
    (tmp / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp / "factories.py").write_text(
        "NOT_CALLABLE = 'a string'\ndef boom():\n    raise RuntimeError('factory failed')\n"
    )
    (tmp / "pwi.conf.py").write_text(
        "def post_worker_init(worker):\n    raise RuntimeError('no boot')\n"
    )
    (tmp / "starting.conf.py").write_text(
        "def on_starting(server):\n    raise RuntimeError('not today')\n"
    )
    (tmp / "ready.conf.py").write_text("def when_ready(server):\n    raise RuntimeError('no')\n")


def run_command(server: str, *args: str, path: str = str(APPS)) -> list[str]:
    return [sys.executable, "-m", server, "--pythonpath", path, *args]


def exit_status(argv: list[str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run(
        argv,
        cwd=str(cwd),
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
    )
    return proc.returncode, proc.stderr


def test_gunicorn_is_the_reference_version():
    import gunicorn

    assert gunicorn.__version__ == "27.0.1"


def test_exit_statuses_are_gunicorns(tmp_path):
    write_fixtures(tmp_path)
    common = ["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket"]
    path = f"{APPS},{tmp_path}"
    runs = []
    for name, (args, greenhorn_status, gunicorn_status) in {**SAME, **DIFFERENT}.items():
        argv = [*common, *(a.format(tmp=tmp_path) for a in args)]
        runs.append((name, run_command("greenhorn", *argv, path=path), greenhorn_status))
        runs.append(
            (f"gunicorn: {name}", run_command("gunicorn", *argv, path=path), gunicorn_status)
        )
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda run: exit_status(run[1], tmp_path), runs))
    wrong = [
        f"{name}: exit {code}, expected {expected}\n{stderr[-600:]}"
        for (name, _, expected), (code, stderr) in zip(runs, results, strict=True)
        if code != expected
    ]
    assert not wrong, "\n".join(wrong)
    for (name, argv, _), (_, stderr) in zip(runs, results, strict=True):
        if argv[2] == "greenhorn":
            assert "Traceback" not in stderr or "raises" in name, f"{name}:\n{stderr[-2000:]}"


def get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_a_booted_worker_that_exits_3_or_4_is_replaced(tmp_path, worker):
    s = launch(
        ["-b", "127.0.0.1:0", "-w", "1", "-k", worker, "--no-control-socket", "exiting:app"],
        tmp_path / "greenhorn",
        cwd=tmp_path,
    )
    try:
        s.port = int(s.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)")[0])
        first = int(wait_until(lambda: get(s.port, "/").rpartition(b"\r\n\r\n")[2], 15))
        for code in (3, 4):
            assert get(s.port, f"/exit/{code}") == b"", "the worker died mid-request"
            s.wait_for_log(rf"Worker \(pid:\d+\) exited with code {code}")
            replaced = int(wait_until(lambda: get(s.port, "/").rpartition(b"\r\n\r\n")[2], 15))
            assert replaced != first, "a new worker answers"
            first = replaced
        assert s.proc.poll() is None, "the master still runs\n" + s.log[-2000:]
        assert "Worker failed to boot" not in s.log and "App failed to load" not in s.log
        assert s.stop() == 0
    finally:
        s.kill_group()


def test_gunicorn_stops_when_a_booted_worker_exits_3(tmp_path):
    """The other side of the difference above, on the same application."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = tmp_path / "gunicorn.err"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            run_command(
                "gunicorn",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                "--no-control-socket",
                "exiting:app",
            ),
            cwd=str(tmp_path),
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=e,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _answers(port), 15, what="gunicorn answering")
        get(port, "/exit/3")
        assert proc.wait(20) == 3
        assert "Worker failed to boot" in err.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _answers(port: int) -> bool:
    try:
        return get(port, "/").startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_a_hook_that_raises_while_serving_is_logged_not_fatal(tmp_path):
    """``pre_fork`` raising (as ``on_reload`` would): gunicorn's master exits with 255,
    greenhorn logs it and serves."""
    conf = tmp_path / "prefork.conf.py"
    conf.write_text("def pre_fork(server, worker):\n    raise RuntimeError('pre_fork failed')\n")
    args = ["-c", str(conf), "-b", "127.0.0.1:0", "-w", "1", "--no-control-socket", "hello:app"]
    with ThreadPoolExecutor(1) as pool:
        gunicorn = pool.submit(exit_status, run_command("gunicorn", *args), tmp_path)
        s = launch(args, tmp_path / "greenhorn", cwd=tmp_path)
        try:
            s.port = int(s.wait_for_log(r"Listening at: http://127.0.0.1:(\d+)")[0])
            wait_until(lambda: _answers(s.port), 15, what="greenhorn answering")
            assert "Exception in pre_fork hook" in s.log
            assert s.stop() == 0
        finally:
            s.kill_group()
        assert gunicorn.result()[0] == 255
