"""`greenhorn ctl` against a real master: the worker table, add/remove, and the one-line error
when no master is running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import base_env, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """XDG_RUNTIME_DIR for the master and ctl: short (UNIX socket paths are capped at 108
    bytes) and private to the test, so no other master's socket is ever found (TMPDIR too:
    ctl also looks in <tmp>/greenhorn-<uid>)."""
    path = tempfile.mkdtemp(prefix="ghrun-", dir="/tmp")
    os.mkdir(os.path.join(path, "tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def private(runtime_dir: str) -> dict[str, str]:
    return {"XDG_RUNTIME_DIR": runtime_dir, "TMPDIR": os.path.join(runtime_dir, "tmp")}


def ctl(runtime_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenhorn", "ctl", *args],
        env=base_env(**private(runtime_dir)),
        capture_output=True,
        text=True,
        timeout=30,
    )


def table_pids(out: str) -> list[int]:
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["PID", "STATE"], out
    return sorted(int(line.split()[0]) for line in lines[2:])


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("greenhorn ctl: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_workers_add_remove(greenhorn: Any, tmp_path: Path, runtime_dir: str) -> None:
    pidfile = str(tmp_path / "gh.pid")
    server = greenhorn("hello:app", "-w", "2", "-p", pidfile, env=private(runtime_dir))
    pids = sorted(server.wait_workers(2))
    assert os.path.exists(os.path.join(runtime_dir, f"greenhorn-{server.pid}.ctl"))

    def listed(n: int) -> list[int] | None:
        proc = ctl(runtime_dir, "--pid", pidfile, "workers")
        assert proc.returncode == 0, proc.stderr
        found = table_pids(proc.stdout)
        return found if len(found) == n else None

    assert wait_until(lambda: listed(2), what="2 workers in the table") == pids
    proc = ctl(runtime_dir, "--pid", pidfile, "workers")
    assert proc.stdout.startswith(f"master {server.pid}: running, ready;")

    proc = ctl(runtime_dir, "--pid", pidfile, "add", "1")
    assert (proc.returncode, proc.stdout) == (0, "add: ok, workers target is now 3\n")
    three = server.wait_workers(3)
    assert wait_until(lambda: listed(3), what="3 workers in the table") == sorted(three)

    proc = ctl(runtime_dir, "--pid", pidfile, "remove", "1")
    assert (proc.returncode, proc.stdout) == (0, "remove: ok, workers target is now 2\n")
    server.wait_workers(2)
    wait_until(lambda: listed(2), what="2 workers in the table again")

    proc = ctl(runtime_dir, "--json", "stats")  # found without --pid: the only master there
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["master"]["pid"] == server.pid and data["master"]["workers_target"] == 2
    assert data["totals"]["requests"] >= 1

    assert server.stop() == 0
    assert os.listdir(runtime_dir) == ["tmp"], "the control socket was left behind"
    assert_one_line_error(ctl(runtime_dir, "--pid", pidfile), "no master running")


def test_explicit_control_socket(greenhorn: Any, runtime_dir: str) -> None:
    path = os.path.join(runtime_dir, "app.ctl")
    server = greenhorn("hello:app", "-w", "1", "--control-socket", path)
    server.wait_workers(1)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    proc = ctl(runtime_dir, "--control-socket", path)
    assert proc.returncode == 0, proc.stderr
    assert table_pids(proc.stdout) == server.worker_pids()
    proc = ctl(runtime_dir, "--control-socket", path, "frobnicate")
    assert proc.returncode == 2  # usage: not sent to the master


def test_no_control_socket(greenhorn: Any, tmp_path: Path, runtime_dir: str) -> None:
    pidfile = str(tmp_path / "gh.pid")
    env = private(runtime_dir)
    server = greenhorn("hello:app", "-w", "1", "-p", pidfile, "--no-control-socket", env=env)
    server.wait_workers(1)
    assert_one_line_error(ctl(runtime_dir, "--pid", pidfile), "has no control socket")


def test_dead_master_pid_file(tmp_path: Path, runtime_dir: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    pidfile = tmp_path / "gh.pid"
    pidfile.write_text(f"{dead.pid}\n")
    assert_one_line_error(ctl(runtime_dir, "--pid", str(pidfile)), "no master running")
    assert_one_line_error(ctl(runtime_dir, "--pid", str(tmp_path / "none.pid")), "not found")
    assert_one_line_error(ctl(runtime_dir), "no master running")


def test_ctl_is_a_subcommand_only_as_the_first_argument(tmp_path: Path) -> None:
    (tmp_path / "ctl.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
    )
    for args in (["ctl:app", "--check-config"], ["--check-config", "--", "ctl:app"]):
        proc = subprocess.run(
            [sys.executable, "-m", "greenhorn", *args],
            cwd=tmp_path,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, (args, proc.stderr)


def test_what_gunicornc_has(greenhorn: Any, tmp_path: Path, runtime_dir: str) -> None:
    """show config, show listeners, worker kill PID, shutdown: gunicornc's commands (its
    two-word spellings), against one real master."""
    sock = os.path.join(runtime_dir, "app.ctl")
    unix = os.path.join(runtime_dir, "app.sock")
    server = greenhorn(
        "hello:app", "-w", "2", "--threads", "2", "--control-socket", sock,
        "-b", "127.0.0.1:0", "-b", f"unix:{unix}", "-e", "SECRET=hunter2", "--max-requests", "500",
    )  # fmt: skip
    pids = sorted(server.wait_workers(2))

    proc = ctl(runtime_dir, "-s", sock, "show", "config", "--json")
    assert proc.returncode == 0, proc.stderr
    settings = json.loads(proc.stdout)["settings"]
    assert settings["workers"] == 2 and settings["max_requests"] == 500
    assert settings["worker_class"] == "gthread"  # as it runs: --threads 2 without -k
    assert settings["raw_env"] == ["SECRET=..."]  # names only: values may be secrets
    assert settings["post_request"] == "<default>"
    text = ctl(runtime_dir, "-s", sock, "show", "config").stdout
    assert any(line.split() == ["max_requests", "=", "500"] for line in text.splitlines())
    assert "hunter2" not in text

    proc = ctl(runtime_dir, "-s", sock, "--json", "show", "listeners")
    listeners = json.loads(proc.stdout)["listeners"]
    assert sorted((item["type"], item["origin"]) for item in listeners) == [
        ("tcp", "bind"), ("unix", "bind")
    ], listeners  # fmt: skip
    assert f"unix:{unix}" in [item["address"] for item in listeners]
    assert all(isinstance(item["fd"], int) and item["fd"] >= 0 for item in listeners)
    table = ctl(runtime_dir, "-s", sock, "show", "listeners").stdout.splitlines()
    assert table[0].split()[:3] == ["ADDRESS", "TYPE", "FD"] and len(table) == 1 + len(listeners)

    proc = ctl(runtime_dir, "-s", sock, "worker", "kill", str(pids[0]))
    assert (proc.returncode, proc.stdout) == (0, f"worker kill: sent TERM to worker {pids[0]}\n")
    server.wait_for_log(rf"Stopping worker \(pid:{pids[0]}\) at greenhorn ctl's request")
    replaced = wait_until(
        lambda: (lambda now: now if len(now) == 2 and pids[0] not in now else None)(
            server.worker_pids()
        ),
        15,
        what="the killed worker replaced",
    )
    assert pids[1] in replaced
    assert_one_line_error(
        ctl(runtime_dir, "-s", sock, "worker", "kill", str(server.pid)), "not a worker"
    )
    assert ctl(runtime_dir, "-s", sock, "worker", "kill").returncode == 2  # no PID: usage

    proc = ctl(runtime_dir, "-s", sock, "shutdown")
    assert (proc.returncode, proc.stdout) == (
        0,
        "shutdown: ok, the master is stopping (graceful)\n",
    )
    server.proc.wait(30)
    assert server.proc.returncode == 0
    server.wait_for_log(r"Handling signal: term")
    assert not os.path.exists(sock) and not os.path.exists(unix)
