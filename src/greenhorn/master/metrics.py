"""Prometheus metrics and health endpoints, served by the master itself (``--metrics-bind``).

Why in the master: the master already sees every worker's scoreboard (``ipc/scoreboard.py``: shared
memory the workers write with single-word stores), so a scrape costs the workers nothing, needs
no per-request IPC, and keeps answering while a worker is stuck or being replaced. Workers never
hold the listener (close-on-exec, and ``close_in_child()`` after fork).

The listener is a non-blocking ``endpoints.StreamEndpoint`` woven into the master's
``select`` loop, so a slow, silent or hostile client can never stall worker supervision;
every connection serves exactly one request (``Connection: close``).

Routes: ``GET|HEAD /metrics`` (text exposition format 0.0.4), ``/livez`` (200 while the master
loop turns), ``/readyz`` (200 once the workers are up, 503 before and while stopping).
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from greenhorn.config.addresses import parse_address
from greenhorn.http.fields import TCHAR
from greenhorn.ipc.scoreboard import STATUS_CLASSES
from greenhorn.master.endpoints import StreamEndpoint
from greenhorn.master.listeners import BindError

__all__ = ["CONTENT_TYPE", "MetricsServer", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD = 8192  # bytes of request head the metrics listener reads before answering 431
BACKLOG = 64


# -- Prometheus text format -----------------------------------------------------------------

WORKER_STATES = ("booting", "idle", "busy", "retiring", "aborting")
Sample = tuple[str, Mapping[str, str], float]  # (name suffix, labels, value)

# name (after "greenhorn_") → (type, help). Order here is the order of the output.
FAMILIES: Mapping[str, tuple[str, str]] = {
    "up": ("gauge", "1 while the master loop runs."),
    "ready": ("gauge", "1 when the workers are up and the master is not stopping (/readyz)."),
    "info": ("gauge", "Constant 1, labelled with the version and the worker class."),
    "uptime_seconds": ("gauge", "Seconds since the master started."),
    "requests_total": ("counter", "Requests answered, by status class."),
    "requests_rejected_total": (
        "counter",
        "Requests refused before the application was called (malformed, too large, too slow).",
    ),
    "response_bytes_total": ("counter", "Response body bytes sent."),
    "request_duration_seconds": (
        "histogram",
        "Seconds from the request head to the last byte of the response.",
    ),
    "in_flight_requests": ("gauge", "Requests being served right now."),
    "workers": ("gauge", "Worker processes, by state."),
    "workers_target": ("gauge", "Number of workers the master aims to run."),
    "worker_restarts_total": ("counter", "Workers replaced, by reason."),
    "accept_queue_length": ("gauge", "Connections waiting in the kernel accept queue."),
    "worker_rss_bytes": ("gauge", "Resident memory of each live worker, in bytes."),
    "worker_requests_total": ("counter", "Requests served by each live worker."),
    "websocket_connections": ("gauge", "WebSocket connections open right now (asgi workers)."),
    "websocket_connections_total": ("counter", "WebSocket connections accepted (asgi workers)."),
}


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: backslash, quote, newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers as integers; floats as Go/Prometheus spell them (+Inf, -Inf, NaN)."""
    if isinstance(value, int):  # bool included
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _family(lines: list[str], name: str, samples: Iterable[Sample]) -> None:
    kind, help_text = FAMILIES[name]
    full = "greenhorn_" + name
    lines.append(f"# HELP {full} {_escape_help(help_text)}")
    lines.append(f"# TYPE {full} {kind}")
    for suffix, labels, value in samples:
        text = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
        series = f"{full}{suffix}{{{text}}}" if text else full + suffix
        lines.append(f"{series} {format_value(value)}")


def _one(value: float, **labels: str) -> Sample:
    return ("", labels, value)


def _histogram(totals: Mapping[str, Any], buckets: list[float]) -> list[Sample]:
    """Per-bucket counts (as the scoreboard keeps them) → cumulative ``_bucket`` samples."""
    counts = [int(n) for n in totals.get("histogram", ())]
    samples: list[Sample] = []
    running = 0
    for bound, count in zip(buckets, counts, strict=False):
        running += count
        samples.append(("_bucket", {"le": format_value(float(bound))}, running))
    if not buckets or not math.isinf(float(buckets[-1])):
        samples.append(("_bucket", {"le": "+Inf"}, sum(counts)))
    samples.append(("_sum", {}, float(totals.get("duration_sum", 0.0))))
    samples.append(("_count", {}, sum(counts)))
    return samples


