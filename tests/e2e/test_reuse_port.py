"""``--reuse-port``: each worker listens on a socket of its own (SO_REUSEPORT), as gunicorn's
workers do, so the kernel spreads new connections over the workers; the master's socket
stays in the group, so the address keeps answering while a worker restarts (issue 21)."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import wait_until

pytestmark = pytest.mark.e2e


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:``port`` (/proc/net/tcp, state 0A)."""
    local = f"0100007F:{port:04X}"
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":
                found.add(fields[9])
    return found


def owned_by(pid: int, inodes: set[str]) -> set[str]:
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            mine.add(target[8:-1])
    return mine


def pid_of(server) -> int:
    return int(server.get("/").json()["pid"])


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_each_worker_has_its_own_socket(greenhorn, worker_class):
    if worker_class == "gevent":
        pytest.importorskip("gevent")
    s = greenhorn("-w", "2", "-k", worker_class, "--reuse-port", "echo:app")
    workers = s.wait_workers(2)
    inodes = wait_until(
        lambda: (lambda i: i if len(i) == 3 else None)(listening_inodes(s.port)), 10
    )
    master_own = owned_by(s.pid, inodes)
    assert len(master_own) == 1, "the master keeps its shared socket"
    own = [owned_by(pid, inodes) - master_own for pid in workers]
    assert all(len(o) == 1 for o in own) and own[0] != own[1], own
    served = {pid_of(s) for _ in range(40)}  # new connections, spread by the kernel
    assert served == set(workers), (served, workers)

    # a worker that stops takes its socket with it; the address keeps answering
    os.kill(workers[0], signal.SIGTERM)
    wait_until(lambda: len(s.wait_workers(2)) == 2 and workers[0] not in s.worker_pids(), 15)
    assert all(s.get("/").status_code == 200 for _ in range(20))
    assert len(listening_inodes(s.port)) == 3
    assert s.stop() == 0


def test_without_reuse_port_the_workers_share_one_socket(greenhorn):
    s = greenhorn("-w", "2", "echo:app")
    s.wait_workers(2)
    assert len(listening_inodes(s.port)) == 1
