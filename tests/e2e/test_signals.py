"""Signals sent to the real master, each with its observable effect."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time

import requests

from conftest import alive, children, read_all, wait_until


def slow_request(s, seconds: float, path: str = "/") -> socket.socket:
    c = s.connect()
    c.sendall(f"GET {path}?t={seconds} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return c


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def test_term_refuses_new_serves_queued_and_finishes_in_flight(greenhorn):
    s = greenhorn("slow:app", "-w", "1", "--graceful-timeout", "20", ready_path="/?t=0")
    in_flight = slow_request(s, 2)
    time.sleep(0.3)  # the only worker is now busy
    queued = [slow_request(s, 0) for _ in range(3)]  # accepted by the kernel, not yet by us
    time.sleep(0.2)
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)

    def refused() -> bool:
        # a SYN that comes while the last worker drains the queue is dropped (the port
        # takes no new connection then, so that none is reset): not answered, not refused
        try:
            with socket.create_connection(("127.0.0.1", s.port), timeout=0.25):
                return False
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False

    wait_until(refused, 5, every=0.005, what="new connections refused")
    refused_after = time.monotonic() - t0
    assert refused_after < 1.0, f"new connections still accepted {refused_after:.3f}s after TERM"
    assert status_of(read_all(in_flight)) == 200
    for c in queued:
        assert status_of(read_all(c)) == 200, "a queued connection was reset, not served"
        c.close()
    in_flight.close()
    assert s.proc.wait(20) == 0


def test_quick_stop_and_graceful_timeout_are_bounded(greenhorn):
    for sig in (signal.SIGINT, signal.SIGQUIT):
        s = greenhorn("slow:app", "-w", "2", ready_path="/?t=0")
        c = slow_request(s, 30)
        time.sleep(0.3)
        t0 = time.monotonic()
        assert s.stop(sig, timeout=10) == 0
        assert time.monotonic() - t0 < 5
        c.close()
    s = greenhorn("slow:app", "-w", "1", "--graceful-timeout", "1", ready_path="/?t=0")
    c = slow_request(s, 30)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - t0 < 8
    assert not [p for p in children(s.pid) if alive(p)]
    c.close()


def test_ttin_ttou_change_the_worker_count(greenhorn):
    s = greenhorn("hello:app", "-w", "2")
    s.wait_workers(2)
    s.send_signal(signal.SIGTTIN)
    s.wait_workers(3)
    # standard signals do not queue: send one at a time, as an operator would
    s.send_signal(signal.SIGTTOU)
    s.wait_workers(2)
    s.send_signal(signal.SIGTTOU)
    s.wait_workers(1)
    s.send_signal(signal.SIGTTOU)  # never below one
    time.sleep(1.5)
    assert len(s.wait_workers(1)) == 1
    assert s.get("/").status_code == 200


def test_hup_replaces_workers_under_load_without_a_failed_request(greenhorn, tmp_path):
    conf = tmp_path / "greenhorn.conf.py"
    conf.write_text("workers = 2\n")
    s = greenhorn("hello:app", "-c", str(conf))
    old = set(s.wait_workers(2))
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def load() -> None:
        while not done.is_set():
            try:
                r = requests.get(s.url("/"), timeout=10)
                if r.status_code != 200:
                    failures.append(str(r.status_code))
                count[0] += 1
            except requests.RequestException as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    conf.write_text("workers = 3\n")
    s.send_signal(signal.SIGHUP)
    new = s.wait_workers(3, exclude=old, timeout=20)
    wait_until(lambda: not (set(s.worker_pids()) & old), 20, what="old workers gone")
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(15)
    assert not failures, failures[:5]
    assert count[0] > 20
    assert len(new) == 3
    assert "Handling signal: hup" in s.log


def test_usr1_reopens_log_files(greenhorn, tmp_path):
    access = tmp_path / "access.log"
    s = greenhorn("hello:app", "-w", "1", "--access-logfile", str(access))
    s.get("/first")
    wait_until(lambda: access.exists() and "/first" in access.read_text(), 5)
    rotated = tmp_path / "access.log.1"
    os.rename(access, rotated)
    s.send_signal(signal.SIGUSR1)
    s.wait_for_log("Handling signal: usr1")

    probes = iter(range(1000))

    def logged_in_new_file() -> bool:
        # the worker reopens when its control thread gets the USR1 the master forwards: a
        # probe sent before that still lands in the rotated file, so each probe is unique
        path = f"/second-{next(probes)}"
        s.get(path)
        return access.exists() and path in access.read_text()

    wait_until(logged_in_new_file, 10, every=0.2, what="access line in the reopened file")
    s.get("/third")  # once reopened, every line goes to the new file only
    wait_until(lambda: "/third" in access.read_text(), 5, what="/third in the new file")
    assert "/third" not in rotated.read_text()


def test_winch_is_ignored_when_not_daemonized(greenhorn):
    s = greenhorn("hello:app", "-w", "2")
    before = set(s.wait_workers(2))
    s.send_signal(signal.SIGWINCH)
    time.sleep(1.0)
    assert set(s.worker_pids()) == before


def test_usr2_reexec_hands_over_sockets_and_pidfile(greenhorn, tmp_path):
    pidfile = tmp_path / "app.pid"
    s = greenhorn("echo:app", "-w", "1", "--pid", str(pidfile))
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() == str(s.pid), 5)
    s.send_signal(signal.SIGUSR2)
    second = tmp_path / "app.pid.2"
    wait_until(lambda: second.exists() and second.read_text().strip(), 15, what="pidfile.2")
    new_master = int(second.read_text())
    assert new_master != s.pid and new_master in children(s.pid)
    wait_until(lambda: len([p for p in children(new_master) if alive(p)]) == 1, 15)
    assert pidfile.read_text().strip() == str(s.pid)
    # stop the old master: the new one keeps serving and takes the pid file over
    os.kill(s.pid, signal.SIGTERM)
    assert s.proc.wait(20) == 0
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() == str(new_master), 15)
    assert not second.exists()
    r = requests.get(s.url("/"), timeout=10)
    assert r.status_code == 200
    os.kill(new_master, signal.SIGTERM)
    wait_until(lambda: not alive(new_master), 20, what="new master exit")
    wait_until(lambda: not pidfile.exists(), 5, what="pidfile removed")


def test_connection_refused_after_stop(greenhorn):
    s = greenhorn("hello:app")
    port = s.port
    assert s.stop() == 0
    with socket.socket() as c:
        assert c.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def test_hup_with_a_broken_new_generation_keeps_the_old_workers(greenhorn, tmp_path):
    conf = tmp_path / "g.conf.py"
    conf.write_text("workers = 2\n")
    s = greenhorn("hello:app", "-c", str(conf))
    old = set(s.wait_workers(2))
    conf.write_text(
        "workers = 2\ndef post_worker_init(worker):\n    raise RuntimeError('broken deploy')\n"
    )
    s.send_signal(signal.SIGHUP)
    s.wait_for_log(r"Reload failed: new workers cannot boot")
    time.sleep(1.0)
    assert s.proc.poll() is None, "the master keeps running"
    assert set(s.worker_pids()) == old
    assert s.get("/").status_code == 200
