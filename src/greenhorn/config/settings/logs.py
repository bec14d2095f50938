"""The "Logging" settings: the error log, the access log, syslog and StatsD.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Logging"

GUNICORN_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "accesslog", SECTION, c.to_opt_str, None,
        "Where to write the access log: a file path, or `-` for stdout. Unset writes no "
        "access log.",
        flags=("--access-logfile",), metavar="FILE",
    ),
    Setting(
        "disable_redirect_access_to_syslog", SECTION, c.to_bool, False,
        "With --log-syslog, keep access log lines out of syslog.",
        flags=("--disable-redirect-access-to-syslog",), action="store_true",
    ),
    Setting(
        "access_log_format", SECTION, c.to_str, GUNICORN_ACCESS_FORMAT,
        "The access log line, written with gunicorn's `%(atom)s` placeholders. The atoms: "
        "h remote address, "
        "l `-`, u user, t time, r request line, m method, U path, q query, H protocol, s "
        "status, B and b response length, f referer, a user agent, T/M/D/L duration in "
        "s/ms/us/decimal s, p pid, `{name}i` request header, `{name}o` response header, "
        "`{name}e` environment variable.",
        flags=("--access-logformat",), metavar="STRING",
    ),
    Setting(
        "access_log_json", SECTION, c.to_bool, False,
        "Write access log lines as JSON objects (one per line, properly escaped) instead of "
        "the access_log_format text. (greenhorn only)",
        flags=("--access-log-json",), action="store_true",
    ),
    Setting(
        "errorlog", SECTION, c.to_str, "-",
        "Where to write the error log: a file path, or `-` for stderr (also what None in a "
        "config file means).",
        flags=("--error-logfile", "--log-file"), metavar="FILE",
    ),
    Setting(
        "loglevel", SECTION, c.loglevel, "info",
        "The least severe error log messages written: debug, info, warning (or warn), error "
        "or critical. Any other word means info, with a warning, as gunicorn reads it.",
        flags=("--log-level",), metavar="LEVEL",
    ),
    Setting(
        "capture_output", SECTION, c.to_bool, False,
        "Send the application's stdout and stderr to the error log file.",
        flags=("--capture-output",), action="store_true",
    ),
    Setting(
        "logger_class", SECTION, c.logger_class, c.DEFAULT_LOGGER,
        "The dotted path of the logger class. Replacements should behave like "
        "greenhorn.observe.logger.Logger; gunicorn's `simple` and `gunicorn.glogging.Logger` mean "
        "the default.",
        flags=("--logger-class",), metavar="STRING",
    ),
    Setting(
        "logconfig", SECTION, c.to_opt_str, None,
        "A logging configuration file in the format of logging.config.fileConfig.",
        flags=("--log-config",), metavar="FILE",
    ),
    Setting(
        "logconfig_dict", SECTION, c.any_dict, {},
        "A logging configuration dictionary for logging.config.dictConfig. Takes precedence "
        "over logconfig and logconfig_json.",
    ),
    Setting(
        "logconfig_json", SECTION, c.to_opt_str, None,
        "A JSON file holding a logging.config.dictConfig dictionary.",
        flags=("--log-config-json",), metavar="FILE",
    ),
    Setting(
        "syslog_addr", SECTION, c.to_str, c.platform_syslog_addr(),
        "Where to send syslog messages: `unix://PATH#TYPE` (TYPE stream or dgram), "
        "`udp://HOST:PORT` or `tcp://HOST:PORT`.",
        flags=("--log-syslog-to",), metavar="SYSLOG_ADDR",
        default_doc="`'udp://localhost:514'` (macOS and the BSDs: their local socket)",
    ),
    Setting(
        "syslog", SECTION, c.to_bool, False,
        "Also send the logs to syslog.",
        flags=("--log-syslog",), action="store_true",
    ),
    Setting(
        "syslog_prefix", SECTION, c.to_opt_str, None,
        "The program name in syslog entries. Unset uses the process name.",
        flags=("--log-syslog-prefix",), metavar="SYSLOG_PREFIX",
    ),
    Setting(
        "syslog_facility", SECTION, c.choice(*c.SYSLOG_FACILITIES), "user",
        "The syslog facility, such as user, daemon or local0.",
        flags=("--log-syslog-facility",), metavar="SYSLOG_FACILITY",
    ),
    Setting(
        "enable_stdio_inheritance", SECTION, c.to_bool, False,
        "Keep stdin, stdout and stderr open in daemon mode. Set PYTHONUNBUFFERED to see "
        "output at once.",
        flags=("-R", "--enable-stdio-inheritance"), action="store_true", reloadable=False,
    ),
    Setting(
        "statsd_host", SECTION, c.statsd_address, None,
        "Send metrics to this StatsD server: `HOST:PORT` or `unix://PATH`. Unset sends "
        "none.",
        flags=("--statsd-host",), metavar="STATSD_ADDR",
    ),
    Setting(
        "dogstatsd_tags", SECTION, c.to_str, "",
        "Comma-separated DogStatsD tags added to every metric, such as `env:prod,app:web`.",
        flags=("--dogstatsd-tags",), metavar="DOGSTATSD_TAGS",
    ),
    Setting(
        "statsd_prefix", SECTION, c.to_str, "",
        "A prefix for metric names (a trailing dot is added when missing).",
        flags=("--statsd-prefix",), metavar="STATSD_PREFIX",
    ),
    Setting(
        "enable_backlog_metric", SECTION, c.to_bool, False,
        "Send the number of connections waiting in the listen queues to StatsD once a "
        "second, as `gunicorn.backlog` (a histogram, as gunicorn sends it; Linux only).",
        flags=("--enable-backlog-metric",), action="store_true",
    ),
)
# fmt: on
