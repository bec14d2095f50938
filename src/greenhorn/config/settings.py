"""THE settings table: one `Setting` row per setting, in documentation order.

Why it exists: every setting is declared exactly once, as data. The argparse CLI, the
config-file keys, GREENHORN_CMD_ARGS, validation, `--print-config` and
docs/reference/settings.md are all generated from `SETTINGS`. The only other place a setting
name appears is its typed field on `greenhorn.config.Config` (so type checkers see
`cfg.workers` as an int); a unit test keeps the two in step.

Names, flags, metavars and defaults are gunicorn's, so gunicorn command lines and config
files work unchanged. The help texts are our own.

The table is split in two modules only to respect the ~600-line module cap: this one holds
the sections about sockets, workers, limits, debugging and server mechanics; settings_ops.py
holds logging, process naming, TLS, control and the server hooks. `SETTINGS` below joins
them; nothing else should import settings_ops directly.
"""

from __future__ import annotations

import os

from greenhorn.config import types as t
from greenhorn.config.settings_ops import OPS_SETTINGS
from greenhorn.config.types import Setting

CONFIG_FILE = "Config File"
SOCKET = "Server Socket"
WORKERS = "Worker Processes"
SECURITY = "Security"
DEBUGGING = "Debugging"
MECHANICS = "Server Mechanics"

