"""The "Debugging" settings: reloading on code changes and checking the configuration.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Debugging"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "reload", SECTION, c.to_bool, False,
        "Restart workers when application source files change. For development only; it "
        "does not combine with preload_app.",
        flags=("--reload",), action="store_true", reloadable=False,
    ),
    Setting(
        "reload_engine", SECTION, c.choice("auto", "poll", "inotify"), "auto",
        "How --reload notices changes: `poll` checks modification times once a second, "
        "`inotify` uses Linux inotify (through libc, no extra package), `auto` picks inotify "
        "when the kernel offers it. A changed file with a syntax error is logged and the "
        "running workers keep serving.",
        flags=("--reload-engine",), metavar="STRING", reloadable=False,
    ),
    Setting(
        "reload_extra_files", SECTION, c.files_or_patterns, [],
        "More files for --reload to watch (templates, settings files). Entries with `*`, `?` "
        "or `[` are glob patterns, expanded on every check; other paths must exist.",
        flags=("--reload-extra-file",), metavar="FILES", action="append",
    ),
    Setting(
        "spew", SECTION, c.to_bool, False,
        "Print every line of Python the server runs, in the master and the workers, to "
        "stdout as `module:line: source`, as gunicorn does. Extremely verbose; a last "
        "resort.",
        flags=("--spew",), action="store_true", reloadable=False,
    ),
    Setting(
        "check_config", SECTION, c.to_bool, False,
        "Load the configuration and import the application, then exit: status 0 when both "
        "succeed, 1 when the application cannot be loaded (2 for a bad setting).",
        flags=("--check-config",), action="store_true", reloadable=False,
    ),
    Setting(
        "print_config", SECTION, c.to_bool, False,
        "Print every effective setting, with its value and where it came from (default, "
        "environment, config file, GREENHORN_CMD_ARGS or command line), then exit.",
        flags=("--print-config",), action="store_true", reloadable=False,
    ),
)
# fmt: on
