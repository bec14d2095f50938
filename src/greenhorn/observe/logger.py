"""The server's error log and access log, wired from gunicorn's logging settings.

Why it exists: the arbiter, the workers and the request handler need one object that knows
where log lines go (stderr, files, syslog, a user's ``logging.config``) and that can reopen
those files after logrotate. This module builds the stdlib ``logging`` handlers from the
settings; rendering of access lines lives in ``greenhorn.observe.accesslog`` and metrics in
``greenhorn.observe.statsd``.

Logger names: greenhorn writes to ``greenhorn.error`` and ``greenhorn.access``; the
``gunicorn.*`` loggers are aliases sharing their handlers and level, so a ``logconfig_dict``
written for gunicorn (also one naming only the gunicorn spelling) and application code that
does ``logging.getLogger("gunicorn.error")`` keep working.

Access targets: ``accesslog`` (a path, ``-`` for stdout, None for none) receives the
``access_log_format`` text, or with ``access_log_json`` one JSON object per line (to stdout
when no ``accesslog`` is set). ``logging.config`` and ``logging.handlers`` are imported only
when a setting needs them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from greenhorn.config.importer import ImportFailed, parse_ref, resolve
from greenhorn.observe.accesslog import DEFAULT_FORMAT, AccessFormat, Clock, json_line
from greenhorn.observe.log_failures import LogFile, LogStream, WriteFailures, to_stderr

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.http.parser import Request
    from greenhorn.observe.accesslog import Response

_monotonic = time.monotonic
ERROR_LOGGER = "greenhorn.error"
ACCESS_LOGGER = "greenhorn.access"
_ALIASES = MappingProxyType({ERROR_LOGGER: "gunicorn.error", ACCESS_LOGGER: "gunicorn.access"})

ERROR_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"
SYSLOG_FORMAT = "[%(process)d] %(message)s"

LOG_LEVELS: Mapping[str, int] = MappingProxyType(
    {
        name.lower(): getattr(logging, name)
        for name in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
    }
)

# syslog(3) facility codes by name ("security" is the deprecated spelling of "auth").
SYSLOG_FACILITIES: Mapping[str, int] = MappingProxyType(
    dict(kern=0, user=1, mail=2, daemon=3, auth=4, security=4, syslog=5, lpr=6, news=7, uucp=8)
    | dict(cron=9, authpriv=10, ftp=11)
    | {f"local{n}": 16 + n for n in range(8)}
)

# Spellings of logger_class that mean "the built-in logger" (statsd is added when configured).
DEFAULT_LOGGER_CLASSES = frozenset(
    {"", "simple", "greenhorn.observe.logger.Logger", "gunicorn.glogging.Logger"}
    | {"greenhorn.logging.Logger"}  # where it lived before greenhorn 0.2
)
STATSD_LOGGER_CLASSES = frozenset(
    {"greenhorn.observe.statsd.StatsdLogger", "gunicorn.instrument.statsd.Statsd"}
    | {"greenhorn.statsd.StatsdLogger"}  # where it lived before greenhorn 0.2
)


class LogConfigError(RuntimeError):
    """A logging setting cannot be applied; ``str()`` is a one-line message."""


def setting(cfg: Config, name: str) -> object:
    """``cfg.<name>``, or the setting's default when the config object does not have it
    (a custom config object, or a gunicorn one without greenhorn's extra settings)."""
    try:
        value: object = getattr(cfg, name)
    except AttributeError:
        from greenhorn.config import Config

        value = getattr(Config(), name)
    return value


def text(cfg: Config, name: str) -> str | None:
    """A setting that is a string or None (``setting``, read as text)."""
    value = setting(cfg, name)
    return None if value is None else str(value)


def default_dict_config() -> dict[str, Any]:
    """The dictConfig base that ``logconfig_dict``/``logconfig_json`` are merged onto.

    Same shape as gunicorn's: a user dict replaces whole top-level keys (``loggers``,
    ``handlers``...), it is not merged deeply.
    """
    generic = {"format": ERROR_FORMAT, "datefmt": DATE_FORMAT, "class": "logging.Formatter"}
    stream = {"class": "logging.StreamHandler", "formatter": "generic"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            ERROR_LOGGER: {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            ACCESS_LOGGER: {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
        "handlers": {
            "console": {**stream, "stream": "ext://sys.stdout"},
            "error_console": {**stream, "stream": "ext://sys.stderr"},
        },
        "formatters": {"generic": generic},
    }


def parse_syslog_address(addr: str) -> tuple[int | None, str | tuple[str, int]]:
    """``(socktype, address)`` for SysLogHandler from gunicorn's ``syslog_addr`` forms.

    ``unix://PATH[#dgram|#stream]`` (no suffix: try datagram, then stream),
    ``udp://HOST[:PORT]``, ``tcp://HOST[:PORT]``; port 514 and host localhost by default.
    """
    if addr.startswith("unix://"):
        path, _, kind = addr[len("unix://") :].partition("#")
        kinds = {"": None, "dgram": socket.SOCK_DGRAM, "stream": socket.SOCK_STREAM}
        if kind not in kinds or not path:
            raise LogConfigError(f"invalid syslog_addr {addr!r}")
        return kinds[kind], path
    scheme, sep, rest = addr.partition("://")
    socktypes = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
    if not sep or scheme not in socktypes:
        raise LogConfigError(
            f"invalid syslog_addr {addr!r}: use unix://PATH, udp://HOST:PORT or tcp://HOST:PORT"
        )
    socktype = socktypes[scheme]
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise LogConfigError(f"invalid syslog_addr {addr!r}")
        port = tail[1:]
    else:
        host, _, port = rest.partition(":")
    if port and not port.isdigit():
        raise LogConfigError(f"invalid port {port!r} in syslog_addr {addr!r}")
    return socktype, ((host or "localhost").lower(), int(port) if port else 514)


def _all_loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    found = [logging.getLogger()]
    found.extend(v for v in list(manager.loggerDict.values()) if isinstance(v, logging.Logger))
    return found


def _file_handlers() -> list[logging.FileHandler]:
    """Every FileHandler attached to any logger (the user's too), each once."""
    seen: dict[int, logging.FileHandler] = {}
    for logger in _all_loggers():
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                seen.setdefault(id(handler), handler)
    return list(seen.values())


def _has_output(logger: logging.Logger, level: int) -> bool:
    """Would a record at ``level`` reach a real handler (through propagation too)?"""
    if logger.disabled or not logger.isEnabledFor(level):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _share(source: logging.Logger, target: logging.Logger) -> None:
    """Make ``target`` write exactly where ``source`` writes.

    The handler list object itself is shared, so a handler added to either name later (by
    application code or its own dictConfig) is seen through both names.
    """
    target.handlers = source.handlers
    target.setLevel(source.level)
    target.propagate = source.propagate
    target.disabled = source.disabled


def _fileconfig_logger_names(path: str) -> set[str]:
    import configparser

    parser = configparser.RawConfigParser()
    parser.read(path)
    keys = parser.get("loggers", "keys", fallback="")
    names = set()
    for key in (k.strip() for k in keys.split(",")):
        section = f"logger_{key}"
        if key and key != "root" and parser.has_option(section, "qualname"):
            names.add(parser.get(section, "qualname"))
    return names


def import_class(path: str) -> type:
    """The class ``logger_class`` names (``module.Class`` or ``module:Class``)."""
    try:
        ref = parse_ref(path)
    except ImportFailed as exc:
        raise LogConfigError(f"invalid logger_class {path!r}: {exc}") from exc
    try:
        obj = resolve(ref)
    except ImportFailed as exc:
        raise LogConfigError(f"cannot import logger_class {path!r}: {exc}") from exc
    if not isinstance(obj, type):
        raise LogConfigError(f"logger_class {path!r} is not a class")
    return obj


class Logger:
    """Error + access logging for the arbiter and workers (gunicorn's ``glogging.Logger``)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.error_log = logging.getLogger(ERROR_LOGGER)
        self.access_log = logging.getLogger(ACCESS_LOGGER)
        self.access_enabled = False
        self._access_active = False
        self._access_format: AccessFormat | None = None
        self._access_json = False
        self._clock = Clock()
        self._lock = threading.Lock()
        self._captured = False
        self._direct: list[LogStream | LogFile] | None = None
        self.setup(cfg)

    # -- configuration ------------------------------------------------------------------

    def setup(self, cfg: Config) -> None:
        """(Re)build handlers from ``cfg``; safe to call again after a config reload."""
        self.cfg = cfg
        level_name = str(setting(cfg, "loglevel")).lower()
        if level_name not in LOG_LEVELS:
            raise LogConfigError(f"invalid loglevel {level_name!r}: use one of {list(LOG_LEVELS)}")
        self._drop_own_handlers()
        for name in (ERROR_LOGGER, ACCESS_LOGGER, *_ALIASES.values()):
            log = logging.getLogger(name)
            log.handlers = list(log.handlers)  # unlink the aliases of a previous setup
            log.propagate = False
        self.error_log.setLevel(LOG_LEVELS[level_name])
        self.access_log.setLevel(logging.INFO)

        configured = self._apply_user_config(cfg)
        for ours, alias in _ALIASES.items():
            ours_log, alias_log = logging.getLogger(ours), logging.getLogger(alias)
            if ours in configured and alias in configured:
                continue  # the user configured both names separately: keep them apart
            if ours in configured:
                _share(ours_log, alias_log)
            elif alias in configured:
                _share(alias_log, ours_log)
            else:
                ours_log.handlers = []  # leftovers of an earlier user config are not ours
                self._install_handlers(ours_log, cfg)
                _share(ours_log, alias_log)

        self._access_json = bool(setting(cfg, "access_log_json"))
        self._access_format = None
        if not self._access_json:
            try:
                self._access_format = AccessFormat(
                    text(cfg, "access_log_format") or DEFAULT_FORMAT, self._clock
                )
            except ValueError as exc:
                raise LogConfigError(str(exc)) from None
        self._access_active = _has_output(self.access_log, logging.INFO)
        self.access_enabled = self._access_active
        self._direct = self._direct_handlers()

    def _direct_handlers(self) -> list[LogStream | LogFile] | None:
        """The access handlers when lines can bypass LogRecord creation, else None.

        Only when every handler is one greenhorn installed for a file or a stream, with the
        plain message format and no level or filter: then writing the line to the stream is
        exactly what the handler would do, at a fraction of the cost.
        """
        log = self.access_log
        handlers = log.handlers
        if not handlers or log.filters or log.propagate:
            return None
        direct: list[LogStream | LogFile] = []
        for handler in handlers:
            if (
                not getattr(handler, "_greenhorn_owned", False)
                or type(handler) not in (LogStream, LogFile)
                or handler.filters
                or handler.level != logging.NOTSET
            ):
                return None
            direct.append(handler)  # type: ignore[arg-type]  # (checked just above)
        return direct

    def _drop_own_handlers(self) -> None:
        for name in (ERROR_LOGGER, ACCESS_LOGGER, *_ALIASES.values()):
            log = logging.getLogger(name)
            for handler in list(log.handlers):
                if getattr(handler, "_greenhorn_owned", False):
                    log.removeHandler(handler)
                    handler.close()

    def _install_handlers(self, log: logging.Logger, cfg: Config) -> None:
        """Attach the handlers the plain settings ask for to one of greenhorn's loggers."""
        if log.name == ERROR_LOGGER:
            target = text(cfg, "errorlog") or "-"
            fmt = logging.Formatter(ERROR_FORMAT, DATE_FORMAT)
            # the error log's own failures are told on stderr (unless it is stderr)
            report = None if target == "-" else to_stderr
            self._add(log, self._target_handler(target, sys.stderr, "error", report), fmt)
            if setting(cfg, "syslog"):
                self._add(log, self._syslog_handler(cfg), self._syslog_formatter(cfg, "error"))
            return
        access = text(cfg, "accesslog")
        if access is None and setting(cfg, "access_log_json"):
            access = "-"
        if access is not None:
            handler = self._target_handler(access, sys.stdout, "access", self._report_failure)
            self._add(log, handler, logging.Formatter())
        if setting(cfg, "syslog") and not setting(cfg, "disable_redirect_access_to_syslog"):
            self._add(log, self._syslog_handler(cfg), self._syslog_formatter(cfg, "access"))

    @staticmethod
    def _add(log: logging.Logger, handler: logging.Handler, fmt: logging.Formatter) -> None:
        handler.setFormatter(fmt)
        handler._greenhorn_owned = True  # type: ignore[attr-defined]
        log.addHandler(handler)

    def _report_failure(self, message: str) -> None:
        """Where a failing access log is reported: the error log."""
        self.error_log.error(message)

    def _target_handler(
        self, target: str, stream: TextIO, kind: str, report: Callable[[str], None] | None
    ) -> logging.Handler:
        """The handler for a log target (``-``: ``stream``), which reports its own write
        failures once (``log_failures``)."""
        if target == "-":
            name = "stdout" if stream is sys.stdout else "stderr"
            return LogStream(stream, WriteFailures(f"the {kind} log ({name})", report))
        try:
            handler = LogFile(target, WriteFailures(f"the {kind} log {target}", report))
        except OSError as exc:
            raise LogConfigError(f"cannot open log file {target!r}: {exc.strerror}") from None
        user, group = getattr(self.cfg, "user", None), getattr(self.cfg, "group", None)
        if isinstance(user, int) and isinstance(group, int) and os.geteuid() == 0:
            try:  # so that workers running as `user` can reopen it after rotation
                os.chown(handler.baseFilename, user, group)
            except OSError:
                pass
        return handler

    @staticmethod
    def _syslog_formatter(cfg: Config, kind: str) -> logging.Formatter:
        proc_name = text(cfg, "proc_name") or getattr(cfg, "default_proc_name", None)
        prefix = text(cfg, "syslog_prefix") or str(proc_name or "greenhorn").replace(":", ".")
        program = f"gunicorn.{prefix}.{kind}".replace("%", "%%")
        return logging.Formatter(f"{program}: {SYSLOG_FORMAT}")

    @staticmethod
    def _syslog_handler(cfg: Config) -> logging.Handler:
        facility_name = str(setting(cfg, "syslog_facility")).lower()
        if facility_name not in SYSLOG_FACILITIES:
            raise LogConfigError(f"unknown syslog_facility {facility_name!r}")
        addr = str(setting(cfg, "syslog_addr"))
        socktype, address = parse_syslog_address(addr)
        import logging.handlers  # loaded only when used (it brings pickle, queue, ...)

        try:
            return logging.handlers.SysLogHandler(
                address=address,
                facility=SYSLOG_FACILITIES[facility_name],
                socktype=socktype,  # type: ignore[arg-type]
            )
        except OSError as exc:
            raise LogConfigError(f"cannot reach syslog at {addr!r}: {exc}") from None

    def _apply_user_config(self, cfg: Config) -> set[str]:
        """Apply logconfig_dict, else logconfig_json, else logconfig; names it configured."""
        user_dict = setting(cfg, "logconfig_dict")
        json_path = text(cfg, "logconfig_json")
        ini_path = text(cfg, "logconfig")
        if isinstance(user_dict, Mapping) and user_dict:
            return self._dict_config(user_dict)
        if json_path:
            try:
                with open(json_path, encoding="utf-8") as fh:
                    loaded = json.load(fh)
            except OSError as exc:
                raise LogConfigError(f"cannot read logconfig_json {json_path!r}: {exc}") from None
            except json.JSONDecodeError as exc:
                raise LogConfigError(f"invalid JSON in logconfig_json {json_path!r}: {exc}")
            if not isinstance(loaded, dict):
                raise LogConfigError(f"logconfig_json {json_path!r} must hold a JSON object")
            return self._dict_config(loaded)
        if ini_path:
            if not os.path.exists(ini_path):
                raise LogConfigError(f"log config {ini_path!r} not found")
            defaults = {"__file__": ini_path, "here": os.path.dirname(ini_path)}
            import configparser
            import logging.config

            try:
                logging.config.fileConfig(
                    ini_path, defaults=defaults, disable_existing_loggers=False
                )
            except (configparser.Error, KeyError, ValueError, TypeError, ImportError) as exc:
                raise LogConfigError(f"invalid log config {ini_path!r}: {exc!r}") from None
            return _fileconfig_logger_names(ini_path)
        return set()

    @staticmethod
    def _dict_config(user: Mapping[str, Any]) -> set[str]:
        config = default_dict_config()
        config.update(user)
        # A user dict that brings its own handlers but keeps our root/loggers must not
        # leave them pointing at handlers that no longer exist (gunicorn fails there).
        handlers = config.get("handlers") or {}
        kept = [config["root"]] if "root" not in user else []
        kept += list(config["loggers"].values()) if "loggers" not in user else []
        for entry in kept:
            entry["handlers"] = [h for h in entry.get("handlers", []) if h in handlers]
        import logging.config  # loaded only for a user's logging config

        try:
            logging.config.dictConfig(config)
        except (AttributeError, ImportError, ValueError, TypeError, KeyError) as exc:
            raise LogConfigError(f"invalid logging config: {exc}") from None
        return set(config.get("loggers") or {})

    # -- error log ----------------------------------------------------------------------

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.error_log.critical(msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.error_log.error(msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.error_log.warning(msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.error_log.info(msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.error_log.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.error_log.exception(msg, *args, **kwargs)

    def log(self, level: int | str, msg: object, *args: Any, **kwargs: Any) -> None:
        if isinstance(level, str):
            level = LOG_LEVELS.get(level.lower(), logging.INFO)
        self.error_log.log(level, msg, *args, **kwargs)

    # -- access log ---------------------------------------------------------------------

    def access(
        self, req: Request, resp: Response, environ: Mapping[str, Any], request_time: float
    ) -> None:
        """Write one access line; never raises (a failure is reported on the error log)."""
        if not self._access_active:
            return
        try:
            if self._access_format is not None:
                line = self._access_format.render(req, resp, environ, request_time)
            else:
                line = json_line(req, resp, environ, request_time, self._clock)
            log = self.access_log
            if not log.isEnabledFor(logging.INFO):
                return
            direct = self._direct
            if direct is not None and not log.disabled and log.handlers == direct:
                self._write_direct(direct, line)
            else:
                # makeRecord + handle skips the caller lookup that Logger.info does.
                log.handle(log.makeRecord(log.name, logging.INFO, "(access)", 0, line, (), None))
        except Exception:
            self.error("access log failed:\n%s", traceback.format_exc())

    def _write_direct(self, handlers: list[LogStream | LogFile], line: str) -> None:
        text = line + "\n"
        for handler in handlers:
            failures = handler.failures
            if failures.retry_at and failures.skip(_monotonic()):
                continue  # failing: counted, tried again later (log_failures.py)
            handler.acquire()
            try:
                stream = handler.stream
                if stream is None:  # a FileHandler closed by someone: let it reopen itself
                    log = self.access_log
                    handler.handle(log.makeRecord(log.name, logging.INFO, "", 0, line, (), None))
                    continue
                try:
                    stream.write(text)
                    stream.flush()
                except OSError as exc:
                    failures.failed(exc, _monotonic())
                    continue
                if failures.retry_at:
                    failures.worked()
            finally:
                handler.release()

    # -- metrics (no-ops unless the statsd logger is in use) ----------------------------

    def increment(self, name: str, value: int = 1) -> None:
        """Count ``value`` occurrences of ``name``."""

    def decrement(self, name: str, value: int = 1) -> None:
        """Uncount ``value`` occurrences of ``name``."""

    def gauge(self, name: str, value: float) -> None:
        """Record the current level of ``name``."""

    def histogram(self, name: str, value_ms: float) -> None:
        """Record one sample of ``name``."""

    def timer(self, name: str, value_ms: float) -> None:
        """Record one duration of ``name`` in milliseconds."""

    # -- files --------------------------------------------------------------------------

    def capture_output(self) -> None:
        """Point fds 1 and 2 at the error log file (``capture_output`` with a file errorlog).

        The arbiter calls this once at startup; workers inherit the descriptors. A no-op when
        the setting is off or the error log is stderr.
        """
        errorlog = text(self.cfg, "errorlog") or "-"
        if not setting(self.cfg, "capture_output") or errorlog == "-":
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        with self._lock:
            try:
                fd = os.open(errorlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise LogConfigError(f"cannot open error log {errorlog!r}: {exc.strerror}")
            try:
                os.dup2(fd, 1)
                os.dup2(fd, 2)
            finally:
                os.close(fd)
            self._captured = True

    def reopen_files(self) -> None:
        """Reopen every log file by name (after logrotate moved it); call from a main loop."""
        if self._captured:
            self.capture_output()
        failures = []
        for handler in _file_handlers():
            handler.acquire()
            try:
                if handler.stream is None:
                    continue  # opened lazily on the next record (delay=True or closed)
                mode = "a" if handler.mode == "w" else handler.mode
                try:
                    stream = open(  # noqa: SIM115 - owned by the handler from now on
                        handler.baseFilename, mode, encoding=handler.encoding, errors=handler.errors
                    )
                except OSError as exc:
                    failures.append(f"{handler.baseFilename}: {exc.strerror}")
                    continue
                old, handler.stream = handler.stream, stream  # type: ignore[assignment]
                try:
                    old.close()
                except OSError:
                    pass
            finally:
                handler.release()
        for failure in failures:
            self.error("cannot reopen log file %s", failure)

    def error_stream(self) -> TextIO | None:
        """The stream the error log writes to (a file or stderr), for what must land in the
        error log without going through ``logging``: ``wsgi.errors`` and the stack dumps
        ``faulthandler`` writes on a worker timeout. None when no handler has a stream."""
        for handler in self.error_log.handlers:
            stream: TextIO | None = getattr(handler, "stream", None)
            if stream is not None and hasattr(stream, "fileno"):
                return stream
        return None

    def close_on_exec(self) -> None:
        """Set FD_CLOEXEC on every log file descriptor."""
        for handler in _file_handlers():
            handler.acquire()
            try:
                if handler.stream is not None:
                    os.set_inheritable(handler.stream.fileno(), False)  # FD_CLOEXEC
            finally:
                handler.release()
