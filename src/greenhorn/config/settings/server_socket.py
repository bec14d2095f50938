"""The "Server Socket" settings: what the master listens on.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Server Socket"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "bind", SECTION, c.bind_list, ["127.0.0.1:8000"],
        "The socket(s) to listen on, as `HOST`, `HOST:PORT`, `[IPV6]:PORT`, `unix:PATH` or "
        "`fd://FD`. Repeat the option to listen on several addresses. The default is "
        "`127.0.0.1:8000`, or `0.0.0.0:$PORT` when the PORT environment variable is set.",
        flags=("-b", "--bind"), metavar="ADDRESS", action="append",
        default_doc="`['127.0.0.1:8000']`, or `['0.0.0.0:$PORT']` when PORT is set",
        help_default="127.0.0.1:8000, or 0.0.0.0:$PORT",
    ),
    Setting(
        "backlog", SECTION, c.int_range(0), 2048,
        "The listen queue length: how many connections may wait to be accepted. Beyond it, "
        "new clients see connection errors; 64 to 2048 is the usual range. The kernel caps it "
        "at net.core.somaxconn, and 0 leaves the smallest queue it allows.",
        flags=("--backlog",), metavar="INT",
    ),
    Setting(
        "defer_accept", SECTION, c.int_range(0), 1,
        "Hand a TCP connection to a worker only once its first bytes have arrived, or after "
        "this many seconds of silence (TCP_DEFER_ACCEPT, Linux). Like nginx's `listen ... "
        "deferred`, it saves a wake-up and a wait per connection. 0 turns it off. "
        "(greenhorn only)",
        flags=("--defer-accept",), metavar="SECONDS",
    ),
)
# fmt: on
