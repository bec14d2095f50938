"""`--metrics-bind`: the real master serves /metrics, /livez and /readyz, and the numbers move
with the traffic (scraped with requests, as Prometheus would)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from typing import Any

import pytest
import requests

from conftest import Server, wait_until

pytestmark = pytest.mark.e2e

SERIES = re.compile(r"^(\S+) (\S+)$")


def start(greenhorn: Any, *args: str, **kw: Any) -> tuple[Server, str]:
    """A master with a metrics listener on a free port; returns it and the metrics URL."""
    server = greenhorn(*args, "--metrics-bind", "127.0.0.1:0", **kw)
    port = int(server.wait_for_log(r"Metrics at: http://127\.0\.0\.1:(\d+)")[0])
    return server, f"http://127.0.0.1:{port}"


def scrape(base: str) -> dict[str, float]:
    reply = requests.get(base + "/metrics", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    out = {}
    for line in reply.text.splitlines():
        if line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, line
        out[m[1]] = float(m[2].replace("Inf", "inf"))
    return out


INF_BUCKET = 'greenhorn_request_duration_seconds_bucket{le="+Inf"}'
OK = 'greenhorn_requests_total{status="2xx"}'
COUNT = "greenhorn_request_duration_seconds_count"


def test_counters_move_with_traffic(greenhorn: Any) -> None:
    server, base = start(greenhorn, "hello:app", "-w", "2")
    workers = server.wait_workers(2)
    idle = 'greenhorn_workers{state="idle"}'
    before = wait_until(
        lambda: (m := scrape(base)).get(idle) == 2 and m.get("greenhorn_ready") == 1 and m,
        what="2 idle workers and ready (the master flips ready on its next loop turn)",
    )
    assert isinstance(before, dict)
    assert before["greenhorn_up"] == 1 and before["greenhorn_ready"] == 1
    assert before["greenhorn_workers_target"] == 2
    assert before[INF_BUCKET] == before[COUNT]
    sent = 25
    with requests.Session() as session:
        for _ in range(sent):
            assert session.get(server.url("/"), timeout=5).status_code == 200

    def grown() -> dict[str, float] | None:
        now = scrape(base)
        return now if now[OK] - before[OK] == sent else None

    after = wait_until(grown, what="2xx counter to grow by the requests sent")
    assert isinstance(after, dict)
    assert after[COUNT] - before[COUNT] == sent
    assert after[INF_BUCKET] - before[INF_BUCKET] == sent
    assert (
        after["greenhorn_request_duration_seconds_sum"]
        > before["greenhorn_request_duration_seconds_sum"]
    )
    assert after["greenhorn_response_bytes_total"] - before["greenhorn_response_bytes_total"] == (
        sent * len(b"Hello, world!\n")
    )
    per_worker = [after.get(f'greenhorn_worker_requests_total{{pid="{p}"}}') for p in workers]
    assert None not in per_worker
    assert sum(per_worker) == after[OK]  # type: ignore[arg-type]
    for pid in workers:
        assert after[f'greenhorn_worker_rss_bytes{{pid="{pid}"}}'] > 1_000_000
    assert after['greenhorn_requests_total{status="5xx"}'] == 0
    listener = f'greenhorn_accept_queue_length{{listener="http://127.0.0.1:{server.port}"}}'
    assert after[listener] >= 0


def test_counts_of_a_recycled_worker_are_kept(greenhorn: Any) -> None:
    # A sync worker buffers its counters and publishes them when idle, once a second and
    # when it exits: a worker leaving at max_requests must not take its last counts along.
    server, base = start(greenhorn, "hello:app", "-w", "1", "--max-requests", "4")
    first = server.wait_workers(1)[0]
    # the baseline must hold the readiness probe's request (one), which the worker
    # publishes once idle: a scrape in between made the count look one too high
    before = wait_until(
        lambda: (m := scrape(base)).get("greenhorn_ready") == 1 and m.get(OK, 0) >= 1 and m
    )
    assert isinstance(before, dict)
    sent = 0
    while first in server.worker_pids() and sent < 20:
        with requests.Session() as session:  # a new connection each time
            if session.get(server.url("/"), timeout=5).status_code == 200:
                sent += 1
    server.wait_workers(1, exclude={first})
    wait_until(
        lambda: scrape(base)[OK] - before[OK] == sent,
        what=f"all {sent} requests counted, those of the retired worker too",
    )


def test_in_flight_and_busy_workers(greenhorn: Any) -> None:
    server, base = start(greenhorn, "slow:app", "-w", "2", ready_path="/?t=0")
    idle = 'greenhorn_workers{state="idle"}'
    wait_until(lambda: scrape(base)[idle] == 2, what="both workers booted")
    client = server.connect()
    client.sendall(b"GET /?t=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        busy = wait_until(
            lambda: (m := scrape(base))["greenhorn_in_flight_requests"] == 1 and m,
            what="one request in flight",
        )
        assert isinstance(busy, dict)
        assert busy['greenhorn_workers{state="busy"}'] == 1
        assert busy['greenhorn_workers{state="idle"}'] == 1
    finally:
        client.close()


def test_health_routes(greenhorn: Any) -> None:
    server, base = start(greenhorn, "hello:app", "-w", "1")
    wait_until(lambda: requests.get(base + "/readyz", timeout=5).status_code == 200, what="ready")
    live = requests.get(base + "/livez", timeout=5)
    assert (live.status_code, live.text, live.headers["Connection"]) == (200, "ok\n", "close")
    assert requests.get(base + "/nope", timeout=5).status_code == 404
    head = requests.head(base + "/metrics", timeout=5)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 100
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    assert server.proc.poll() is None


def test_silent_metrics_client_does_not_stall_the_master(greenhorn: Any) -> None:
    server, base = start(greenhorn, "hello:app", "-w", "1")
    port = int(base.rsplit(":", 1)[1])
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    try:
        t0 = time.monotonic()
        assert requests.get(base + "/livez", timeout=5).status_code == 200
        assert server.get("/").status_code == 200
        assert time.monotonic() - t0 < 3
        for s in silent:  # dropped after about two seconds, without a reply
            assert s.recv(10) == b""
    finally:
        for s in silent:
            s.close()


def test_readyz_turns_503_during_a_graceful_stop(greenhorn: Any) -> None:
    server, base = start(
        greenhorn, "slow:app", "-w", "1", "--graceful-timeout", "20", ready_path="/?t=0"
    )
    wait_until(lambda: requests.get(base + "/readyz", timeout=5).status_code == 200, what="ready")
    result: dict[str, bytes] = {}

    def slow() -> None:
        with server.connect(timeout=20) as c:
            c.sendall(b"GET /?t=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            result["reply"] = c.recv(1024)

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    wait_until(lambda: scrape(base)["greenhorn_in_flight_requests"] == 1, what="slow request")
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("Handling signal: term")
    try:
        reply = requests.get(base + "/readyz", timeout=2)
        outcome: object = reply.status_code
    except requests.ConnectionError as exc:  # the listener is gone: also "not ready"
        outcome = "gone"
        assert "timed out" not in str(exc).lower(), exc
    assert outcome in (503, "gone"), outcome
    assert thread.is_alive(), "the in-flight request should still be running"
    thread.join(20)
    assert result["reply"].startswith(b"HTTP/1.1 200 ")
    assert server.proc.wait(20) == 0


def test_shutdown_delay_keeps_serving_while_not_ready(greenhorn: Any) -> None:
    """--shutdown-delay: after TERM, /readyz says 503 at once, yet new connections are still
    served for the delay; then the graceful stop runs and the master exits 0."""
    server, base = start(greenhorn, "hello:app", "-w", "2", "--shutdown-delay", "3")
    wait_until(lambda: requests.get(base + "/readyz", timeout=5).status_code == 200, what="ready")
    t0 = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("Shutdown delay: serving 3s more while not ready")
    assert requests.get(base + "/readyz", timeout=5).status_code == 503
    served = 0
    while time.monotonic() - t0 < 2.0:  # well inside the delay: a fresh connection each time
        assert server.get("/", timeout=5).status_code == 200
        served += 1
        time.sleep(0.2)
    assert served >= 5
    assert server.proc.wait(20) == 0
    assert time.monotonic() - t0 >= 2.5  # it did wait (out of 3 s) before stopping
    assert "Shutting down: Master" in server.log


@pytest.mark.parametrize("sig, fast", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_shutdown_delay_is_cut_short_by_a_second_signal(
    greenhorn: Any, sig: int, fast: bool
) -> None:
    server = greenhorn("hello:app", "-w", "1", "--shutdown-delay", "60")
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("Shutdown delay")
    t0 = time.monotonic()
    server.send_signal(sig)
    assert server.proc.wait(20) == 0
    assert time.monotonic() - t0 < 15  # not the 60 s delay
    if fast:
        assert "Handling signal: int" in server.log
    else:
        assert "ending the shutdown delay" in server.log


def test_bad_metrics_bind_fails_the_start(greenhorn: Any) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        server = greenhorn("hello:app", "--metrics-bind", f"127.0.0.1:{port}", wait=False)
        assert server.proc.wait(20) != 0
        assert "metrics" in server.log.lower()
    finally:
        holder.close()
