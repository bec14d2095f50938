"""THE registry of worker types: a name (``-k NAME``) → the class that serves, imported lazily.

Why lazily: gevent and eventlet must monkey-patch before anything else touches sockets or
threads, and only in the child that uses them (gunicorn #1816, #2796). The master never
imports a worker module it does not run. A dotted path picks a custom class.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__all__ = ["WORKER_CLASSES", "MissingExtra", "load_worker_class"]

WORKER_CLASSES = {
    "sync": "greenhorn.workers.sync:SyncWorker",
    "gthread": "greenhorn.workers.gthread:ThreadWorker",
    "gevent": "greenhorn.workers.ggevent:GeventWorker",
    "eventlet": "greenhorn.workers.geventlet:EventletWorker",
}
# gunicorn's spellings keep working.
ALIASES = {
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.geventlet.EventletWorker": "eventlet",
    "egg:gunicorn#sync": "sync",
    "egg:gunicorn#gthread": "gthread",
    "egg:gunicorn#gevent": "gevent",
    "egg:gunicorn#eventlet": "eventlet",
}
EXTRAS = {"gevent": "gevent", "eventlet": "eventlet"}


class MissingExtra(ImportError):
    """A worker type needs an optional dependency that is not installed."""


def resolve_name(name: str, threads: int = 1) -> str:
    """The registry key or dotted path for ``worker_class`` (threads > 1 turns sync into gthread)."""
    name = ALIASES.get(name, name)
    if name == "sync" and threads > 1:
        return "gthread"
    return name


def load_worker_class(name: str, threads: int = 1) -> Any:
    """Import and return the worker class for ``name``."""
    name = resolve_name(name, threads)
    path = WORKER_CLASSES.get(name, name)
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    extra = EXTRAS.get(name)
    missing = f"worker class {name!r} needs {extra}: pip install 'greenhorn[{extra}]'"
    if extra is not None:
        try:
            spec = importlib.util.find_spec(extra)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise MissingExtra(missing)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is not None and (exc.name or "").split(".")[0] == extra:
            raise MissingExtra(missing) from exc
        raise
    return getattr(module, attr)
