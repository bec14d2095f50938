"""Start and stop the servers under test: greenhorn, gunicorn (and uvicorn for ASGI), same
settings, same app.

Why a module of its own: every figure depends on both servers being started the same way
(same app module, worker class, worker count, no access log) on a free loopback port, found
ready before load starts, and stopped by PID afterwards, whatever happened in between.
greenhorn takes gunicorn's flags, so one argument list serves both; only the interpreter and
the module (``-m greenhorn`` / ``-m gunicorn``) differ. uvicorn gets the same settings in its
own spelling (``--workers``, ``--host``/``--port``, ``--app-dir``, no access log).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from procstat import children, descendants

__all__ = ["Probe", "Server", "ServerFailed", "ServerKind", "free_port"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class ServerFailed(Exception):
    """The server did not start or did not answer the probe (message: why, with log tail)."""


@dataclass(frozen=True)
class ServerKind:
    """One server implementation: its name, interpreter, what follows the interpreter on the
    command line (``("-m", "gunicorn")``), its version, and the import path to start it with
    (``detect.import_path``; empty: start the interpreter as it is)."""

    name: str
    python: str
    entry: tuple[str, ...]
    version: str
    path: tuple[str, ...] = ()
    cli: str = "gunicorn"  # whose command line: "gunicorn" (greenhorn too) or "uvicorn"


@dataclass(frozen=True)
class Probe:
    """One request that must succeed before load starts (the scenario's own request)."""

    method: str = "GET"
    body: bytes = b""
    expect_length: int | None = None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process tree, started by ``start`` and always stopped by ``stop``."""

    def __init__(
        self,
        kind: ServerKind,
        app: str,
        apps_dir: str,
        flags: list[str],
        cpus: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.kind = kind
        self.cpus = set(cpus)  # the master and its workers run on these CPUs (empty: any)
        self.port = free_port()
        # -S: no site start-up (.pth hooks differ between interpreters); the path comes
        # from PYTHONPATH instead (see start)
        self.cmd = [kind.python, *(("-S",) if kind.path else ()), *kind.entry]
        self.workers = _flag_value(flags, "-w", 1)
        if kind.cli == "uvicorn":  # the same settings, spelled uvicorn's way
            if self.workers == 1:  # uvicorn serves in its main process: no worker children
                self.workers = 0
            rest = _without(flags, "-w")
            self.cmd += ["--app-dir", apps_dir, "--host", "127.0.0.1", "--port", str(self.port)]
            self.cmd += ["--log-level", "warning", "--no-access-log"]
            self.cmd += ["--workers", str(max(1, self.workers)), *rest, app]
        else:
            self.cmd += ["--chdir", apps_dir]
            self.cmd += ["-b", f"127.0.0.1:{self.port}", "--log-level", "warning", *flags, app]
        self.proc: subprocess.Popen[bytes] | None = None
        self.known_pids: dict[int, str] = {}  # pid -> start time, so a reused pid is spared
        fd, self.log_path = tempfile.mkstemp(prefix=f"bench-{kind.name}-", suffix=".log")
        os.close(fd)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        pids = [p for p in children(self.pid) if not _is_helper(p)]
        self._remember(pids)
        return pids

    def _remember(self, pids: list[int]) -> None:
        for pid in pids:
            started = _start_time(pid)
            if started is not None:
                self.known_pids.setdefault(pid, started)

    def start(self, probe: Probe, timeout: float = START_TIMEOUT) -> None:
        """Start the server; return once all workers run and the probe succeeds."""
        env = {k: v for k, v in os.environ.items() if not k.endswith("_CMD_ARGS")}
        if self.kind.path:
            env["PYTHONPATH"] = os.pathsep.join(self.kind.path)
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the fd
            cpus = self.cpus
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with status {self.proc.returncode}: {self.log_tail()}")
            if len(self.worker_pids()) == self.workers:
                try:
                    self._probe(probe)
                    # the probe may have hit a worker still booting: wait for the full set
                    if len(self.worker_pids()) == self.workers:
                        return
                except (OSError, http.client.HTTPException, ServerFailed) as exc:
                    last_error = str(exc)
            time.sleep(0.1)
        raise ServerFailed(f"not ready after {timeout:.0f}s ({last_error}): {self.log_tail()}")

    def _probe(self, probe: Probe) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(probe.method, "/", body=probe.body or None)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise ServerFailed(f"probe answered {resp.status}")
        if probe.expect_length is not None and len(data) != probe.expect_length:
            raise ServerFailed(f"probe body {len(data)} bytes, expected {probe.expect_length}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """TERM the master and wait; KILL it and any worker it left behind after ``timeout``."""
        proc = self.proc
        if proc is not None:
            self._stop(proc, timeout)
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def _stop(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        if proc.poll() is None:
            self._remember(descendants(proc.pid))
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        deadline = time.monotonic() + 5.0
        for pid, started in self.known_pids.items():  # workers exit with their master
            while _start_time(pid) == started and time.monotonic() < deadline:
                time.sleep(0.05)
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                text = f.read().strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` (proc(5) field 22) while it runs; None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return fields[19]


def _is_helper(pid: int) -> bool:
    """A child that is not a worker: multiprocessing's resource tracker (uvicorn --workers)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"multiprocessing.resource_tracker" in f.read()
    except OSError:
        return False


def _without(flags: list[str], name: str) -> list[str]:
    """``flags`` without ``name`` and its value."""
    out, skip = [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag == name:
            skip = True
        else:
            out.append(flag)
    return out


def _flag_value(flags: list[str], name: str, default: int) -> int:
    for i, flag in enumerate(flags[:-1]):
        if flag == name:
            return int(flags[i + 1])
    return default
