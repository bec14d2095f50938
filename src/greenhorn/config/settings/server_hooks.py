"""The "Server Hooks" settings: the functions greenhorn calls at points of the server's life.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config import hooks
from greenhorn.config.setting import Setting

SECTION = "Server Hooks"


def _hook(name: str, help_text: str) -> Setting:
    """A server hook row: default and signature come from greenhorn.config.hooks."""
    return Setting(
        name,
        SECTION,
        c.hook(name),
        hooks.HOOK_DEFAULTS[name],
        help_text,
        metavar=hooks.signature_of(name),
    )


# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    _hook("on_starting", "Called in the master just before it initialises. If it raises, "
          "greenhorn does not start (exit status 1)."),
    _hook("on_reload", "Called in the master when SIGHUP starts recycling the workers."),
    _hook("when_ready", "Called in the master once the listeners are open and it is ready. "
          "If it raises, greenhorn stops before forking a worker (exit status 1)."),
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
