"""The "Server Mechanics" settings: the process itself, users, proxies and the parser's leniency.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

import os

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Server Mechanics"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "preload_app", SECTION, c.to_bool, False,
        "Import the application in the master before forking workers. Saves memory and "
        "boot time; code changes then need a full restart instead of a HUP.",
        flags=("--preload",), action="store_true", reloadable=False,
    ),
    Setting(
        "sendfile", SECTION, c.to_bool, True,
        "Use sendfile() for wsgi.file_wrapper responses. --no-sendfile turns it off; "
        "without the option, the SENDFILE environment variable (y/yes/1/true) decides.",
        flags=("--no-sendfile",), action="store_const", const=False,
        default_doc="`True`, or `$SENDFILE` when set",
        flag_help="Do not use sendfile() for wsgi.file_wrapper responses (without this "
        "option, SENDFILE set to anything but y, yes, 1 or true turns it off too).",
    ),
    Setting(
        "reuse_port", SECTION, c.to_bool, False,
        "Give each worker a listening socket of its own on each TCP address, with "
        "SO_REUSEPORT, as gunicorn does, so that the kernel spreads new connections over "
        "the workers. The master's socket stays shared as well (docs/deploy/index.md).",
        flags=("--reuse-port",), action="store_true",
    ),
    Setting(
        "chdir", SECTION, c.existing_dir, None,
        "Change to this directory before loading the application. Unset means the "
        "directory greenhorn was started in.",
        flags=("--chdir",), metavar="DIR", reloadable=False,
        default_doc="the current directory",
    ),
    Setting(
        "daemon", SECTION, c.to_bool, False,
        "Detach from the terminal and run in the background. Not for systemd Type=notify "
        "or containers.",
        flags=("-D", "--daemon"), action="store_true", reloadable=False,
    ),
    Setting(
        "raw_env", SECTION, c.env_list, [],
        "Set an environment variable for the server and the application, as `KEY=VALUE`. "
        "Repeat the option for several; in a config file use a list of strings.",
        flags=("-e", "--env"), metavar="ENV", action="append",
    ),
    Setting(
        "pidfile", SECTION, c.to_opt_str, None,
        "Write the master's process id to this file. Unset writes no file.",
        flags=("-p", "--pid"), metavar="FILE",
    ),
    Setting(
        "worker_tmp_dir", SECTION, c.to_opt_str, None,
        "The directory for worker heartbeat files. Unset uses /dev/shm when it is writable, "
        "else the system temporary directory; a disk-backed directory can stall workers.",
        flags=("--worker-tmp-dir",), metavar="DIR",
    ),
    Setting(
        "user", SECTION, c.user_id, None,
        "Run workers as this user, given as a name or a numeric id. Defaults to the user "
        "greenhorn was started as, which changes nothing.",
        flags=("-u", "--user"), metavar="USER", reloadable=False,
        default_factory=os.geteuid, default_doc="`os.geteuid()`",
    ),
    Setting(
        "group", SECTION, c.group_id, None,
        "Run workers as this group, given as a name or a numeric id. Defaults to the group "
        "greenhorn was started as, which changes nothing.",
        flags=("-g", "--group"), metavar="GROUP", reloadable=False,
        default_factory=os.getegid, default_doc="`os.getegid()`",
    ),
    Setting(
        "umask", SECTION, c.to_octal, 0,
        "The umask for files the server creates, unix sockets included. Accepts an integer "
        "or a string such as `0o22`, `022` (octal) or `0x12`.",
        flags=("-m", "--umask"), metavar="INT", reloadable=False,
    ),
    Setting(
        "initgroups", SECTION, c.to_bool, False,
        "When switching user, also set the supplementary groups of that user.",
        flags=("--initgroups",), action="store_true", reloadable=False,
    ),
    Setting(
        "tmp_upload_dir", SECTION, c.to_opt_str, None,
        "The directory for spooling large request bodies (see body_spool_threshold), as an "
        "unlinked file that disappears with its request. Unset uses the system temporary "
        "directory.",
        metavar="DIR",
    ),
    Setting(
        "body_spool_threshold", SECTION, c.int_range(0), 1048576,
        "Request bodies read whole and larger than this many bytes go to a file first. When "
        "the application reads such a body whole (`wsgi.input.read()`), it is received into "
        "an unlinked file in tmp_upload_dir and read back once all of it has arrived: memory "
        "grows with the bytes received, never with a declared Content-Length. 0 spools every "
        "body read whole. (greenhorn only)",
        flags=("--body-spool-threshold",), metavar="BYTES",
    ),
    Setting(
        "secure_scheme_headers", SECTION, c.header_dict,
        {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        "Headers (name: exact value) by which a trusted front-end proxy says the client used "
        "HTTPS; a match sets wsgi.url_scheme to https. Only honoured from "
        "forwarded_allow_ips, and headers that disagree make the request fail. Make sure the "
        "proxy strips these headers from client requests.",
    ),
    Setting(
        "forwarded_allow_ips", SECTION, c.addr_list, ["127.0.0.1", "::1"],
        "Comma-separated addresses or networks of front-end proxies trusted to set "
        "secure_scheme_headers and forwarder_headers; `*` trusts everyone. Unix socket peers "
        "are always trusted. Defaults to the FORWARDED_ALLOW_IPS environment variable when "
        "set.",
        flags=("--forwarded-allow-ips",), metavar="STRING",
        default_doc="`['127.0.0.1', '::1']`, or `$FORWARDED_ALLOW_IPS` when set",
        help_default="127.0.0.1,::1, or $FORWARDED_ALLOW_IPS",
    ),
    Setting(
        "pythonpath", SECTION, c.comma_list, [],
        "Comma-separated directories to put in front of the Python path before the "
        "application is imported; relative ones are taken from chdir.",
        flags=("--pythonpath",), metavar="STRING", reloadable=False,
    ),
    Setting(
        "paste", SECTION, c.paste_uri, None,
        "Serve the application of a PasteDeploy config file (`app.ini`, or `app.ini#name` for "
        "another app section than main) instead of APP_MODULE. Needs PasteDeploy installed "
        "(pip install PasteDeploy, or greenhorn's `[paste]` extra). A `[loggers]` section in "
        "the file also configures logging, unless a logconfig setting is given.",
        flags=("--paste", "--paster"), metavar="STRING", reloadable=False,
    ),
    Setting(
        "raw_paste_global_conf", SECTION, c.paste_globals, [],
        "A PasteDeploy global config variable for --paste, as `KEY=VALUE` (write `\\=` for an "
        "`=` inside the key). Repeat the option for several.",
        flags=("--paste-global",), metavar="CONF", action="append",
    ),
    Setting(
        "root_path", SECTION, c.to_str, "",
        "The path an ASGI application is mounted at, behind a proxy that strips it: the "
        "scope's `root_path` (WSGI's SCRIPT_NAME). With `/api`, a request for `/users` "
        "reaches the application as path `/api/users` with root path `/api`, as uvicorn "
        "does and Starlette expects.",
        flags=("--root-path",), metavar="STRING",
    ),
    Setting(
        "proxy_protocol", SECTION, c.proxy_protocol, "off",
        "Read a PROXY protocol header (as sent by HAProxy or stunnel) before each connection's "
        "request: `v1`, `v2`, `auto` (either) or `off`. The option alone means `auto`.",
        flags=("--proxy-protocol",), metavar="MODE", nargs="?", const="auto",
    ),
    Setting(
        "proxy_allow_ips", SECTION, c.addr_list, ["127.0.0.1", "::1"],
        "Comma-separated addresses or networks allowed to send PROXY protocol headers; `*` "
        "allows everyone.",
        flags=("--proxy-allow-from",), metavar="STRING",
    ),
    Setting(
        "protocol", SECTION, c.choice("http", "uwsgi"), "http",
        "The protocol the listeners speak: `http` (HTTP/1.x) or `uwsgi`, the uWSGI binary "
        "protocol that nginx's `uwsgi_pass` sends (with `include uwsgi_params`). With "
        "`uwsgi`, the client's address, the scheme and the other variables come from the "
        "proxy, every response closes its connection, and only uwsgi_allow_ips may connect.",
        flags=("--protocol",), metavar="STRING",
    ),
    Setting(
        "uwsgi_allow_ips", SECTION, c.addr_list, ["127.0.0.1", "::1"],
        "Comma-separated addresses or networks allowed to send uWSGI protocol requests "
        "(with `--protocol uwsgi`); `*` allows everyone. Unix socket peers are always "
        "allowed. A connection from anyone else is answered 403 and closed, with a warning.",
        flags=("--uwsgi-allow-from",), metavar="STRING",
    ),
    Setting(
        "permit_obsolete_folding", SECTION, c.to_bool, False,
        "Accept header values continued on the next line (obsolete line folding) instead of "
        "refusing them with 400.",
        flags=("--permit-obsolete-folding",), action="store_true",
    ),
    Setting(
        "strip_header_spaces", SECTION, c.to_bool, False,
        "Accept and strip whitespace between a header name and its colon. This is a known "
        "request-smuggling vector; kept only so old gunicorn configs load.",
        flags=("--strip-header-spaces",), action="store_true",
    ),
    Setting(
        "permit_unconventional_http_method", SECTION, c.to_bool, False,
        "Accept request methods outside convention (lower case, under 3 or over 20 "
        "characters, containing #) instead of refusing them.",
        flags=("--permit-unconventional-http-method",), action="store_true",
    ),
    Setting(
        "permit_unconventional_http_version", SECTION, c.to_bool, False,
        "Accept HTTP/1.x versions other than 1.0 and 1.1 instead of refusing them.",
        flags=("--permit-unconventional-http-version",), action="store_true",
    ),
    Setting(
        "casefold_http_method", SECTION, c.to_bool, False,
        "Upper-case request methods before passing them on, as very old gunicorn did.",
        flags=("--casefold-http-method",), action="store_true",
    ),
    Setting(
        "forwarder_headers", SECTION, c.upper_comma_list, ["SCRIPT_NAME", "PATH_INFO"],
        "Comma-separated header names (with underscores) that a trusted proxy "
        "(forwarded_allow_ips) may send. Each reaches the application as its HTTP_ key "
        "(HTTP_SCRIPT_NAME, HTTP_REMOTE_USER), as in gunicorn 27; SCRIPT_NAME and PATH_INFO "
        "also set the WSGI environ variable of the same name (a SCRIPT_NAME also takes its "
        "prefix off PATH_INFO). REMOTE_USER never becomes REMOTE_USER itself: a header a "
        "proxy forgot to strip must not log anyone in. From any other peer these headers "
        "get header_map's treatment.",
        flags=("--forwarder-headers",), metavar="STRING",
    ),
    Setting(
        "header_map", SECTION, c.choice("drop", "refuse", "dangerous"), "drop",
        "How to treat header names that cannot be mapped to the environ unambiguously, such "
        "as names with underscores. `drop` ignores them, `refuse` answers 400, `dangerous` "
        "maps them anyway as old gunicorn did.",
        flags=("--header-map",), metavar="STRING",
    ),
)
# fmt: on
