"""The binary upgrade (USR2) through the real executable, under load, as an operator runs it.

gunicorn's documented procedure, which greenhorn keeps:

1. ``greenhorn -D -p app.pid ...`` (or in the foreground);
2. ``kill -USR2 $(cat app.pid)``: a new master starts on the same sockets, writes
   ``app.pid.2`` and boots its workers; both generations serve;
3. ``kill -WINCH OLD`` (daemonized only) retires the old workers, then ``kill -QUIT OLD``;
   or ``kill -TERM OLD`` at once. The new master logs "Master has been promoted." and
   takes ``app.pid`` over.

A client counts every failed request from before the USR2 to after the promotion: none is
allowed. A new master that cannot boot leaves the old one serving, untouched.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import alive, base_env, children, command, wait_until

pytestmark = pytest.mark.e2e


class Load:
    """Clients that each send one request per connection, as fast as they are answered,
    and count the answers that are not a whole 200."""

    def __init__(self, port: int, clients: int = 3) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _one(self) -> str | None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        if data.startswith(b"HTTP/1.1 200 ") and b"Hello, world!" in data:
            return None
        return repr(data[:80])

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                failure = self._one()
            except OSError as exc:
                failure = repr(exc)
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)

    def served(self, more: int, timeout: float = 10.0) -> None:
        """Wait until ``more`` further requests have been answered."""
        target = self.ok + more
        wait_until(lambda: self.ok >= target, timeout, what=f"{more} more answered requests")

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(15)


class Site:
    """One greenhorn started by hand (daemonized or not), its pid file and error log."""

    def __init__(self, tmp_path: Path, *args: str, daemon: bool) -> None:
        self.pidfile = tmp_path / "app.pid"
        self.second = tmp_path / "app.pid.2"
        self.errlog = tmp_path / "error.log"
        argv = command(
            *(["-D"] if daemon else []),
            "-b",
            "127.0.0.1:0",
            "-p",
            str(self.pidfile),
            "--error-logfile",
            str(self.errlog),
            "--no-control-socket",
            *args,
        )
        self.proc = subprocess.Popen(
            argv,
            cwd=str(tmp_path),
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if daemon:
            assert self.proc.wait(20) == 0, "the launching process exits once detached"
        self.old = self.pid_in(self.pidfile, 20)
        self.group = os.getpgid(self.old)  # both masters and every worker: cleanup by group
        found = wait_until(lambda: re.findall(r"Listening at: http://127.0.0.1:(\d+)", self.log))
        self.port = int(found[0])  # type: ignore[index]

    @property
    def log(self) -> str:
        return self.errlog.read_text(errors="replace") if self.errlog.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 15.0) -> None:
        wait_until(
            lambda: re.search(pattern, self.log),
            timeout,
            what=f"{pattern!r} in\n{self.log[-3000:]}",
        )

    @staticmethod
    def pid_in(path: Path, timeout: float = 15.0) -> int:
        def read() -> int | None:
            try:
                return int(path.read_text().strip())
            except (OSError, ValueError):
                return None

        return wait_until(read, timeout, what=f"a pid in {path}")  # type: ignore[return-value]

    @staticmethod
    def workers(master: int) -> list[int]:
        return [p for p in children(master) if alive(p)]

    def cleanup(self) -> None:
        for pid in {self.old, *self.masters()}:
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not any(alive(p) for p in [*self.masters(), self.old]), 20)
        except AssertionError:
            pass
        try:
            os.killpg(self.group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def masters(self) -> list[int]:
        pids = []
        for path in (self.pidfile, self.second):
            try:
                pids.append(int(path.read_text().strip()))
            except (OSError, ValueError):
                pass
        return pids


PROCEDURES = [
    pytest.param(True, "sync", "winch-quit", id="daemon-sync-winch-quit"),
    pytest.param(True, "gthread", "winch-quit", id="daemon-gthread-winch-quit"),
    pytest.param(True, "sync", "term", id="daemon-sync-term"),
    pytest.param(False, "sync", "term", id="foreground-sync-term"),
    pytest.param(False, "gthread", "term", id="foreground-gthread-term"),
]


@pytest.mark.parametrize(("daemon", "worker", "ending"), PROCEDURES)
def test_usr2_upgrade_under_load_loses_no_request(tmp_path, daemon, worker, ending):
    site = Site(tmp_path, "-w", "2", "-k", worker, "hello:app", daemon=daemon)
    load = None
    try:
        old = site.old
        wait_until(lambda: len(site.workers(old)) == 2, 15, what="the old workers")
        old_workers = set(site.workers(old))
        load = Load(site.port)
        load.served(20)

        os.kill(old, signal.SIGUSR2)
        new = site.pid_in(site.second)
        # not daemonized again: the new master is the old one's child, in its session
        assert new != old and new in children(old), "the new master stays the old one's child"
        assert os.getsid(new) == os.getsid(old)
        wait_until(lambda: len(site.workers(new)) == 2, 20, what="the new workers")
        assert site.pid_in(site.pidfile) == old, "app.pid names the old master until it leaves"

        # one upgrade at a time: a second USR2 is refused by both masters
        os.kill(old, signal.SIGUSR2)
        os.kill(new, signal.SIGUSR2)
        site.wait_for_log(rf"\[{old}\] \[WARNING\] USR2 signal ignored\. Child exists\.")
        site.wait_for_log(rf"\[{new}\] \[WARNING\] USR2 signal ignored\. Parent exists\.")
        assert [p for p in children(old) if p not in old_workers] == [new], "no third master"
        assert "Master has been promoted" not in site.log
        load.served(20)

        if ending == "winch-quit":
            os.kill(old, signal.SIGWINCH)
            wait_until(lambda: site.workers(old) == [new], 20, what="the old workers retired")
            load.served(20)
            os.kill(old, signal.SIGQUIT)
        else:
            os.kill(old, signal.SIGTERM)
        wait_until(lambda: not alive(old), 30, what="the old master gone")
        site.wait_for_log(rf"\[{new}\] \[INFO\] Master has been promoted\.")
        wait_until(lambda: site.pid_in(site.pidfile) == new, 10, what="app.pid taken over")
        assert not site.second.exists()
        load.served(50)
        load.stop()
        assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:5]}"
        assert len(site.workers(new)) == 2
        assert "Traceback" not in site.log, site.log[-3000:]

        os.kill(new, signal.SIGTERM)
        wait_until(lambda: not alive(new), 30, what="the new master's exit")
        wait_until(lambda: not site.pidfile.exists(), 10, what="app.pid removed")
    finally:
        if load is not None:
            load.stop()
        site.cleanup()


def test_a_new_master_that_cannot_boot_leaves_the_old_one_serving(tmp_path):
    conf = tmp_path / "site.conf.py"
    conf.write_text("workers = 2\n")
    site = Site(tmp_path, "-c", str(conf), "hello:app", daemon=False)
    load = None
    try:
        old = site.old
        wait_until(lambda: len(site.workers(old)) == 2, 15, what="the old workers")
        old_workers = set(site.workers(old))
        load = Load(site.port)
        load.served(20)

        # a broken deploy: the new master's workers fail to boot, so it exits with 3
        conf.write_text(
            "workers = 2\ndef post_worker_init(worker):\n    raise RuntimeError('broken deploy')\n"
        )
        os.kill(old, signal.SIGUSR2)
        site.wait_for_log(r"New master \(pid:\d+\) exited with code 3; this master keeps serving")
        load.served(20)
        assert alive(old) and set(site.workers(old)) == old_workers
        assert site.pid_in(site.pidfile) == old and not site.second.exists()
        assert "Master has been promoted" not in site.log

        # fixed: the next USR2 is accepted and the upgrade completes
        conf.write_text("workers = 2\n")
        os.kill(old, signal.SIGUSR2)
        new = site.pid_in(site.second)
        wait_until(lambda: len(site.workers(new)) == 2, 20, what="the new workers")
        os.kill(old, signal.SIGTERM)
        site.wait_for_log(rf"\[{new}\] \[INFO\] Master has been promoted\.", 30)
        wait_until(lambda: site.pid_in(site.pidfile) == new, 10, what="app.pid taken over")
        load.served(30)
        load.stop()
        assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:5]}"
    finally:
        if load is not None:
            load.stop()
        site.cleanup()


def test_metrics_port_moves_to_the_new_master(tmp_path):
    """With --metrics-bind on a fixed port the new master cannot bind it while the old one
    holds it: it binds it once promoted, instead of exiting (which made upgrades fail)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    site = Site(tmp_path, "--metrics-bind", f"127.0.0.1:{metrics_port}", "hello:app", daemon=False)
    try:
        old = site.old
        wait_until(lambda: len(site.workers(old)) == 1, 15, what="the old worker")
        os.kill(old, signal.SIGUSR2)
        new = site.pid_in(site.second)
        wait_until(lambda: len(site.workers(new)) == 1, 20, what="the new worker")
        site.wait_for_log(rf"\[{new}\] \[WARNING\] Metrics at 127.0.0.1:{metrics_port}: still")
        os.kill(old, signal.SIGTERM)
        site.wait_for_log(rf"\[{new}\] \[INFO\] Metrics at: http://127.0.0.1:{metrics_port}", 30)

        def metrics_from_new() -> bool:
            with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            return f'pid="{site.workers(new)[0]}"'.encode() in data

        wait_until(metrics_from_new, 10, what="/metrics served by the new master")
    finally:
        site.cleanup()
