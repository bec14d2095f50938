"""The "Control" settings: the master's metrics endpoint and control socket.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Control"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "metrics_bind", SECTION, c.optional(c.host_port), None,
        "Serve Prometheus metrics and health endpoints from the master on this `HOST:PORT`. "
        "Unset serves none. (greenhorn only)",
        flags=("--metrics-bind",), metavar="ADDRESS", reloadable=False,
    ),
    Setting(
        "control_socket", SECTION, c.to_opt_str, None,
        "The unix socket on which the master answers `greenhorn ctl` (worker table, stats, "
        "add/remove workers, reload). Unset: `$XDG_RUNTIME_DIR/greenhorn-<pid>.ctl`, or "
        "`<tmpdir>/greenhorn-<uid>/greenhorn-<pid>.ctl`, found by `greenhorn ctl --pid FILE`. "
        "Turn it off with `--no-control-socket`.",
        flags=("--control-socket",), metavar="PATH", reloadable=False,
    ),
    Setting(
        "control_socket_mode", SECTION, c.to_octal, 0o600,
        "The permission bits of the control socket; 0o660 lets the group connect.",
        flags=("--control-socket-mode",), metavar="INT", reloadable=False,
    ),
    Setting(
        "control_socket_disable", SECTION, c.to_bool, False,
        "Open no control socket even when control_socket is set.",
        flags=("--no-control-socket",), action="store_true", reloadable=False,
    ),
)
# fmt: on
