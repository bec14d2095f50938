"""greenhorn's configuration: the typed, frozen `Config` and `load(argv, environ)`.

Why this shape: gunicorn reads every setting through `Config.__getattr__`, so to a type
checker each one is `Any`, and its defaults are computed at import time. Here `Config` is a
frozen dataclass with one typed field per setting (gunicorn's names), built once by `load`
and passed on; `dataclasses.replace` gives a modified copy. `Config()` is all defaults and
reads no environment.

The field list below is the only place besides the table (settings/) where a setting name
appears. It carries only the static type: defaults, flags, help and validation come from
the table, filled in by `_from_table`, and a unit test checks that fields and rows match one
for one, in order.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from greenhorn.config.converters import to_octal
from greenhorn.config.hooks import HOOK_DEFAULTS, HookLogger, SSLContextFactory
from greenhorn.config.layers import Merged, resolve
from greenhorn.config.setting import ConfigError, Setting
from greenhorn.config.settings import BY_NAME, SECTIONS, SETTINGS

if TYPE_CHECKING:
    import socket

__all__ = [
    "SETTINGS",
    "Config",
    "ConfigError",
    "HookRequest",
    "HookResponse",
    "HookWorker",
    "Resolved",
    "Server",
    "load",
    "load_resolved",
    "render",
    "shown_settings",
    "warn_stderr",
]

# -- what hooks receive ----------------------------------------------------------------------
# gunicorn's documented attributes of the objects passed to hooks: the arbiter
# (``master/arbiter.py``) is a ``Server``, every worker (``workers/base.py``) a
# ``HookWorker``, the response (``wsgi/response.py``) a ``HookResponse``. Typed here, next to
# the fields they type, because they refer to ``Config`` and ``Config`` to them.


class Log(HookLogger, Protocol):
    """The error log as hooks use it (``greenhorn.observe.logger.Logger``)."""

    def critical(self, msg: str, *args: object) -> None: ...

    def error(self, msg: str, *args: object) -> None: ...

    def warning(self, msg: str, *args: object) -> None: ...

    def info(self, msg: str, *args: object) -> None: ...

    def debug(self, msg: str, *args: object) -> None: ...


class HookWorker(Protocol):
    """A worker, as ``post_fork``, ``post_worker_init``, ``pre_request``... see it."""

    @property
    def pid(self) -> int | str: ...  # "[booting]" until forked

    @property
    def age(self) -> int: ...

    @property
    def nr(self) -> int: ...  # requests served

    @property
    def alive(self) -> bool: ...

    @property
    def cfg(self) -> Config: ...

    @property
    def log(self) -> Log: ...

    @property
    def ppid(self) -> int: ...

    @property
    def timeout(self) -> int | float: ...

    @property
    def booted(self) -> bool: ...

    @property
    def aborted(self) -> bool: ...

    @property
    def sockets(self) -> list[socket.socket]: ...

    @property
    def app(self) -> object: ...

    @property
    def tmp(self) -> object: ...  # its notify() beats the heartbeat, as gunicorn's

    def notify(self) -> None: ...


class HookRequest(Protocol):
    """A request, as ``pre_request`` and ``post_request`` see it (gunicorn's attributes;
    ``workers/hook_request.RequestView``)."""

    @property
    def method(self) -> str: ...

    @property
    def uri(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> str: ...

    @property
    def fragment(self) -> str: ...

    @property
    def version(self) -> tuple[int, int]: ...

    @property
    def headers(self) -> list[tuple[str, str]]: ...

    @property
    def trailers(self) -> list[tuple[str, str]]: ...

    @property
    def body(self) -> object: ...

    @property
    def scheme(self) -> str: ...

    @property
    def peer_addr(self) -> object: ...  # (host, port), or "" for a UNIX socket

    @property
    def remote_addr(self) -> object: ...

    @property
    def req_number(self) -> int: ...


class Server(Protocol):
    """The master, as ``on_starting``, ``when_ready``, ``pre_fork``... see it."""

    @property
    def cfg(self) -> Config: ...

    @property
    def log(self) -> Log: ...

    @property
    def pid(self) -> int: ...

    num_workers: int  # a hook may change it, as in gunicorn

    @property
    def WORKERS(self) -> Mapping[int, HookWorker]: ...

    @property
    def proc_name(self) -> str: ...

    @property
    def timeout(self) -> int: ...

    @property
    def master_name(self) -> str: ...

    @property
    def LISTENERS(self) -> Sequence[object]: ...


class HookResponse(Protocol):
    """The response, as ``post_request`` sees it."""

    @property
    def status(self) -> str | None: ...

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> list[tuple[str, str]]: ...

    @property
    def sent(self) -> int: ...


ServerHook = Callable[[Server], object]
ServerWorkerHook = Callable[[Server, HookWorker], object]
WorkerExitHook = Callable[["Server | None", HookWorker], object]  # None: called in the worker
WorkerHook = Callable[[HookWorker], object]
RequestHook = Callable[[HookWorker, HookRequest], object]
PostRequestHook = Callable[[HookWorker, HookRequest, dict[str, Any], HookResponse], object]
NWorkersChangedHook = Callable[[Server, int, "int | None"], object]
# returns an ssl.SSLContext (workers/tls.py checks it): named ``object`` here so that reading
# Config's types does not load ssl, which a server without TLS never does
SSLContextHook = Callable[["Config", SSLContextFactory], object]

# Marks a field whose default comes from the settings table.
FROM_TABLE: Any = object()


def _from_table(cls: type) -> type:
    """Replace each `FROM_TABLE` marker with the `dataclasses.field` its table row describes,
    and refuse to build a Config whose fields and table rows differ."""
    names = list(cls.__annotations__)
    table = [s.name for s in SETTINGS]
    if names != table:
        missing, extra = set(table) - set(names), set(names) - set(table)
        raise RuntimeError(f"Config fields and settings table differ: {missing=} {extra=}")
    for name in names:
        setattr(cls, name, BY_NAME[name].field())
    return cls


@dataclasses.dataclass(frozen=True, slots=True)
@_from_table
class Config:
    """Every greenhorn setting, typed. Field names are gunicorn's setting names."""

    # Config File
    config: str | None = FROM_TABLE
    wsgi_app: str | None = FROM_TABLE
    # Server Socket
    bind: list[str] = FROM_TABLE
    backlog: int = FROM_TABLE
    defer_accept: int = FROM_TABLE
    # Worker Processes
    workers: int | Literal["auto"] = FROM_TABLE
    worker_class: str = FROM_TABLE
    threads: int = FROM_TABLE
    worker_connections: int = FROM_TABLE
    max_requests: int = FROM_TABLE
    max_requests_jitter: int = FROM_TABLE
    timeout: int = FROM_TABLE
    graceful_timeout: int = FROM_TABLE
    keepalive: int = FROM_TABLE
    shutdown_delay: float = FROM_TABLE
    asgi_loop: Literal["auto", "asyncio", "uvloop"] = FROM_TABLE
    asgi_lifespan: Literal["auto", "on", "off"] = FROM_TABLE
    asgi_disconnect_grace_period: int = FROM_TABLE
    websocket_max_message_size: int = FROM_TABLE
    http_parser: Literal["auto", "fast", "python"] = FROM_TABLE
    workers_min: int | None = FROM_TABLE
    workers_max: int | None = FROM_TABLE
    worker_memory: int | None = FROM_TABLE
    max_worker_memory: int | None = FROM_TABLE
    max_worker_memory_hard: int | None = FROM_TABLE
    max_worker_lifetime: int = FROM_TABLE
    # Security
    limit_request_line: int = FROM_TABLE
    limit_request_fields: int = FROM_TABLE
    limit_request_field_size: int = FROM_TABLE
    header_timeout: float = FROM_TABLE
    body_min_rate: int = FROM_TABLE
    body_buffer_size: int = FROM_TABLE
    limit_request_body: int = FROM_TABLE
    # Debugging
    reload: bool = FROM_TABLE
    reload_engine: Literal["auto", "poll", "inotify"] = FROM_TABLE
    reload_extra_files: list[str] = FROM_TABLE
    spew: bool = FROM_TABLE
    check_config: bool = FROM_TABLE
    print_config: bool = FROM_TABLE
    # Server Mechanics
    preload_app: bool = FROM_TABLE
    sendfile: bool = FROM_TABLE
    reuse_port: bool = FROM_TABLE
    chdir: str | None = FROM_TABLE
    daemon: bool = FROM_TABLE
    raw_env: list[str] = FROM_TABLE
    pidfile: str | None = FROM_TABLE
    worker_tmp_dir: str | None = FROM_TABLE
    user: int = FROM_TABLE
    group: int = FROM_TABLE
    umask: int = FROM_TABLE
    initgroups: bool = FROM_TABLE
    tmp_upload_dir: str | None = FROM_TABLE
    body_spool_threshold: int = FROM_TABLE
    secure_scheme_headers: dict[str, str] = FROM_TABLE
    forwarded_allow_ips: list[str] = FROM_TABLE
    pythonpath: list[str] = FROM_TABLE
    paste: str | None = FROM_TABLE
    raw_paste_global_conf: list[str] = FROM_TABLE
    root_path: str = FROM_TABLE
    proxy_protocol: Literal["off", "v1", "v2", "auto"] = FROM_TABLE
    proxy_allow_ips: list[str] = FROM_TABLE
    protocol: Literal["http", "uwsgi"] = FROM_TABLE
    uwsgi_allow_ips: list[str] = FROM_TABLE
    permit_obsolete_folding: bool = FROM_TABLE
    strip_header_spaces: bool = FROM_TABLE
    permit_unconventional_http_method: bool = FROM_TABLE
    permit_unconventional_http_version: bool = FROM_TABLE
    casefold_http_method: bool = FROM_TABLE
    forwarder_headers: list[str] = FROM_TABLE
    header_map: Literal["drop", "refuse", "dangerous"] = FROM_TABLE
    # Logging
    accesslog: str | None = FROM_TABLE
    disable_redirect_access_to_syslog: bool = FROM_TABLE
    access_log_format: str = FROM_TABLE
    access_log_json: bool = FROM_TABLE
    errorlog: str = FROM_TABLE
    loglevel: Literal["debug", "info", "warning", "error", "critical"] = FROM_TABLE
    capture_output: bool = FROM_TABLE
    logger_class: str = FROM_TABLE
    logconfig: str | None = FROM_TABLE
    logconfig_dict: dict[str, Any] = FROM_TABLE
    logconfig_json: str | None = FROM_TABLE
    syslog_addr: str = FROM_TABLE
    syslog: bool = FROM_TABLE
    syslog_prefix: str | None = FROM_TABLE
    syslog_facility: str = FROM_TABLE
    enable_stdio_inheritance: bool = FROM_TABLE
    statsd_host: str | None = FROM_TABLE
    dogstatsd_tags: str = FROM_TABLE
    statsd_prefix: str = FROM_TABLE
    enable_backlog_metric: bool = FROM_TABLE
    # Process Naming
    proc_name: str | None = FROM_TABLE
    default_proc_name: str = FROM_TABLE
    # SSL
    keyfile: str | None = FROM_TABLE
    certfile: str | None = FROM_TABLE
    ssl_version: int = FROM_TABLE
    cert_reqs: int = FROM_TABLE
    ca_certs: str | None = FROM_TABLE
    suppress_ragged_eofs: bool = FROM_TABLE
    do_handshake_on_connect: bool = FROM_TABLE
    ciphers: str | None = FROM_TABLE
    # HTTP/2
    http_protocols: list[str] = FROM_TABLE
    http2_cleartext: Literal["off", "prior-knowledge", "upgrade", "both"] = FROM_TABLE
    http2_max_concurrent_streams: int = FROM_TABLE
    http2_initial_window_size: int = FROM_TABLE
    http2_max_frame_size: int = FROM_TABLE
    http2_max_header_list_size: int = FROM_TABLE
    # Control
    metrics_bind: str | None = FROM_TABLE
    control_socket: str | None = FROM_TABLE
    control_socket_mode: int = FROM_TABLE
    control_socket_disable: bool = FROM_TABLE
    # Server Hooks
    on_starting: ServerHook = FROM_TABLE
    on_reload: ServerHook = FROM_TABLE
    when_ready: ServerHook = FROM_TABLE
    pre_fork: ServerWorkerHook = FROM_TABLE
    post_fork: ServerWorkerHook = FROM_TABLE
    post_worker_init: WorkerHook = FROM_TABLE
    worker_int: WorkerHook = FROM_TABLE
    worker_abort: WorkerHook = FROM_TABLE
    pre_exec: ServerHook = FROM_TABLE
    pre_request: RequestHook = FROM_TABLE
    post_request: PostRequestHook = FROM_TABLE
    child_exit: ServerWorkerHook = FROM_TABLE
    worker_exit: WorkerExitHook = FROM_TABLE
    nworkers_changed: NWorkersChangedHook = FROM_TABLE
    on_exit: ServerHook = FROM_TABLE
    ssl_context: SSLContextHook = FROM_TABLE


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    """A loaded Config plus where each value came from and the warnings raised on the way."""

    config: Config
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()
    subjects: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def invalid(self, name: str, reason: object) -> ConfigError:
        """The error for a value the table accepted but a later check refuses, naming the
        setting where its value came from (as the table's own errors do)."""
        subject = self.subjects.get(name, f"setting {name}")
        value = getattr(self.config, name)
        return ConfigError(f"{subject}: invalid value {value!r}: {reason}")


