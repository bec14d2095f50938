"""THE registry of worker types: a name (``-k NAME``) → the class that serves, imported lazily.

Why lazily: gevent and eventlet must monkey-patch before anything else touches sockets or
threads, and only in the child that uses them (gunicorn #1816, #2796). The master never
imports a worker module it does not run.

To add a worker type: write its ``Worker`` subclass in ``workers/<type>.py`` and add one row
to ``TYPES`` below. Nothing else knows the names: the settings accept any name or dotted
path (``config/converters.worker_class`` checks the spelling only), and ``cli.py`` and the
master ask ``resolve`` here, whose error lists the rows.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenhorn.config.importer import ImportFailed, import_object

if TYPE_CHECKING:
    from greenhorn.workers.base import Worker

__all__ = ["TYPES", "MissingExtra", "UnknownWorker", "canonical", "load_worker_class", "resolve"]


@dataclass(frozen=True, slots=True)
class WorkerType:
    """One worker type: its ``-k`` name, where its class is, the extra it needs."""

    name: str
    path: str  # module:Class, imported only when this type runs
    extra: str | None = None  # the optional dependency (its package, and greenhorn's extra)


TYPES: dict[str, WorkerType] = {
    t.name: t
    for t in (
        WorkerType("sync", "greenhorn.workers.sync:SyncWorker"),
        WorkerType("gthread", "greenhorn.workers.gthread:ThreadWorker"),
        WorkerType("gevent", "greenhorn.workers.ggevent:GeventWorker", extra="gevent"),
        WorkerType("eventlet", "greenhorn.workers.geventlet:EventletWorker", extra="eventlet"),
        WorkerType("asgi", "greenhorn.workers.asgi.worker:AsgiWorker"),
    )
}
# gunicorn's class paths for the same types keep working.
ALIASES = {
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.geventlet.EventletWorker": "eventlet",
    "gunicorn.workers.gasgi.ASGIWorker": "asgi",
}


class UnknownWorker(ImportFailed):
    """``-k`` names no worker type; ``str()`` lists the ones there are."""


class MissingExtra(ImportFailed):
    """A worker type needs an optional dependency that is not installed."""


def canonical(name: str) -> str:
    """The registry name for gunicorn's spellings of a type; other names unchanged."""
    return ALIASES.get(name, name)


def resolve(name: str, threads: int = 1) -> str:
    """The type to run for ``worker_class``: a registry name or a dotted class path.

    ``threads > 1`` turns sync into gthread (as gunicorn does). ``UnknownWorker`` for a
    bare name that is not in ``TYPES``.
    """
    name = canonical(name)
    if name == "sync" and threads > 1:
        return "gthread"
    if "." not in name and ":" not in name and name not in TYPES:
        known = ", ".join(TYPES)
        raise UnknownWorker(f"unknown worker type; expected {known} or a dotted class path")
    return name


def load_worker_class(name: str, threads: int = 1) -> type[Worker]:
    """Import and return the worker class for ``name`` (``ImportFailed`` and its
    subclasses, one line, when it cannot)."""
    name = resolve(name, threads)
    kind = TYPES.get(name)
    if kind is None:  # a dotted path: a custom worker class
        cls = import_object(name)
    else:
        extra = kind.extra
        missing = f"worker class {name!r} needs {extra}: pip install {extra}"
        if extra is not None and not _installed(extra):
            raise MissingExtra(missing)
        try:
            cls = import_object(kind.path)
        except ImportFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ModuleNotFoundError) and (cause.name or "").split(".")[0] == extra:
                raise MissingExtra(missing) from exc
            raise
    if not isinstance(cls, type):
        raise ImportFailed(f"worker class {name!r} is not a class")
    from greenhorn.workers.guest import host_for, is_gunicorn_worker

    if is_gunicorn_worker(cls):  # written for gunicorn: hosted through gunicorn's contract
        return host_for(cls)
    worker_class: type[Worker] = cls
    return worker_class


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False
