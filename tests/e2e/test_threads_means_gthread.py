"""``--threads N`` without ``-k`` runs gthread workers (as gunicorn), and everything that
names the worker type says so: the start-up log line (gunicorn's says gthread too),
``--print-config``, ``/metrics`` and ``greenhorn ctl`` (they all said sync)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import requests

from conftest import APPS, base_env, command, wait_until

pytestmark = pytest.mark.e2e


def test_threads_without_a_worker_class_is_gthread_everywhere(greenhorn, tmp_path):
    short = tempfile.mkdtemp(prefix="ghctl-", dir="/tmp")  # UNIX socket paths are short
    try:
        sock = f"{short}/c.ctl"
        s = greenhorn(
            "hello:app", "--threads", "4", "--metrics-bind", "127.0.0.1:0", "--control-socket", sock
        )
        assert "Using worker: gthread" in s.log
        port = int(s.wait_for_log(r"Metrics at: http://127\.0\.0\.1:(\d+)")[0])
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'worker_class="gthread"' in metrics
        ctl = subprocess.run(
            [sys.executable, "-m", "greenhorn", "ctl", "-s", sock, "workers"],
            capture_output=True,
            text=True,
            timeout=30,
            env=base_env(),
        )
        assert ctl.returncode == 0 and ", gthread workers;" in ctl.stdout, ctl
    finally:
        shutil.rmtree(short, ignore_errors=True)

    printed = subprocess.run(
        command("--threads", "4", "--print-config", "hello:app"),
        capture_output=True,
        text=True,
        timeout=30,
        env=base_env(),
        cwd=str(tmp_path),
    )
    line = next(x for x in printed.stdout.splitlines() if x.startswith("worker_class "))
    assert line.split("#")[0].split("=")[1].strip() == "'gthread'", line

    err = tmp_path / "gunicorn.err"
    with open(err, "wb") as e:
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--pythonpath",
                str(APPS),
                "--threads",
                "4",
                "-b",
                "127.0.0.1:0",
                "--no-control-socket",
                "hello:app",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=e,
            env=base_env(),
            cwd=str(tmp_path),
            start_new_session=True,
        )
    try:
        wait_until(lambda: "Using worker:" in err.read_text(), 20, what="gunicorn's start-up")
        assert "Using worker: gthread" in err.read_text()
    finally:  # (a TERM while gunicorn still forks its workers can hang it: no TERM here)
        os.killpg(gunicorn.pid, signal.SIGKILL)
        gunicorn.wait(20)