def load_resolved(
    argv: Sequence[str], environ: Mapping[str, str], cwd: str | None = None
) -> Resolved:
    """Like `load`, but also return provenance and warnings instead of printing them."""
    merged: Merged = resolve(argv, environ, cwd)
    return Resolved(Config(**merged.values), merged.sources, merged.warnings, merged.subjects)


def load(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    cwd: str | None = None,
    warn: Callable[[str], object] | None = None,
) -> Config:
    """Build the Config from `argv` (without the program name) and `environ`.

    Precedence: defaults < environment defaults (PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS,
    SENDFILE) < config file < GREENHORN_CMD_ARGS (else GUNICORN_CMD_ARGS) < argv. Warnings
    (unknown config-file names) go to `warn`, by default stderr. Raises `ConfigError` with a
    one-line message naming the setting. `-h` and `--version` print and raise SystemExit(0).
    """
    resolved = load_resolved(argv, environ, cwd)
    emit = warn or warn_stderr
    for message in resolved.warnings:
        emit(message)
    return resolved.config


def warn_stderr(message: str) -> None:
    """Write one configuration warning to stderr as `greenhorn: warning: MESSAGE`."""
    sys.stderr.write(f"greenhorn: warning: {message}\n")
    sys.stderr.flush()


def _show_value(setting: Setting, value: object) -> str:
    if setting.is_hook:
        if value is HOOK_DEFAULTS[setting.name]:
            return "<default>"
        return f"<{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}>"
    if setting.convert is to_octal:
        return f"0o{value:03o}"
    return repr(value)


