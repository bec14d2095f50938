"""The "Process Naming" settings: the names ps and top show.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Process Naming"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "proc_name", SECTION, c.to_opt_str, None,
        "The name shown by ps and top for the master and the workers. Unset uses "
        "default_proc_name; naming matters when several servers run on one host.",
        flags=("-n", "--name"), metavar="STRING",
    ),
    Setting(
        "default_proc_name", SECTION, c.to_str, "greenhorn",
        "The process name used when proc_name is unset; the application module given on "
        "the command line replaces it.",
    ),
)
# fmt: on
