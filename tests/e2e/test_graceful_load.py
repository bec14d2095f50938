"""HUP, TERM and USR2 under keep-alive load lose no request, on every worker type (issue 19:
gthread dropped 10-19 in-flight keep-alive requests on HUP and 22 on USR2 + TERM under
``wrk -c50``; the sync worker lost 1-16 at TERM; gunicorn lost none).

What "lose" means is what ``keepalive_load.KeepAliveLoad`` counts: a request sent on an
established connection without a complete answer. Connections refused once a full stop has
closed the port are not failed requests.

A stopping worker answers the requests in flight with ``Connection: close`` and closes an
idle keep-alive connection only between requests, after a short drain; a full stop
closes the port without resetting a connection the kernel had already accepted.
"""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

from conftest import alive, children, wait_until
from keepalive_load import KeepAliveLoad

pytestmark = pytest.mark.e2e


def _needs(lib: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(lib) is None, reason=f"needs {lib}")


KINDS = [
    pytest.param("sync", id="sync"),
    pytest.param("gthread", id="gthread"),
    pytest.param("gevent", id="gevent", marks=_needs("gevent")),
    pytest.param("eventlet", id="eventlet", marks=_needs("eventlet")),
    pytest.param("asgi", id="asgi"),
]


def flags(kind: str) -> list[str]:
    app = "asgiapps:hello" if kind == "asgi" else "hello:app"
    threads = ["--threads", "4"] if kind == "gthread" else []
    return ["-k", kind, "-w", "2", *threads, "--keep-alive", "5", app]


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("sig", ["HUP", "TERM", "USR2"])
@pytest.mark.parametrize("kind", KINDS)
def test_no_request_fails_under_keep_alive_load(greenhorn, tmp_path, kind, sig):
    pidfile = tmp_path / "app.pid"
    s = greenhorn(*flags(kind), "-p", str(pidfile), "--graceful-timeout", "15")
    old_workers = set(s.wait_workers(2))
    load = KeepAliveLoad(s.port, clients=8)
    try:
        load.served(200)
        if sig == "HUP":
            s.send_signal(signal.SIGHUP)
            s.wait_workers(2, exclude=old_workers, timeout=30)
            wait_until(lambda: not set(s.worker_pids()) & old_workers, 30, what="old gone")
            load.served(200)
        elif sig == "TERM":
            s.send_signal(signal.SIGTERM)
            assert s.proc.wait(30) == 0
            wait_until(lambda: load.refused, 10, what="the port closed")
        else:  # USR2, then TERM to the old master (gunicorn's upgrade procedure)
            s.send_signal(signal.SIGUSR2)
            second = tmp_path / "app.pid.2"
            new = wait_until(lambda: _pid(second), 20, what="the new master's pid file")
            assert isinstance(new, int)
            wait_until(
                lambda: len([p for p in children(new) if alive(p)]) == 2, 30, what="new workers"
            )
            load.served(200)
            s.send_signal(signal.SIGTERM)
            assert s.proc.wait(30) == 0
            load.served(200)
            assert alive(new)
    finally:
        load.stop()
    assert load.failures == [], (
        f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    )