def _jsonable(value: object) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def shown_settings(config: Config) -> dict[str, object]:
    """Every setting's value as ``greenhorn ctl show config`` prints it: JSON values as
    they are, hooks as ``<default>`` or ``<module.function>``, modes in octal, anything
    else as its repr. ``raw_env`` shows the names only: its values may be secrets, and the
    control socket is no place to read them."""
    shown: dict[str, object] = {}
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        if setting.name == "raw_env":
            value = [f"{str(item).partition('=')[0]}=..." for item in value]
        elif setting.is_hook or setting.convert is to_octal or not _jsonable(value):
            value = _show_value(setting, value)
        shown[setting.name] = value
    return shown


def render(resolved: Resolved, effective: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The --print-config text: every setting by section, `name = value  # source`.

    ``effective`` maps a setting to what actually runs and why, when another setting
    changes it (``worker_class`` is `'gthread'` when ``threads`` > 1 turns sync into
    gthread): `name = 'gthread'  # default 'sync'; threads > 1 runs gthread`."""
    effective = effective or {}
    width = max(len(name) for name in BY_NAME)
    lines: list[str] = []
    for section in SECTIONS:
        if lines:
            lines.append("")
        lines.append(f"# {section}")
        for setting in SETTINGS:
            if setting.section != section:
                continue
            value = _show_value(setting, getattr(resolved.config, setting.name))
            source = resolved.sources[setting.name]
            if setting.name in effective:
                shown, why = effective[setting.name]
                source, value = f"{source} {value}; {why}", shown
            lines.append(f"{setting.name:<{width}} = {value}  # {source}")
    return "\n".join(lines) + "\n"