# The rows are kept one argument group per line for reading as a table; ruff format would
# put every argument on a line of its own.
# fmt: off
CORE_SETTINGS: tuple[Setting, ...] = (
    # --- Config File ---------------------------------------------------------------------
    Setting(
        "config", CONFIG_FILE, t.to_opt_str, None,
        "The configuration file: a PATH, `file:PATH`, or `python:MODULE` for an importable "
        "module. It is Python, executed in a fresh namespace; every top-level name that is a "
        "setting name sets that setting. Without this option `./greenhorn.conf.py` is read if "
        "it exists, else `./gunicorn.conf.py`.",
        flags=("-c", "--config"), metavar="CONFIG", reloadable=False,
    ),
    Setting(
        "wsgi_app", CONFIG_FILE, t.app_uri, None,
        "The WSGI application, as `MODULE:ATTRIBUTE`, `MODULE` (attribute `application`), or "
        "`MODULE:factory(ARGS)` with literal arguments. Usually given as the APP_MODULE "
        "argument; a config file may set it instead.",
        metavar="APP_MODULE",
    ),
    # --- Server Socket -------------------------------------------------------------------
    Setting(
        "bind", SOCKET, t.bind_list, ["127.0.0.1:8000"],
        "The socket(s) to listen on, as `HOST`, `HOST:PORT`, `[IPV6]:PORT`, `unix:PATH` or "
        "`fd://FD`. Repeat the option to listen on several addresses. The default is "
        "`127.0.0.1:8000`, or `0.0.0.0:$PORT` when the PORT environment variable is set.",
        flags=("-b", "--bind"), metavar="ADDRESS", action="append",
        default_doc="`['127.0.0.1:8000']`, or `['0.0.0.0:$PORT']` when PORT is set",
    ),
    Setting(
        "backlog", SOCKET, t.int_range(1), 2048,
        "The listen queue length: how many connections may wait to be accepted. Beyond it, "
        "new clients see connection errors; 64 to 2048 is the usual range.",
        flags=("--backlog",), metavar="INT",
    ),
    Setting(
        "defer_accept", SOCKET, t.int_range(0), 1,
        "TCP_DEFER_ACCEPT on TCP listeners (Linux), like nginx's `listen ... deferred`: a "
        "connection is handed to a worker only once its first bytes have arrived, or after "
        "this many seconds for a client that stays silent. Saves a wake-up and a wait per "
        "connection. 0 turns it off. (greenhorn only)",
        flags=("--defer-accept",), metavar="SECONDS",
    ),
    # --- Worker Processes ----------------------------------------------------------------
    Setting(
        "workers", WORKERS, t.workers, 1,
        "The number of worker processes. Two to four per CPU core is a common start; `auto` "
        "sizes from the CPUs and memory the process may use. Defaults to the WEB_CONCURRENCY "
        "environment variable when it is set, else 1.",
        flags=("-w", "--workers"), metavar="INT",
        default_doc="`1`, or `$WEB_CONCURRENCY` when set",
    ),
    Setting(
        "worker_class", WORKERS, t.worker_class, "sync",
        "The worker type: `sync` (one request at a time per process), `gthread` (a thread "
        "pool per process), `gevent` or `eventlet` (need those packages), or the dotted path "
        "of a worker class. gunicorn's `egg:gunicorn#NAME` and `gunicorn.workers.*` class "
        "paths for these types are accepted.",
        flags=("-k", "--worker-class"), metavar="STRING",
    ),
    Setting(
        "threads", WORKERS, t.int_range(1), 1,
        "The number of request threads per worker, for the gthread worker. As in gunicorn, "
        "a sync worker with more than one thread runs as gthread.",
        flags=("--threads",), metavar="INT",
    ),
    Setting(
        "worker_connections", WORKERS, t.int_range(1), 1000,
        "The most simultaneous client connections one worker holds, for the gthread, gevent "
        "and eventlet workers.",
        flags=("--worker-connections",), metavar="INT",
    ),
    Setting(
        "max_requests", WORKERS, t.int_range(0), 0,
        "Restart a worker after it has served this many requests, a blunt guard against "
        "memory leaks. 0 disables.",
        flags=("--max-requests",), metavar="INT",
    ),
    Setting(
        "max_requests_jitter", WORKERS, t.int_range(0), 0,
        "Add a random 0..N to each worker's max_requests, so that workers do not all restart "
        "at the same moment.",
        flags=("--max-requests-jitter",), metavar="INT",
    ),
    Setting(
        "timeout", WORKERS, t.int_range(0), 30,
        "Kill and replace a worker whose heartbeat has been silent for this many seconds. "
        "For sync workers that bounds the time one request may take. 0 disables.",
        flags=("-t", "--timeout"), metavar="INT",
    ),
    Setting(
        "graceful_timeout", WORKERS, t.int_range(0), 30,
        "After a graceful stop or restart is requested, how many seconds workers get to "
        "finish the requests in hand before they are killed.",
        flags=("--graceful-timeout",), metavar="INT",
    ),
    Setting(
        "keepalive", WORKERS, t.int_range(0), 2,
        "How many seconds an idle keep-alive connection is held open waiting for the next "
        "request. Behind a load balancer, set it above the balancer's idle timeout.",
        flags=("--keep-alive",), metavar="INT",
    ),
    Setting(
        "shutdown_delay", WORKERS, t.float_min(0), 0.0,
        "Seconds to keep serving after SIGTERM while /readyz answers 503, so a load balancer "
        "takes the instance out of rotation before its listeners close. Then the graceful "
        "stop proceeds; a second SIGTERM ends the delay early, SIGINT/SIGQUIT stop at once. "
        "0 stops accepting at once. (greenhorn only)",
        flags=("--shutdown-delay",), metavar="SECONDS",
    ),
    Setting(
        "workers_min", WORKERS, t.optional(t.int_range(1)), None,
        "The fewest workers autoscaling may shrink to. Unset means no autoscaling below "
        "`workers`. (greenhorn only)",
        flags=("--workers-min",), metavar="INT",
    ),
    Setting(
        "workers_max", WORKERS, t.optional(t.int_range(1)), None,
        "The most workers autoscaling may grow to. Unset means no autoscaling above "
        "`workers`. (greenhorn only)",
        flags=("--workers-max",), metavar="INT",
    ),
    Setting(
        "worker_memory", WORKERS, t.optional(t.int_range(1)), None,
        "The memory one worker is expected to need, in MB. With `-w auto` the worker count is "
        "capped so that this many MB per worker fit in the memory limit. (greenhorn only)",
        flags=("--worker-memory",), metavar="MB",
    ),
    Setting(
        "max_worker_memory", WORKERS, t.optional(t.int_range(1)), None,
        "Soft memory limit per worker, in MB: a worker above it is recycled gracefully once "
        "a replacement is ready. Unset disables. (greenhorn only)",
        flags=("--max-worker-memory",), metavar="MB",
    ),
    Setting(
        "max_worker_memory_hard", WORKERS, t.optional(t.int_range(1)), None,
        "Hard memory limit per worker, in MB: a worker above it is killed at once. Must not "
        "be below max_worker_memory. Unset disables. (greenhorn only)",
        flags=("--max-worker-memory-hard",), metavar="MB",
    ),
    Setting(
        "max_worker_lifetime", WORKERS, t.int_range(0), 0,
        "Recycle a worker gracefully after it has run for this many seconds. 0 disables. "
        "(greenhorn only)",
        flags=("--max-worker-lifetime",), metavar="SECONDS",
    ),
    # --- Security ------------------------------------------------------------------------
    Setting(
        "limit_request_line", SECURITY, t.int_range(0, 8190), 4094,
        "The longest request line (method, target and version) accepted, in bytes, from 0 "
        "(no limit other than the maximum) to 8190. Longer lines get 414.",
        flags=("--limit-request-line",), metavar="INT",
    ),
    Setting(
        "limit_request_fields", SECURITY, t.int_range(0, 32768), 100,
        "The most header fields accepted in one request, up to 32768 (0 means 32768). More "
        "get 431.",
        flags=("--limit-request-fields",), metavar="INT",
    ),
    Setting(
        "limit_request_field_size", SECURITY, t.int_range(0), 8190,
        "The largest header field accepted, name and value, in bytes. 0 removes the limit, "
        "which makes memory exhaustion easy for clients.",
        flags=("--limit-request-field_size", "--limit-request-field-size"), metavar="INT",
    ),
    Setting(
        "header_timeout", SECURITY, t.float_min(0), 5.0,
        "Seconds a client gets to send a complete request head; after that it gets 408 and "
        "the connection is closed. Protects sync workers from slow clients. 0 disables. "
        "(greenhorn only)",
        flags=("--header-timeout",), metavar="SECONDS",
    ),
    Setting(
        "body_min_rate", SECURITY, t.int_range(0), 1024,
        "The slowest request body upload tolerated, in bytes per second, averaged while the "
        "body is read; slower clients are disconnected. 0 disables. (greenhorn only)",
        flags=("--body-min-rate",), metavar="BYTES",
    ),
    # --- Debugging -----------------------------------------------------------------------
    Setting(
        "reload", DEBUGGING, t.to_bool, False,
        "Restart workers when application source files change. For development only; it "
        "does not combine with preload_app.",
        flags=("--reload",), action="store_true", reloadable=False,
    ),
    Setting(
        "reload_engine", DEBUGGING, t.choice("auto", "poll", "inotify"), "auto",
        "How --reload notices changes: `poll` checks modification times once a second, "
        "`inotify` uses Linux inotify (through libc, no extra package), `auto` picks inotify "
        "when the kernel offers it. A changed file with a syntax error is logged and the "
        "running workers keep serving.",
        flags=("--reload-engine",), metavar="STRING", reloadable=False,
    ),
    Setting(
        "reload_extra_files", DEBUGGING, t.files_or_patterns, [],
        "More files for --reload to watch (templates, settings files). Entries with `*`, `?` "
        "or `[` are glob patterns, expanded on every check; other paths must exist.",
        flags=("--reload-extra-file",), metavar="FILES", action="append",
    ),
    Setting(
        "spew", DEBUGGING, t.to_bool, False,
        "Trace every line the server executes. Extremely verbose; a last resort.",
        flags=("--spew",), action="store_true", reloadable=False,
    ),
    Setting(
        "check_config", DEBUGGING, t.to_bool, False,
        "Load the configuration and import the application, then exit: status 0 when both "
        "succeed, 1 when the application cannot be loaded (2 for a bad setting).",
        flags=("--check-config",), action="store_true", reloadable=False,
    ),
    Setting(
        "print_config", DEBUGGING, t.to_bool, False,
        "Print every effective setting, with its value and where it came from (default, "
        "environment, config file, GREENHORN_CMD_ARGS or command line), then exit.",
        flags=("--print-config",), action="store_true", reloadable=False,
    ),
    # --- Server Mechanics ----------------------------------------------------------------
    Setting(
        "preload_app", MECHANICS, t.to_bool, False,
        "Import the application in the master before forking workers. Saves memory and "
        "boot time; code changes then need a full restart instead of a HUP.",
        flags=("--preload",), action="store_true", reloadable=False,
    ),
    Setting(
        "sendfile", MECHANICS, t.to_bool, True,
        "Use sendfile() for wsgi.file_wrapper responses. --no-sendfile turns it off; "
        "without the option, the SENDFILE environment variable (y/yes/1/true) decides.",
        flags=("--no-sendfile",), action="store_const", const=False,
        default_doc="`True`, or `$SENDFILE` when set",
    ),
    Setting(
        "reuse_port", MECHANICS, t.to_bool, False,
        "Set SO_REUSEPORT on the listening sockets.",
        flags=("--reuse-port",), action="store_true",
    ),
    Setting(
        "chdir", MECHANICS, t.existing_dir, None,
        "Change to this directory before loading the application. Unset means the "
        "directory greenhorn was started in.",
        flags=("--chdir",), metavar="DIR", reloadable=False,
        default_doc="the current directory",
    ),
    Setting(
        "daemon", MECHANICS, t.to_bool, False,
        "Detach from the terminal and run in the background. Not for systemd Type=notify "
        "or containers.",
        flags=("-D", "--daemon"), action="store_true", reloadable=False,
    ),
    Setting(
        "raw_env", MECHANICS, t.env_list, [],
        "Set an environment variable for the server and the application, as `KEY=VALUE`. "
        "Repeat the option for several; in a config file use a list of strings.",
        flags=("-e", "--env"), metavar="ENV", action="append",
    ),
    Setting(
        "pidfile", MECHANICS, t.to_opt_str, None,
        "Write the master's process id to this file. Unset writes no file.",
        flags=("-p", "--pid"), metavar="FILE",
    ),
    Setting(
        "worker_tmp_dir", MECHANICS, t.to_opt_str, None,
        "The directory for worker heartbeat files. Unset uses /dev/shm when it is writable, "
        "else the system temporary directory; a disk-backed directory can stall workers.",
        flags=("--worker-tmp-dir",), metavar="DIR",
    ),
    Setting(
        "user", MECHANICS, t.user_id, None,
        "Run workers as this user, given as a name or a numeric id. Defaults to the user "
        "greenhorn was started as, which changes nothing.",
        flags=("-u", "--user"), metavar="USER", reloadable=False,
        default_factory=os.geteuid, default_doc="`os.geteuid()`",
    ),
    Setting(
        "group", MECHANICS, t.group_id, None,
        "Run workers as this group, given as a name or a numeric id. Defaults to the group "
        "greenhorn was started as, which changes nothing.",
        flags=("-g", "--group"), metavar="GROUP", reloadable=False,
        default_factory=os.getegid, default_doc="`os.getegid()`",
    ),
    Setting(
        "umask", MECHANICS, t.to_octal, 0,
        "The umask for files the server creates, unix sockets included. Accepts an integer "
        "or a string such as `0o22`, `022` (octal) or `0x12`.",
        flags=("-m", "--umask"), metavar="INT", reloadable=False,
    ),
    Setting(
        "initgroups", MECHANICS, t.to_bool, False,
        "When switching user, also set the supplementary groups of that user.",
        flags=("--initgroups",), action="store_true", reloadable=False,
    ),
    Setting(
        "tmp_upload_dir", MECHANICS, t.to_opt_str, None,
        "The directory for spooling large request bodies. Unset uses the system temporary "
        "directory.",
        metavar="DIR",
    ),
    Setting(
        "secure_scheme_headers", MECHANICS, t.header_dict,
        {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        "Headers (name: exact value) by which a trusted front-end proxy says the client used "
        "HTTPS; a match sets wsgi.url_scheme to https. Only honoured from "
        "forwarded_allow_ips, and headers that disagree make the request fail. Make sure the "
        "proxy strips these headers from client requests.",
    ),
    Setting(
        "forwarded_allow_ips", MECHANICS, t.addr_list, ["127.0.0.1", "::1"],
        "Comma-separated addresses or networks of front-end proxies trusted to set "
        "secure_scheme_headers and forwarder_headers; `*` trusts everyone. Unix socket peers "
        "are always trusted. Defaults to the FORWARDED_ALLOW_IPS environment variable when "
        "set.",
        flags=("--forwarded-allow-ips",), metavar="STRING",
        default_doc="`['127.0.0.1', '::1']`, or `$FORWARDED_ALLOW_IPS` when set",
    ),
    Setting(
        "pythonpath", MECHANICS, t.comma_list, [],
        "Comma-separated directories to put in front of the Python path before the "
        "application is imported; relative ones are taken from chdir.",
        flags=("--pythonpath",), metavar="STRING", reloadable=False,
    ),
    Setting(
        "proxy_protocol", MECHANICS, t.proxy_protocol, "off",
        "Read a PROXY protocol header (as sent by HAProxy or stunnel) before each connection's "
        "request: `v1`, `v2`, `auto` (either) or `off`. The option alone means `auto`.",
        flags=("--proxy-protocol",), metavar="MODE", nargs="?", const="auto",
    ),
    Setting(
        "proxy_allow_ips", MECHANICS, t.addr_list, ["127.0.0.1", "::1"],
        "Comma-separated addresses or networks allowed to send PROXY protocol headers; `*` "
        "allows everyone.",
        flags=("--proxy-allow-from",), metavar="STRING",
    ),
    Setting(
        "permit_obsolete_folding", MECHANICS, t.to_bool, False,
        "Accept header values continued on the next line (obsolete line folding) instead of "
        "refusing them with 400.",
        flags=("--permit-obsolete-folding",), action="store_true",
    ),
    Setting(
        "strip_header_spaces", MECHANICS, t.to_bool, False,
        "Accept and strip whitespace between a header name and its colon. This is a known "
        "request-smuggling vector; kept only so old gunicorn configs load.",
        flags=("--strip-header-spaces",), action="store_true",
    ),
    Setting(
        "permit_unconventional_http_method", MECHANICS, t.to_bool, False,
        "Accept request methods outside convention (lower case, under 3 or over 20 "
        "characters, containing #) instead of refusing them.",
        flags=("--permit-unconventional-http-method",), action="store_true",
    ),
    Setting(
        "permit_unconventional_http_version", MECHANICS, t.to_bool, False,
        "Accept HTTP/1.x versions other than 1.0 and 1.1 instead of refusing them.",
        flags=("--permit-unconventional-http-version",), action="store_true",
    ),
    Setting(
        "casefold_http_method", MECHANICS, t.to_bool, False,
        "Upper-case request methods before passing them on, as very old gunicorn did.",
        flags=("--casefold-http-method",), action="store_true",
    ),
    Setting(
        "forwarder_headers", MECHANICS, t.upper_comma_list, ["SCRIPT_NAME", "PATH_INFO"],
        "Comma-separated header names that a trusted proxy (forwarded_allow_ips) may use to "
        "set the WSGI environ variable of the same name, such as SCRIPT_NAME, PATH_INFO or "
        "REMOTE_USER. A SCRIPT_NAME also takes its prefix off PATH_INFO. From any other "
        "peer these headers get header_map's treatment.",
        flags=("--forwarder-headers",), metavar="STRING",
    ),
    Setting(
        "header_map", MECHANICS, t.choice("drop", "refuse", "dangerous"), "drop",
        "How to treat header names that cannot be mapped to the environ unambiguously, such "
        "as names with underscores. `drop` ignores them, `refuse` answers 400, `dangerous` "
        "maps them anyway as old gunicorn did.",
        flags=("--header-map",), metavar="STRING",
    ),
)

# fmt: on

SETTINGS: tuple[Setting, ...] = CORE_SETTINGS + OPS_SETTINGS
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))
