"""StatsD metrics, emitted by a logger subclass exactly where gunicorn's ``Statsd`` logger does.

Why it exists: ``--statsd-host`` turns the logger into a statsD client so that dashboards
built for gunicorn keep working: same metric names (``gunicorn.requests``,
``gunicorn.request.duration``, ``gunicorn.request.status.<code>``, ``gunicorn.workers``,
``gunicorn.log.<level>``), same datagram layout (``name:value|type``, counters with ``|@1.0``,
dogstatsd tags as ``|#tags``). Sending is fire-and-forget over a non-blocking datagram
socket: a missing or slow collector never raises into, or blocks, the server.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from greenhorn.observe.logger import Logger, setting, text

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.http.parser import Request
    from greenhorn.observe.accesslog import Response

DEFAULT_PORT = 8125
RECONNECT_INTERVAL = 5.0  # seconds between attempts to reach a unix-socket collector

# gunicorn's "extra" protocol: log(..., extra={"metric": m, "value": v, "mtype": t}).
METRIC_KEY, VALUE_KEY, TYPE_KEY = "metric", "value", "mtype"


def parse_statsd_address(value: object) -> tuple[int, str | tuple[str, int]]:
    """``(family, address)`` from ``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH``/``unix://PATH``
    or an already-parsed ``(host, port)`` tuple / unix path (gunicorn's validated forms)."""
    if isinstance(value, tuple | list):
        name, number = str(value[0]), int(value[1])
        if name == "unix":  # gunicorn's reading of the ambiguous "unix:PORT"
            return socket.AF_INET, ("unix", number)
        return (socket.AF_INET6 if ":" in name else socket.AF_INET), (name, number)
    text = str(value)
    if text.startswith("/"):  # a bare path: what gunicorn's validator leaves for unix:PATH
        return socket.AF_UNIX, text
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"invalid statsd_host {text!r}: empty unix socket path")
        return socket.AF_UNIX, path
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"invalid statsd_host {text!r}")
        port = tail[1:]
        family = socket.AF_INET6
    else:
        host, _, port = text.partition(":")
        family = socket.AF_INET
    if port and not port.isdigit():
        raise ValueError(f"invalid port {port!r} in statsd_host {text!r}")
    return family, ((host or "localhost").lower(), int(port) if port else DEFAULT_PORT)


def normalize_prefix(prefix: str | None) -> str:
    """``"app"`` -> ``"app."``; empty stays empty; trailing dots collapse to one."""
    prefix = (prefix or "").rstrip(".")
    return f"{prefix}." if prefix else ""


class StatsdClient:
    """A connected datagram socket that sends statsD lines and swallows every failure."""

    def __init__(self, address: object, prefix: str = "", tags: str = "") -> None:
        self.family, self.address = parse_statsd_address(address)
        self.prefix = normalize_prefix(prefix)
        self.suffix = f"|#{tags}" if tags else ""
        self.sock: socket.socket | None = None
        self.last_error: str | None = None
        self._next_attempt = 0.0
        self._connect()

    def _connect(self) -> None:
        self._next_attempt = time.monotonic() + RECONNECT_INTERVAL
        sock = None
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(self.address)
        except OSError as exc:
            if sock is not None:
                sock.close()
            self.last_error = str(exc)
            return
        self.sock = sock

    def send(self, payload: str) -> None:
        """Send one metric line (prefix and tags added); never raises, never blocks."""
        if self.sock is None:
            # Only a unix socket path can appear later; a host name is never looked up again
            # here, because a DNS query could block the request path.
            if self.family != socket.AF_UNIX or time.monotonic() < self._next_attempt:
                return
            self._connect()
            if self.sock is None:
                return
        try:
            self.sock.send(f"{self.prefix}{payload}{self.suffix}".encode("ascii", "replace"))
        except OSError as exc:  # refused, buffer full, collector gone: drop the sample
            self.last_error = str(exc)
            if self.family == socket.AF_UNIX and not isinstance(exc, BlockingIOError):
                self.close()  # the collector's socket may come back under the same path
                self._next_attempt = time.monotonic() + RECONNECT_INTERVAL

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class StatsdLogger(Logger):
    """The default logger plus statsD metrics; picked by ``create`` when statsd_host is set."""

    def __init__(self, cfg: Config) -> None:
        host = setting(cfg, "statsd_host")
        self.statsd = StatsdClient(
            host, text(cfg, "statsd_prefix") or "", text(cfg, "dogstatsd_tags") or ""
        )
        super().__init__(cfg)
        if self.statsd.sock is None:
            Logger.warning(self, "statsd: cannot use %s: %s", host, self.statsd.last_error)

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        self.access_enabled = True  # request metrics need access() even without a log line

    # -- error log, counted -------------------------------------------------------------

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        super().critical(msg, *args, **kwargs)
        self.increment("gunicorn.log.critical")

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        super().error(msg, *args, **kwargs)
        self.increment("gunicorn.log.error")

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        super().warning(msg, *args, **kwargs)
        self.increment("gunicorn.log.warning")

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        super().exception(msg, *args, **kwargs)
        self.increment("gunicorn.log.exception")

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def log(self, level: int | str, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` (when non-empty) and emit the metric described by ``extra``, if any."""
        extra = kwargs.get("extra")
        if isinstance(extra, Mapping):
            self._emit_extra(extra)
        if msg:
            super().log(level, msg, *args, **kwargs)

    def _emit_extra(self, extra: Mapping[str, Any]) -> None:
        metric, value, kind = extra.get(METRIC_KEY), extra.get(VALUE_KEY), extra.get(TYPE_KEY)
        if not metric or value is None:
            return
        if kind == "gauge":
            self.gauge(metric, value)
        elif kind == "counter":
            self.increment(metric, value)
        elif kind == "histogram":
            self.histogram(metric, value)
        elif kind == "timer":
            self.timer(metric, value)

    # -- access: request metrics --------------------------------------------------------

    def access(
        self, req: Request, resp: Response, environ: Mapping[str, Any], request_time: float
    ) -> None:
        super().access(req, resp, environ, request_time)
        self.timer("gunicorn.request.duration", round(request_time * 1_000_000) / 1000)
        self.increment("gunicorn.requests")
        self.increment(f"gunicorn.request.status.{resp.status_code}")

    # -- statsD primitives --------------------------------------------------------------

    def increment(self, name: str, value: int = 1, sampling_rate: float = 1.0) -> None:
        self.statsd.send(f"{name}:{value}|c|@{sampling_rate}")

    def decrement(self, name: str, value: int = 1, sampling_rate: float = 1.0) -> None:
        self.statsd.send(f"{name}:-{value}|c|@{sampling_rate}")

    def gauge(self, name: str, value: float) -> None:
        self.statsd.send(f"{name}:{value}|g")

    def histogram(self, name: str, value_ms: float) -> None:
        self.statsd.send(f"{name}:{value_ms}|h")

    def timer(self, name: str, value_ms: float) -> None:
        self.statsd.send(f"{name}:{value_ms}|ms")
