"""Loggers across the gunicorn line, both ways.

Why it exists: a deployment may bring a logger class built on ``gunicorn.glogging.Logger``
(``--logger-class myco.logs.JsonLogger``), and a worker class built on gunicorn's base
class that calls gunicorn's logger API (``log.access(resp, req, environ, request_time)``,
``log.error_log.handlers``). greenhorn's own logger has the same error-log methods but a
different ``access()`` (request first, a float of seconds) and a few more methods (metrics,
``error_stream``, ``capture_output``). Two adapters bridge that:

- ``GuestLogger``: a gunicorn logger object, as greenhorn's master and workers use a
  logger. It calls only the methods gunicorn's ``Logger`` has, and falls back when the
  guest lacks one (no metrics on a plain gunicorn logger, ``error_stream`` found on the
  error log's handlers, ``capture_output`` done by gunicorn's own ``setup``).
- ``GunicornFacade``: greenhorn's logger with gunicorn's API, handed to worker classes
  written for gunicorn when the configured logger is greenhorn's.

``for_gunicorn(log)`` gives a worker class written for gunicorn the right one: the guest
itself when the logger is a gunicorn class, else the facade.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from greenhorn.config.gunicorn_cfg import GunicornConfig, is_subclass_of
from greenhorn.observe.logger import ACCESS_LOGGER, ERROR_LOGGER, Logger

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.http.parser import Request
    from greenhorn.observe.accesslog import Response

__all__ = ["GuestLogger", "GunicornFacade", "for_gunicorn", "is_gunicorn_logger"]


def is_gunicorn_logger(cls: object) -> bool:
    """A class built on ``gunicorn.glogging.Logger`` (not imported to find out)."""
    return is_subclass_of(cls, "gunicorn.glogging", "Logger")


def _seconds(request_time: object) -> float:
    if isinstance(request_time, datetime.timedelta):
        return request_time.total_seconds()
    return float(request_time) if isinstance(request_time, int | float) else 0.0


class _ResponseAsGunicorn:
    """greenhorn's response as gunicorn's logger reads one: ``status`` is the status line."""

    __slots__ = ("headers", "sent", "status", "status_code")

    def __init__(self, resp: Response) -> None:
        self.status_code = resp.status_code
        self.status = getattr(resp, "status", None) or str(resp.status_code)
        self.sent = resp.sent
        self.headers = resp.headers


class _GunicornExchange:
    """gunicorn's request and response as greenhorn's access log reads them: gunicorn's
    error answers set only ``status``; neither has the queueing times of the JSON line."""

    __slots__ = ("headers", "method", "path", "query", "sent", "status_code", "uri", "version")

    def __init__(self, req: object, resp: object) -> None:
        self.method = str(getattr(req, "method", "-") or "-")
        self.uri = str(getattr(req, "uri", "") or "")
        self.path = str(getattr(req, "path", "") or "")
        self.query = str(getattr(req, "query", "") or "")
        version = getattr(req, "version", (1, 1))
        self.version = version if isinstance(version, tuple) else (1, 1)
        headers = getattr(req, "headers", [])
        self.headers = list(headers) if isinstance(headers, list | tuple) else []
        code = getattr(resp, "status_code", None)
        if not isinstance(code, int):
            status = str(getattr(resp, "status", "") or "")
            code = int(status.split()[0]) if status[:3].isdigit() else 0
        self.status_code = code
        sent = getattr(resp, "sent", 0)
        self.sent = sent if isinstance(sent, int) else 0

    started_at = 0.0
    accepted_at = 0.0


class _ResponseHeaders:
    """The response part of ``_GunicornExchange`` (greenhorn's ``Response`` protocol)."""

    __slots__ = ("headers", "sent", "status_code")

    def __init__(self, exchange: _GunicornExchange, resp: object) -> None:
        self.status_code = exchange.status_code
        self.sent = exchange.sent
        headers = getattr(resp, "headers", [])
        self.headers: list[tuple[str, str]] = (
            list(headers) if isinstance(headers, list | tuple) else []
        )


class GuestLogger(Logger):
    """A logger class written for gunicorn, used where greenhorn uses its logger."""

    def __init__(self, guest: object, cfg: Config) -> None:  # not Logger's: the guest set up
        self.guest = guest
        self.cfg = cfg
        self.error_log = _logging_logger(guest, "error_log", ERROR_LOGGER)
        self.access_log = _logging_logger(guest, "access_log", ACCESS_LOGGER)
        self.access_enabled = self._access_on()

    def _access_on(self) -> bool:
        enabled = getattr(self.guest, "access_log_enabled", True)
        return bool(enabled() if callable(enabled) else enabled)

    def _call(self, name: str, *args: object, **kwargs: object) -> object:
        method = getattr(self.guest, name, None)
        return method(*args, **kwargs) if callable(method) else None

    def setup(self, cfg: Config) -> None:
        self.cfg = cfg
        self._call("setup", GunicornConfig(cfg))
        self.access_enabled = self._access_on()

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("critical", msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("error", msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("warning", msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("info", msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("debug", msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("exception", msg, *args, **kwargs)

    def log(self, level: int | str, msg: object, *args: Any, **kwargs: Any) -> None:
        self._call("log", level, msg, *args, **kwargs)

    def access(
        self, req: Request, resp: Response, environ: Mapping[str, Any], request_time: float
    ) -> None:
        """gunicorn's order and types: ``access(resp, req, environ, timedelta)``."""
        try:
            delta = datetime.timedelta(seconds=request_time)
            self._call("access", _ResponseAsGunicorn(resp), req, environ, delta)
        except Exception:
            self.exception("Error writing the access log")

    # metrics: gunicorn's Statsd logger has these; a plain gunicorn logger has none of them
    def increment(self, name: str, value: int = 1) -> None:
        self._call("increment", name, value)

    def decrement(self, name: str, value: int = 1) -> None:
        self._call("decrement", name, value)

    def gauge(self, name: str, value: float) -> None:
        self._call("gauge", name, value)

    def histogram(self, name: str, value_ms: float) -> None:
        self._call("histogram", name, value_ms)

    def timer(self, name: str, value_ms: float) -> None:
        if callable(getattr(self.guest, "timer", None)):
            self._call("timer", name, value_ms)
        else:
            self._call("histogram", name, value_ms)

    def capture_output(self) -> None:
        """gunicorn's logger redirects stdout and stderr in its own ``setup``."""

    def reopen_files(self) -> None:
        self._call("reopen_files")

    def close_on_exec(self) -> None:
        self._call("close_on_exec")

    def error_stream(self) -> TextIO | None:
        for handler in self.error_log.handlers:
            stream: TextIO | None = getattr(handler, "stream", None)
            if stream is not None and hasattr(stream, "fileno"):
                return stream
        return None


def _logging_logger(guest: object, attr: str, default: str) -> logging.Logger:
    found = getattr(guest, attr, None)
    return found if isinstance(found, logging.Logger) else logging.getLogger(default)


class GunicornFacade:
    """greenhorn's logger with gunicorn's logger API, for worker classes written for
    gunicorn (``error_log``/``access_log`` are the ``logging`` loggers that write)."""

    def __init__(self, log: Logger) -> None:
        self._log = log
        self.error_log = log.error_log
        self.access_log = log.access_log
        self.cfg = GunicornConfig(log.cfg)

    def __getattr__(self, name: str) -> object:  # metrics and anything else greenhorn's has
        return getattr(self._log, name)

    @property
    def access_log_enabled(self) -> bool:
        return bool(self._log.access_enabled)

    def setup(self, cfg: object) -> None:
        config = cfg.greenhorn if isinstance(cfg, GunicornConfig) else cfg
        self._log.setup(config)  # type: ignore[arg-type]
        self.cfg = GunicornConfig(config)

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.critical(msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.error(msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.warning(msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.info(msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.exception(msg, *args, **kwargs)

    def log(self, lvl: int | str, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.log(lvl, msg, *args, **kwargs)

    def access(self, resp: object, req: object, environ: object, request_time: object) -> None:
        """gunicorn's signature, written by greenhorn's access log (its format and atoms)."""
        if not self._log.access_enabled or not isinstance(environ, Mapping):
            return
        exchange = _GunicornExchange(req, resp)
        view = _ResponseHeaders(exchange, resp)
        self._log.access(exchange, view, environ, _seconds(request_time))  # type: ignore[arg-type]

    def now(self) -> str:
        return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")

    def reopen_files(self) -> None:
        self._log.reopen_files()

    def close_on_exec(self) -> None:
        self._log.close_on_exec()


def for_gunicorn(log: Logger) -> object:
    """The logger a worker class written for gunicorn gets: a gunicorn logger as it is,
    greenhorn's behind gunicorn's API."""
    if isinstance(log, GuestLogger):
        return log.guest
    return GunicornFacade(log)
