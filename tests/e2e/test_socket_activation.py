"""systemd integration through the real process: socket activation and sd_notify."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import base_env, command, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="no systemd-socket-activate"
)
def test_socket_activation_takes_precedence_over_bind(tmp_path):
    port = free_port()
    err = tmp_path / "err.log"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            [
                "systemd-socket-activate",
                "-l",
                f"127.0.0.1:{port}",
                *command("-b", "127.0.0.1:0", "-w", "2", "hello:app"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=e,
            env=base_env(),
            cwd=str(tmp_path),
            start_new_session=True,
        )
    try:
        # systemd-socket-activate starts the service on the first connection
        r = wait_until(lambda: _get(port), 20, every=0.1, what="activated server")
        assert r.status_code == 200 and r.text == "Hello, world!\n"
        log = err.read_text()
        assert f"Listening at: http://127.0.0.1:{port}" in log, log
        assert log.count("Listening at:") == 1, "the inherited socket replaces --bind"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _get(port: int):
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    except requests.RequestException:
        return None


def test_sd_notify_ready_reloading_stopping(greenhorn, tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(0.2)
        messages: list[str] = []

        def received(needle: str) -> bool:
            try:
                while True:
                    messages.append(notify.recv(4096).decode())
            except TimeoutError:
                pass
            return any(needle in m for m in messages)

        s = greenhorn("hello:app", "-w", "2", env={"NOTIFY_SOCKET": str(path)})
        wait_until(lambda: received("READY=1"), 15, what=f"READY=1 in {messages}")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=" in ready
        workers = set(s.wait_workers(2))
        s.send_signal(signal.SIGHUP)
        wait_until(lambda: received("RELOADING=1"), 15, what=f"RELOADING=1 in {messages}")
        reloading = next(m for m in messages if "RELOADING=1" in m)
        assert "MONOTONIC_USEC=" in reloading
        s.wait_workers(2, exclude=workers, timeout=20)
        wait_until(
            lambda: sum("READY=1" in m for m in messages) >= 2 or received("@@"),
            15,
            what=f"second READY=1 in {messages}",
        )
        t0 = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - t0 < 10
        wait_until(lambda: received("STOPPING=1"), 5, what=f"STOPPING=1 in {messages}")
