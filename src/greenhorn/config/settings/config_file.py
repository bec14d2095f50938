"""The "Config File" settings: the config file itself and the application to serve.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Config File"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "config", SECTION, c.to_opt_str, None,
        "The configuration file: a PATH, `file:PATH`, or `python:MODULE` for an importable "
        "module. It is Python, executed in a fresh namespace; every top-level name that is a "
        "setting name sets that setting. Without this option `./greenhorn.conf.py` is read if "
        "it exists, else `./gunicorn.conf.py`.",
        flags=("-c", "--config"), metavar="CONFIG", reloadable=False,
    ),
    Setting(
        "wsgi_app", SECTION, c.app_uri, None,
        "The WSGI application, as `MODULE:ATTRIBUTE`, `MODULE` (attribute `application`), or "
        "`MODULE:factory(ARGS)` with literal arguments. Usually given as the APP_MODULE "
        "argument; a config file may set it instead.",
        metavar="APP_MODULE",
    ),
)
# fmt: on