def render(status: Mapping[str, Any]) -> str:
    """``Arbiter.status()`` → Prometheus text exposition format 0.0.4 (pure)."""
    master = status["master"]
    workers = list(status.get("workers", ()))
    totals = status.get("totals", {})
    by_status = totals.get("status", {})
    states = dict.fromkeys(WORKER_STATES, 0)
    for w in workers:
        states[str(w.get("state"))] = states.get(str(w.get("state")), 0) + 1
    ready = bool(master.get("ready")) and master.get("state") != "stopping"
    version, worker_class = str(master.get("version", "")), str(master.get("worker_class", ""))
    restarts = sorted(status.get("restarts", {}).items())
    backlog = [(str(k), int(v)) for k, v in status.get("backlog", {}).items() if v is not None]
    buckets = [float(b) for b in status.get("buckets", ())]

    out: list[str] = []
    _family(out, "up", [_one(1)])
    _family(out, "ready", [_one(int(ready))])
    _family(out, "info", [_one(1, version=version, worker_class=worker_class)])
    _family(out, "uptime_seconds", [_one(float(master.get("uptime", 0.0)))])
    _family(
        out, "requests_total", [_one(int(by_status.get(k, 0)), status=k) for k in STATUS_CLASSES]
    )
    _family(out, "requests_rejected_total", [_one(int(totals.get("rejected", 0)))])
    _family(out, "response_bytes_total", [_one(int(totals.get("bytes_out", 0)))])
    _family(out, "request_duration_seconds", _histogram(totals, buckets))
    _family(out, "in_flight_requests", [_one(sum(int(w.get("in_flight", 0)) for w in workers))])
    _family(out, "websocket_connections", [_one(int(totals.get("websockets_open", 0)))])
    _family(out, "websocket_connections_total", [_one(int(totals.get("websockets_total", 0)))])
    _family(out, "workers", [_one(n, state=s) for s, n in states.items()])
    _family(out, "workers_target", [_one(int(master.get("workers_target", 0)))])
    _family(out, "worker_restarts_total", [_one(int(n), reason=str(r)) for r, n in restarts])
    _family(out, "accept_queue_length", [_one(n, listener=name) for name, n in backlog])
    rss = [_one(int(w["rss"]), pid=str(w["pid"])) for w in workers if w.get("rss") is not None]
    _family(out, "worker_rss_bytes", rss)
    served = [_one(int(w.get("requests", 0)), pid=str(w["pid"])) for w in workers]
    _family(out, "worker_requests_total", served)
    return "\n".join(out) + "\n"


# -- the HTTP side --------------------------------------------------------------------------

_TOKEN = re.compile(f"[{TCHAR}]+".encode())  # RFC 9110 token, as http/fields.py has it
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
StatusFn = Callable[[], Mapping[str, Any]]


def http_reply(
    code: int,
    body: str,
    *,
    head_only: bool = False,
    content_type: str = "text/plain; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    data = body.encode("utf-8")
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
        *extra,
    ]
    head = f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + (b"" if head_only else data)


def _parse_request_line(line: bytes) -> tuple[bytes, bytes] | None:
    """(method, path without query) or None if the line is not HTTP/1.x."""
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if not (_TOKEN.fullmatch(method) and _TARGET.fullmatch(target) and _VERSION.fullmatch(version)):
        return None
    return method, target.split(b"?", 1)[0].split(b"#", 1)[0]


def answer(data: bytes, eof: bool, status_fn: StatusFn) -> bytes | None:
    """One request's bytes so far → the reply (or None: wait for more). Pure but for
    ``status_fn``, which is called only for /metrics and /readyz. Lines may end in CRLF or
    LF; header lines are checked for shape only (nothing here needs their values)."""
    lines = data.split(b"\n")[:-1]  # the last piece has no newline yet
    if not lines:
        return None
    parsed = _parse_request_line(lines[0].rstrip(b"\r"))
    if parsed is None:
        return http_reply(400, "bad request\n")
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            break
        name, colon, _ = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return http_reply(400, "bad request\n")
    else:
        return http_reply(400, "bad request\n") if eof else None
    method, path = parsed
    head_only = method == b"HEAD"
    if path not in (b"/metrics", b"/livez", b"/readyz"):
        return http_reply(404, "not found\n", head_only=head_only)
    if method not in (b"GET", b"HEAD"):
        return http_reply(405, "method not allowed\n", extra=[("Allow", "GET, HEAD")])
    if path == b"/livez":
        return http_reply(200, "ok\n", head_only=head_only)
    try:
        status = status_fn()
        if path == b"/metrics":
            return http_reply(200, render(status), head_only=head_only, content_type=CONTENT_TYPE)
        master = status["master"]
        state = str(master.get("state", ""))
    except Exception as exc:  # a broken status must not take the master down
        return http_reply(500, f"internal error: {type(exc).__name__}\n", head_only=head_only)
    if master.get("ready") and state != "stopping":
        return http_reply(200, "ready\n", head_only=head_only)
    return http_reply(503, f"not ready ({state})\n", head_only=head_only)


class MetricsServer(StreamEndpoint):
    """The ``--metrics-bind`` listener. ``name`` is ``http://HOST:PORT`` with the real port;
    ``status`` is ``Arbiter.status`` (what /metrics and /readyz report).

    Raises ``greenhorn.master.listeners.BindError`` (one-line ``str()``) when the address is
    not ``HOST:PORT`` or cannot be bound.
    """

    def __init__(self, bind: str, status: StatusFn) -> None:
        try:
            address = parse_address(bind)
        except ValueError as exc:
            raise BindError(f"metrics_bind: {exc}")
        if address.kind != "tcp":
            raise BindError(f"metrics_bind: {bind!r} is not HOST:PORT")
        host, port = address.host or "0.0.0.0", address.port or 0
        try:
            infos = socket.getaddrinfo(
                host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise BindError(f"metrics_bind: cannot resolve {host!r}: {exc.strerror}")
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
            sock.set_inheritable(False)
            real_host, real_port = sock.getsockname()[:2]
        except OSError as exc:
            sock.close()
            raise BindError(
                f"Cannot bind metrics listener {bind}: {exc.strerror or exc}", exc.errno
            )
        shown = f"[{real_host}]" if family == socket.AF_INET6 else real_host
        self.port: int = real_port
        self.status = status
        super().__init__(
            sock,
            self._answer,
            name=f"http://{shown}:{real_port}",
            max_request=MAX_HEAD,
            overflow_reply=http_reply(431, "request too large\n"),
        )

    def _answer(self, data: bytes, eof: bool) -> bytes | None:
        return answer(data, eof, self.status)
