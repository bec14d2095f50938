"""Classes written for gunicorn run unchanged under greenhorn's master (issue 21).

The real ``uvicorn.workers.UvicornWorker`` (uvicorn-worker), aiohttp's ``GunicornWebWorker``,
a subclass of gunicorn's ``SyncWorker`` and a logger subclassing ``gunicorn.glogging.Logger``
(tests/apps/gunicorn_classes.py), with gunicorn installed as the user's library: greenhorn
builds them with gunicorn's constructor, hands them gunicorn's ``cfg`` and logger API, hears
their ``notify()`` as its heartbeat, and keeps gunicorn's exit codes.

Before this, greenhorn's master crashed on each of them (``'Logger' object has no attribute
'max_requests'`` for the workers, ``... no attribute 'gauge'`` for the logger).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import time
from pathlib import Path

import pytest

from conftest import APPS, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("gunicorn") is None, reason="gunicorn (dev extra) missing"
    ),
]

HOOKS = str(APPS / "hook_recorder.py")


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(importlib.util.find_spec("uvicorn_worker") is None, reason="no uvicorn-worker")
def test_uvicorn_worker_serves_and_its_notify_is_the_heartbeat(greenhorn, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    server = greenhorn(
        "-k", "uvicorn_worker.UvicornWorker", "--timeout", "2", "-c", HOOKS,
        "gunicorn_classes:asgi_app",
        env={"HOOK_LOG": str(hook_log)},
    )  # fmt: skip
    assert server.get("/hi").text == "asgi /hi\n"
    [worker] = server.wait_workers(1)
    # the worker notifies every timeout/2 seconds: greenhorn's master hears it, so a worker
    # idle for twice --timeout is still the same worker
    time.sleep(4.5)
    assert server.worker_pids() == [worker]
    assert "WORKER TIMEOUT" not in server.log
    # the hooks received the UvicornWorker object, with gunicorn's public attributes
    seen = {r["hook"]: r for r in _records(hook_log)}
    for hook in ("pre_fork", "post_fork", "post_worker_init"):
        assert seen[hook]["worker_class"] == "UvicornWorker", seen[hook]
        assert seen[hook]["worker_missing"] == [], seen[hook]
    # a blocked event loop stops notifying: aborted after --timeout, replaced
    with pytest.raises(OSError):
        server.get("/block", timeout=5)
    server.wait_for_log(rf"WORKER TIMEOUT \(pid:{worker}\)", timeout=15)
    wait_until(lambda: server.worker_pids() and worker not in server.worker_pids(), 15)
    assert wait_until(lambda: server.get("/again").text, 15) == "asgi /again\n"
    assert server.stop() == 0


@pytest.mark.skipif(importlib.util.find_spec("uvicorn_worker") is None, reason="no uvicorn-worker")
def test_uvicorn_lifespan_failure_stops_the_server_with_gunicorns_status(greenhorn):
    server = greenhorn(
        "-k", "uvicorn_worker.UvicornWorker", "gunicorn_classes:failing_startup",
        wait=False,
    )  # fmt: skip
    assert server.proc.wait(30) == 3  # gunicorn 27.0.1: 3 (the worker failed to boot)
    assert "Worker failed to boot" in server.log


def test_sync_worker_subclass_and_gunicorn_logger_subclass(greenhorn, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    server = greenhorn(
        "-k", "gunicorn_classes:CountingSync", "--logger-class", "gunicorn_classes.MarkedLogger",
        "--access-logfile", "-", "--max-requests", "3", "-c", HOOKS, "gunicorn_classes:wsgi_app",
        env={"HOOK_LOG": str(hook_log)},
    )  # fmt: skip
    [first] = server.wait_workers(1)  # it served the fixture's readiness probe, "/"
    assert server.get("/a").text == "wsgi /a\n"
    assert server.get("/b").text == "wsgi /b\n"
    # gunicorn's SyncWorker counts max_requests itself and leaves (status 0): replaced
    wait_until(lambda: server.worker_pids() and first not in server.worker_pids(), 15)
    assert wait_until(lambda: server.get("/c").text, 15) == "wsgi /c\n"
    server.wait_for_log(r"CountingSync serving /c \(request 1\)")
    # the custom logger's access() got gunicorn's (resp, req, environ, timedelta)
    server.wait_for_log(r"MARKED access GET /c 200 OK \d+\.\d{3}")
    wait_until(lambda: '"GET /c HTTP/1.1" 200' in server.out, 10)
    assert "Autorestarting worker after current request." in server.log
    seen = _records(hook_log)
    requests = [r for r in seen if r["hook"] == "pre_request"]
    assert [r["path"] for r in requests] == ["/", "/a", "/b", "/c"]
    exits = [r for r in seen if r["hook"] == "worker_exit"]
    assert exits and exits[0]["server_is_none"] is False
    assert exits[0]["worker_class"] == "CountingSync"
    # QUIT: gunicorn's handler runs worker_int and exits 0
    server.send_signal(signal.SIGQUIT)
    assert server.proc.wait(20) == 0
    assert any(r["hook"] == "worker_int" for r in _records(hook_log))


def test_gunicorn_logger_subclass_under_greenhorns_own_workers(greenhorn):
    server = greenhorn(
        "--logger-class", "gunicorn_classes.MarkedLogger", "--access-logfile", "-",
        "-k", "gthread", "--threads", "2",
        "gunicorn_classes:wsgi_app",
    )  # fmt: skip
    assert server.get("/x").text == "wsgi /x\n"
    server.wait_for_log(r"MARKED access GET /x 200 OK")
    wait_until(lambda: '"GET /x HTTP/1.1" 200 8' in server.out, 10)
    server.send_signal(signal.SIGTTIN)  # the master reports the count (a gauge it lacks)
    server.wait_workers(2)
    assert server.stop() == 0
    assert "Traceback" not in server.log


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None, reason="aiohttp missing")
def test_aiohttp_gunicorn_web_worker(greenhorn):
    server = greenhorn(
        "-k", "aiohttp.worker.GunicornWebWorker", "--access-logfile", "-",
        "gunicorn_classes:aiohttp_app()",
    )  # fmt: skip
    assert server.get("/z").text == "aiohttp /z\n"
    wait_until(lambda: '"GET /z HTTP/1.1" 200' in server.out, 10)
    assert server.stop() == 0
    assert "Worker exiting" in server.log
