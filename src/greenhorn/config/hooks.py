"""Server hooks: their gunicorn names and signatures, the no-op defaults, and `call_hook`.

Why a module of its own: gunicorn declares each hook as a settings class with a
`staticmethod` default, which type checkers cannot follow (gunicorn #3201). Here a hook is a
plain function. The default function *is* the declaration of the signature: the settings
table reads each hook's arity from it (see `HOOK_DEFAULTS`), so a signature is written once.

Rules:
- A hook that raises must never take the server down unless the caller says so. `call_hook`
  logs and swallows by default; `propagate=True` is for the places where a failure has to be
  visible to the caller (a worker whose `post_fork` or `post_worker_init` raised must not
  boot; the worker code decides the exit code).
- A hook called while a request is served (`pre_request`, `post_request`) goes through
  `call_request_hook`: whatever it raises, `SystemExit` included, is logged and contained,
  so a hook can fail a request (the caller answers 500) but never the worker serving it.
- This module imports nothing from `greenhorn.config`: `cfg` is only read with `getattr`,
  which keeps the settings table free to import the defaults from here.
"""

from __future__ import annotations

import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Protocol

# The types of the hook fields of ``greenhorn.config.Config``, and the Protocols of what
# hooks receive (``Server``, ``HookWorker``...), are declared next to ``Config`` in
# ``config/__init__.py``: they refer to each other. The defaults below ignore their
# arguments, so they take ``object``: a default fits every hook field it is the default of.
# Builds the ``ssl.SSLContext`` the TLS settings describe (``workers/tls.py``); ``object``
# here because ssl (and libssl) is loaded only by a server that speaks TLS.
SSLContextFactory = Callable[[], object]


class HookLogger(Protocol):
    """The part of a logger `call_hook` needs (greenhorn.observe.logger.Logger satisfies it)."""

    def exception(self, msg: str, *args: object) -> None:
        """Log `msg` at error level with the current exception's traceback."""


# --- the defaults: one function per hook, gunicorn's parameter names -------------------


def on_starting(server: object) -> None:
    """Default `on_starting`: do nothing."""


def on_reload(server: object) -> None:
    """Default `on_reload`: do nothing."""


def when_ready(server: object) -> None:
    """Default `when_ready`: do nothing."""


def pre_fork(server: object, worker: object) -> None:
    """Default `pre_fork`: do nothing."""


def post_fork(server: object, worker: object) -> None:
    """Default `post_fork`: do nothing."""


def post_worker_init(worker: object) -> None:
    """Default `post_worker_init`: do nothing."""


def worker_int(worker: object) -> None:
    """Default `worker_int`: do nothing."""


def worker_abort(worker: object) -> None:
    """Default `worker_abort`: do nothing."""


def pre_exec(server: object) -> None:
    """Default `pre_exec`: do nothing."""


def pre_request(worker: object, req: object) -> None:
    """Default `pre_request`: do nothing (gunicorn logs at debug level; the access log
    already records every request, and the hot path is cheaper without it)."""


def post_request(worker: object, req: object, environ: object, resp: object) -> None:
    """Default `post_request`: do nothing."""


def child_exit(server: object, worker: object) -> None:
    """Default `child_exit`: do nothing."""


def worker_exit(server: object, worker: object) -> None:
    """Default `worker_exit`: do nothing."""


def nworkers_changed(server: object, new_value: int, old_value: int | None) -> None:
    """Default `nworkers_changed`: do nothing."""


def on_exit(server: object) -> None:
    """Default `on_exit`: do nothing."""


def ssl_context(config: object, default_ssl_context_factory: SSLContextFactory) -> object:
    """Default `ssl_context`: the context built from the TLS settings, unchanged."""
    return default_ssl_context_factory()


HOOK_DEFAULTS: dict[str, Callable[..., object]] = {
    f.__name__: f
    for f in (
        on_starting,
        on_reload,
        when_ready,
        pre_fork,
        post_fork,
        post_worker_init,
        worker_int,
        worker_abort,
        pre_exec,
        pre_request,
        post_request,
        child_exit,
        worker_exit,
        nworkers_changed,
        on_exit,
        ssl_context,
    )
}
HOOK_NAMES: tuple[str, ...] = tuple(HOOK_DEFAULTS)


def signature_of(name: str) -> str:
    """`"pre_fork(server, worker)"`: the call signature of hook `name`, for help and docs."""
    params = inspect.signature(HOOK_DEFAULTS[name]).parameters
    return f"{name}({', '.join(params)})"


def arity(name: str) -> int:
    """The number of positional arguments hook `name` is called with."""
    return len(inspect.signature(HOOK_DEFAULTS[name]).parameters)


def accepts(fn: Callable[..., object], nargs: int) -> bool:
    """True when `fn` can be called with `nargs` positional arguments (defaults and *args
    count; a required keyword-only parameter does not)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return True
    try:
        sig.bind(*([None] * nargs))
    except TypeError:
        return False
    return True


def is_default(cfg: object, name: str) -> bool:
    """True when hook `name` is still the built-in no-op (hot paths may skip the call)."""
    return getattr(cfg, name) is HOOK_DEFAULTS[name]


def call_hook(
    cfg: object,
    name: str,
    *args: object,
    log: HookLogger | None = None,
    propagate: bool = False,
) -> object:
    """Call hook `name` from `cfg` with `args` and return its result.

    An exception raised by the hook is logged (with traceback) on `log`, or written to stderr
    when there is no logger, and `None` is returned. With `propagate=True` the exception is
    re-raised instead, unlogged, so the caller decides (post_fork / post_worker_init).
    `SystemExit` and `KeyboardInterrupt` always pass through.
    """
    hook: Callable[..., object] = getattr(cfg, name)
    try:
        return hook(*args)
    except Exception:
        if propagate:
            raise
        if log is not None:
            log.exception("Exception in %s hook", name)
        else:
            sys.stderr.write(f"greenhorn: exception in {name} hook\n{traceback.format_exc()}")
            sys.stderr.flush()
        return None


def call_request_hook(
    cfg: object,
    name: str,
    *args: object,
    log: HookLogger,
    leave: tuple[type[BaseException], ...] = (),
) -> bool:
    """Call hook `name` while a request is served; False if it raised.

    Everything it raises is logged with its traceback and contained: `SystemExit`,
    `asyncio.CancelledError` and the rest of `BaseException` too, except the types in
    `leave` (a greenlet being killed must die), which pass through.
    """
    hook: Callable[..., object] = getattr(cfg, name)
    try:
        hook(*args)
    except BaseException as exc:
        if isinstance(exc, leave):
            raise
        log.exception("Exception in %s hook", name)
        return False
    return True
