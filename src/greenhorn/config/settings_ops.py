"""Second half of the settings table: logging, process naming, TLS, control, server hooks.

Why a separate module: only the ~600-line cap; settings.py explains the split and is the one
place that joins both halves into `SETTINGS`. Import from settings.py, not from here.
"""

from __future__ import annotations

from greenhorn import hooks
from greenhorn.config import types as t
from greenhorn.config.types import Setting

LOGGING = "Logging"
NAMING = "Process Naming"
TLS = "SSL"
CONTROL = "Control"
HOOKS = "Server Hooks"

GUNICORN_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def _hook(name: str, help_text: str) -> Setting:
    """A server hook row: default and signature come from greenhorn.hooks."""
    return Setting(
        name,
        HOOKS,
        t.hook(name),
        hooks.HOOK_DEFAULTS[name],
        help_text,
        metavar=hooks.signature_of(name),
    )


# The rows are kept one argument group per line for reading as a table; ruff format would
# put every argument on a line of its own.
# fmt: off
OPS_SETTINGS: tuple[Setting, ...] = (
    # --- Logging -------------------------------------------------------------------------
    Setting(
        "accesslog", LOGGING, t.to_opt_str, None,
        "Where to write the access log: a file path, or `-` for stdout. Unset writes no "
        "access log.",
        flags=("--access-logfile",), metavar="FILE",
    ),
    Setting(
        "disable_redirect_access_to_syslog", LOGGING, t.to_bool, False,
        "With --log-syslog, keep access log lines out of syslog.",
        flags=("--disable-redirect-access-to-syslog",), action="store_true",
    ),
    Setting(
        "access_log_format", LOGGING, t.to_str, GUNICORN_ACCESS_FORMAT,
        "The access log line, written with gunicorn's `%(atom)s` placeholders. The atoms: "
        "h remote address, "
        "l `-`, u user, t time, r request line, m method, U path, q query, H protocol, s "
        "status, B and b response length, f referer, a user agent, T/M/D/L duration in "
        "s/ms/us/decimal s, p pid, `{name}i` request header, `{name}o` response header, "
        "`{name}e` environment variable.",
        flags=("--access-logformat",), metavar="STRING",
    ),
    Setting(
        "access_log_json", LOGGING, t.to_bool, False,
        "Write access log lines as JSON objects (one per line, properly escaped) instead of "
        "the access_log_format text. (greenhorn only)",
        flags=("--access-log-json",), action="store_true",
    ),
    Setting(
        "errorlog", LOGGING, t.to_str, "-",
        "Where to write the error log: a file path, or `-` for stderr.",
        flags=("--error-logfile", "--log-file"), metavar="FILE",
    ),
    Setting(
        "loglevel", LOGGING, t.choice("debug", "info", "warning", "error", "critical"), "info",
        "The least severe error log messages written: debug, info, warning, error or "
        "critical.",
        flags=("--log-level",), metavar="LEVEL",
    ),
    Setting(
        "capture_output", LOGGING, t.to_bool, False,
        "Send the application's stdout and stderr to the error log file.",
        flags=("--capture-output",), action="store_true",
    ),
    Setting(
        "logger_class", LOGGING, t.logger_class, t.DEFAULT_LOGGER,
        "The dotted path of the logger class. Replacements should behave like "
        "greenhorn.logging.Logger; gunicorn's `simple` and `gunicorn.glogging.Logger` mean "
        "the default.",
        flags=("--logger-class",), metavar="STRING",
    ),
    Setting(
        "logconfig", LOGGING, t.to_opt_str, None,
        "A logging configuration file in the format of logging.config.fileConfig.",
        flags=("--log-config",), metavar="FILE",
    ),
    Setting(
        "logconfig_dict", LOGGING, t.any_dict, {},
        "A logging configuration dictionary for logging.config.dictConfig. Takes precedence "
        "over logconfig and logconfig_json.",
    ),
    Setting(
        "logconfig_json", LOGGING, t.to_opt_str, None,
        "A JSON file holding a logging.config.dictConfig dictionary.",
        flags=("--log-config-json",), metavar="FILE",
    ),
    Setting(
        "syslog_addr", LOGGING, t.to_str, t.platform_syslog_addr(),
        "Where to send syslog messages: `unix://PATH#TYPE` (TYPE stream or dgram), "
        "`udp://HOST:PORT` or `tcp://HOST:PORT`.",
        flags=("--log-syslog-to",), metavar="SYSLOG_ADDR",
        default_doc="`'udp://localhost:514'` (macOS and the BSDs: their local socket)",
    ),
    Setting(
        "syslog", LOGGING, t.to_bool, False,
        "Also send the logs to syslog.",
        flags=("--log-syslog",), action="store_true",
    ),
    Setting(
        "syslog_prefix", LOGGING, t.to_opt_str, None,
        "The program name in syslog entries. Unset uses the process name.",
        flags=("--log-syslog-prefix",), metavar="SYSLOG_PREFIX",
    ),
    Setting(
        "syslog_facility", LOGGING, t.choice(*t.SYSLOG_FACILITIES), "user",
        "The syslog facility, such as user, daemon or local0.",
        flags=("--log-syslog-facility",), metavar="SYSLOG_FACILITY",
    ),
    Setting(
        "enable_stdio_inheritance", LOGGING, t.to_bool, False,
        "Keep stdin, stdout and stderr open in daemon mode. Set PYTHONUNBUFFERED to see "
        "output at once.",
        flags=("-R", "--enable-stdio-inheritance"), action="store_true", reloadable=False,
    ),
    Setting(
        "statsd_host", LOGGING, t.statsd_address, None,
        "Send metrics to this StatsD server: `HOST:PORT` or `unix://PATH`. Unset sends "
        "none.",
        flags=("--statsd-host",), metavar="STATSD_ADDR",
    ),
    Setting(
        "dogstatsd_tags", LOGGING, t.to_str, "",
        "Comma-separated DogStatsD tags added to every metric, such as `env:prod,app:web`.",
        flags=("--dogstatsd-tags",), metavar="DOGSTATSD_TAGS",
    ),
    Setting(
        "statsd_prefix", LOGGING, t.to_str, "",
        "A prefix for metric names (a trailing dot is added when missing).",
        flags=("--statsd-prefix",), metavar="STATSD_PREFIX",
    ),
    Setting(
        "enable_backlog_metric", LOGGING, t.to_bool, False,
        "Emit the listen queue length as a metric (Linux only).",
        flags=("--enable-backlog-metric",), action="store_true",
    ),
    # --- Process Naming ------------------------------------------------------------------
    Setting(
        "proc_name", NAMING, t.to_opt_str, None,
        "The name shown by ps and top for the master and the workers. Unset uses "
        "default_proc_name; naming matters when several servers run on one host.",
        flags=("-n", "--name"), metavar="STRING",
    ),
    Setting(
        "default_proc_name", NAMING, t.to_str, "greenhorn",
        "The process name used when proc_name is unset; the application module given on "
        "the command line replaces it.",
    ),
    # --- SSL -----------------------------------------------------------------------------
    Setting(
        "keyfile", TLS, t.to_opt_str, None,
        "The TLS private key file. Serving TLS needs certfile, and keyfile unless the key "
        "is in certfile.",
        flags=("--keyfile",), metavar="FILE",
    ),
    Setting(
        "certfile", TLS, t.to_opt_str, None,
        "The TLS certificate (chain) file. Setting it makes every listener speak TLS.",
        flags=("--certfile",), metavar="FILE",
    ),
    Setting(
        "ssl_version", TLS, t.ssl_version, 2,  # ssl.PROTOCOL_TLS (ssl is loaded only for TLS)
        "An ssl.PROTOCOL_* constant or its name. Deprecated and ignored, as in gunicorn; set "
        "minimum_version in an ssl_context hook instead.",
        flags=("--ssl-version",), metavar="STRING",
        default_doc="`ssl.PROTOCOL_TLS` (2)",
    ),
    Setting(
        "cert_reqs", TLS, t.cert_reqs, 0,  # ssl.CERT_NONE
        "Whether clients must present a certificate: 0 no, 1 optional, 2 required (or "
        "CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED).",
        flags=("--cert-reqs",), metavar="INT",
    ),
    Setting(
        "ca_certs", TLS, t.to_opt_str, None,
        "The CA certificates file used to verify client certificates.",
        flags=("--ca-certs",), metavar="FILE",
    ),
    Setting(
        "suppress_ragged_eofs", TLS, t.to_bool, True,
        "Treat a TLS connection closed without close_notify as a normal end of file.",
        flags=("--suppress-ragged-eofs",), action="store_true",
    ),
    Setting(
        "do_handshake_on_connect", TLS, t.to_bool, False,
        "Accepted for gunicorn compatibility; changes nothing: greenhorn always completes "
        "the TLS handshake (under --header-timeout) before reading a request.",
        flags=("--do-handshake-on-connect",), action="store_true",
    ),
    Setting(
        "ciphers", TLS, t.to_opt_str, None,
        "The TLS cipher suites, as an OpenSSL cipher list. Unset keeps Python's default list.",
        flags=("--ciphers",), metavar="STRING",
    ),
    # --- Control -------------------------------------------------------------------------
    Setting(
        "metrics_bind", CONTROL, t.optional(t.host_port), None,
        "Serve Prometheus metrics and health endpoints from the master on this `HOST:PORT`. "
        "Unset serves none. (greenhorn only)",
        flags=("--metrics-bind",), metavar="ADDRESS", reloadable=False,
    ),
    Setting(
        "control_socket", CONTROL, t.to_opt_str, None,
        "The unix socket on which the master answers `greenhorn ctl` (worker table, stats, "
        "add/remove workers, reload). Unset: `$XDG_RUNTIME_DIR/greenhorn-<pid>.ctl`, or "
        "`<tmpdir>/greenhorn-<uid>/greenhorn-<pid>.ctl`, found by `greenhorn ctl --pid FILE`. "
        "Turn it off with `--no-control-socket`.",
        flags=("--control-socket",), metavar="PATH", reloadable=False,
    ),
    Setting(
        "control_socket_mode", CONTROL, t.to_octal, 0o600,
        "The permission bits of the control socket; 0o660 lets the group connect.",
        flags=("--control-socket-mode",), metavar="INT", reloadable=False,
    ),
    Setting(
        "control_socket_disable", CONTROL, t.to_bool, False,
        "Open no control socket even when control_socket is set.",
        flags=("--no-control-socket",), action="store_true", reloadable=False,
    ),
    # --- Server Hooks --------------------------------------------------------------------
    _hook("on_starting", "Called in the master just before it initialises."),
    _hook("on_reload", "Called in the master when SIGHUP starts recycling the workers."),
    _hook("when_ready", "Called in the master once the listeners are open and it is ready."),
    _hook("pre_fork", "Called in the master just before a worker is forked."),
    _hook("post_fork", "Called in the new worker just after the fork. If it raises, the worker "
          "does not boot."),
    _hook("post_worker_init", "Called in the worker once the application is loaded. If it "
          "raises, the worker does not boot."),
    _hook("worker_int", "Called in the worker when it exits on SIGINT or SIGQUIT."),
    _hook("worker_abort", "Called in the worker when it receives SIGABRT, which usually "
          "means it timed out."),
    _hook("pre_exec", "Called in the master just before it re-executes itself (SIGUSR2)."),
    _hook("pre_request", "Called in the worker just before the application handles a request."),
    _hook("post_request", "Called in the worker after the application handled a request. As "
          "in gunicorn, the function may also take only (worker, req) or (worker, req, "
          "environ)."),
    _hook("child_exit", "Called in the master just after a worker has exited."),
    _hook("worker_exit", "Called in the worker just before it exits."),
    _hook("nworkers_changed", "Called in the master after the number of workers changed; "
          "old_value is None the first time."),
    _hook("on_exit", "Called in the master just before greenhorn exits."),
    _hook("ssl_context", "Called when a TLS context is needed; must return an ssl.SSLContext. "
          "Call default_ssl_context_factory() for the context built from the TLS settings "
          "and adjust it."),
)
# fmt: on
