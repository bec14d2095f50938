"""Shared fixtures: start the real ``greenhorn`` executable and talk to it over sockets.

Rules every test relies on: servers bind 127.0.0.1 port 0 and we read the real port from
the "Listening at:" log line; every wait has a timeout; every process we start we stop by
its PID (the master runs in its own session, so its process group id is its PID and a
final SIGKILL to the group cannot miss a worker).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
CLEAN_ENV = (
    "GREENHORN_CMD_ARGS",
    "GUNICORN_CMD_ARGS",
    "WEB_CONCURRENCY",
    "PORT",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "GREENHORN_FD",
    "GUNICORN_FD",
    "GREENHORN_PID",
    "NOTIFY_SOCKET",
    "FORWARDED_ALLOW_IPS",
)


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    every: float = 0.02,
    what: str = "condition",
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def proc_status(pid: int, key: str, path: str = "status") -> int:
    """The first number on the ``key:`` line of ``/proc/<pid>/<path>`` (Uid, Rss...)."""
    with open(f"/proc/{pid}/{path}") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} line in /proc/{pid}/{path}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def http_request(
    host: str, port: int, data: bytes, timeout: float = 10.0, family: int = socket.AF_INET
) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``), return all bytes."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class Server:
    """A running greenhorn master started by the ``greenhorn`` fixture."""

    def __init__(self, proc: subprocess.Popen, err_path: Path, out_path: Path) -> None:
        self.proc = proc
        self.err_path = err_path
        self.out_path = out_path
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        rx = re.compile(pattern)

        def found() -> list[str] | None:
            hits = rx.findall(self.log)
            if len(hits) >= count:
                return hits
            if self.proc.poll() is not None:
                hits = rx.findall(self.log)
                if len(hits) >= count:
                    return hits
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                    + self.log[-3000:]
                )
            return None

        return wait_until(found, timeout, what=f"log {pattern!r}\n{self.log[-2000:]}")  # type: ignore[return-value]

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def get(self, path: str = "/", **kw: object):
        import requests

        kw.setdefault("timeout", 10)
        return requests.get(self.url(path), **kw)  # type: ignore[arg-type]

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        return http_request(self.host, self.port, data, timeout)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        return s

    def worker_pids(self) -> list[int]:
        return [p for p in children(self.pid) if alive(p)]

    def wait_workers(
        self, n: int, timeout: float = 15.0, exclude: set[int] | None = None
    ) -> list[int]:
        def ok() -> list[int] | None:
            pids = [p for p in self.worker_pids() if not exclude or p not in exclude]
            return pids if len(pids) == n else None

        return wait_until(ok, timeout, what=f"{n} workers (have {self.worker_pids()})")  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the master and wait for it; SIGKILL the whole group on timeout."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.proc.wait(10)
                raise AssertionError(f"server did not stop within {timeout}s on {sig}")
        return self.proc.returncode

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def command(*args: str, python_flags: Sequence[str] = ()) -> list[str]:
    """The real executable, with the fixture apps importable."""
    return [sys.executable, *python_flags, "-m", "greenhorn", "--pythonpath", str(APPS), *args]


def launch(
    argv: list[str],
    stem: Path,
    env: dict[str, str] | None = None,
    cwd: str | Path = ".",
    python_flags: Sequence[str] = (),
    wrapper: Sequence[str] = (),
) -> Server:
    """Start the real executable in its own session, stderr/stdout in ``<stem>.err/.out``;
    ``wrapper``: a command that runs it (e.g. ``prlimit --nofile=256 --``)."""
    err, out = stem.with_suffix(".err"), stem.with_suffix(".out")
    with open(err, "wb") as e, open(out, "wb") as o:
        proc = subprocess.Popen(
            [*wrapper, *command(*argv, python_flags=python_flags)],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            env=base_env(**(env or {})),
            cwd=str(cwd),
            start_new_session=True,
        )
    return Server(proc, err, out)


@pytest.fixture
def greenhorn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``greenhorn("hello:app", "-w", "2")`` → a started, ready ``Server``.

    Keyword arguments: ``env`` (extra environment), ``cwd``, ``wait`` (False: return at
    once, e.g. to check a boot failure), ``ready_path`` (request sent to check readiness,
    None to skip), ``timeout``, ``python_flags`` (interpreter options, e.g. ``("-S",)``),
    ``wrapper`` (a command that runs greenhorn, e.g. ``("prlimit", "--nofile=256", "--")``).
    """
    started: list[Server] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        wait: bool = True,
        ready_path: str | None = "/",
        timeout: float = 20.0,
        bind: bool = True,
        python_flags: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> Server:
        argv = list(args)
        if bind and not any(a in ("-b", "--bind") or a.startswith("--bind=") for a in argv):
            argv = ["-b", "127.0.0.1:0", *argv]
        stem = tmp_path / f"server{len(started)}"
        server = launch(
            argv, stem, env=env, cwd=cwd or tmp_path, python_flags=python_flags, wrapper=wrapper
        )
        started.append(server)
        if wait:
            m = server.wait_for_log(r"Listening at: https?://[^\s:]+:(\d+)", timeout)
            server.port = int(m[0])
            if ready_path is not None:
                wait_until(
                    lambda: _answers(server, ready_path),
                    timeout,
                    every=0.05,
                    what=f"server answering {ready_path}\n{server.log[-2000:]}",
                )
        return server

    yield start

    for server in started:
        if server.proc.poll() is None:
            try:
                server.stop(signal.SIGTERM, timeout=15)
            except AssertionError:
                pass
        server.kill_group()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)


def _answers(server: Server, path: str) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.log[-3000:]}")
    try:
        data = server.raw(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=2
        )
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 ")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A throwaway CA, server and client certificates (tests/apps/edge/tls_certs.py)."""
    path = APPS / "edge" / "tls_certs.py"
    spec = importlib.util.spec_from_file_location("greenhorn_tls_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.make_certs(tmp_path_factory.mktemp("certs"))
