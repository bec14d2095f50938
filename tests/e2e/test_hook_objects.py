"""Hooks receive gunicorn's objects, at gunicorn's moments (issue 21).

tests/apps/hook_recorder.py is a config file whose every hook writes what it received; the
same file runs under gunicorn in tests/parity/. Here, against the real greenhorn process:

- the server, worker and request objects carry gunicorn's public attributes (server:
  ``timeout``, ``master_name``...; worker: ``sockets``, ``aborted``, ``notify()``,
  ``tmp.notify()``...; request: ``trailers``, ``body``, ``scheme``, ``peer_addr``,
  ``remote_addr``, ``req_number``), and a request keeps what ``pre_request`` set on it;
- ``worker_exit(server, worker)`` gets the server (it got None);
- ``nworkers_changed`` runs at boot (``new, None``, before ``on_starting``) and on every
  HUP (before ``on_reload``), as gunicorn 27 calls it (it never ran at boot or on HUP).
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from conftest import APPS, wait_until

pytestmark = pytest.mark.e2e

HOOKS = str(APPS / "hook_recorder.py")


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def two_keepalive_requests(port: int) -> bytes:
    """A chunked POST with a trailer, then a GET, on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_hook_objects_and_moments(greenhorn, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    server = greenhorn(
        "-k", "gthread", "--threads", "2", "-c", HOOKS, "echo:app",
        env={"HOOK_LOG": str(hook_log)},
    )  # fmt: skip
    [first] = server.wait_workers(1)
    assert two_keepalive_requests(server.port).count(b"HTTP/1.1 200 OK") == 2
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: server.worker_pids() and first not in server.worker_pids(), 15)
    server.send_signal(signal.SIGTTIN)
    server.wait_workers(2)
    assert server.stop() == 0
    seen = records(hook_log)
    names = [r["hook"] for r in seen]

    # nworkers_changed: at boot before on_starting, on HUP before on_reload, on TTIN
    changes = [(r["new"], r["old"]) for r in seen if r["hook"] == "nworkers_changed"]
    assert changes == [(1, None), (1, 1), (2, 1)], changes
    assert names[:2] == ["nworkers_changed", "on_starting"]
    reload_at = names.index("on_reload")
    assert names[reload_at - 1] == "nworkers_changed"

    # gunicorn's public attributes on every object handed to a hook
    for r in seen:
        assert r.get("server_missing", []) == [], r
        assert r.get("worker_missing", []) == [], r
        assert r.get("request_missing", []) == [], r
    exits = [r for r in seen if r["hook"] == "worker_exit"]
    assert len(exits) >= 2 and all(r["server_is_none"] is False for r in exits), exits

    # the request: req_number counts per connection, trailers once the body is read
    pre = {r["path"]: r for r in seen if r["hook"] == "pre_request"}
    post = {r["path"]: r for r in seen if r["hook"] == "post_request"}
    assert pre["/first"]["req_number"] == 1 and pre["/second"]["req_number"] == 2
    assert pre["/first"]["scheme"] == "http" and pre["/first"]["peer_is_address"] is True
    assert post["/first"]["trailers"] == [["X-SUM", "5"]]
    assert post["/second"]["trailers"] == []
    assert all(r["kept_state"] for r in post.values())


def test_asgi_requests_in_hooks(greenhorn, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    server = greenhorn("-k", "asgi", "-c", HOOKS, "asgiapps:hello", env={"HOOK_LOG": str(hook_log)})
    assert server.get("/a").status_code == 200
    assert server.stop() == 0
    requests = [r for r in records(hook_log) if r["hook"] in ("pre_request", "post_request")]
    assert requests and all(r.get("request_missing", []) == [] for r in requests)
    assert all(r["kept_state"] for r in requests if r["hook"] == "post_request")
