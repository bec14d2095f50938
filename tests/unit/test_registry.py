"""workers/registry.py: the one table of worker types, and how a name becomes a class."""

from __future__ import annotations

import pytest

from greenhorn.config.importer import ImportFailed
from greenhorn.workers import registry
from greenhorn.workers.base import Worker
from greenhorn.workers.gthread import ThreadWorker
from greenhorn.workers.sync import SyncWorker


@pytest.mark.parametrize(
    ("name", "threads", "expected"),
    [
        ("sync", 1, "sync"),
        ("sync", 4, "gthread"),  # gunicorn: a sync worker with threads runs as gthread
        ("gthread", 1, "gthread"),
        ("gunicorn.workers.sync.SyncWorker", 1, "sync"),
        ("gunicorn.workers.ggevent.GeventWorker", 1, "gevent"),
        ("gunicorn.workers.gasgi.ASGIWorker", 1, "asgi"),
        ("mypkg.workers.Custom", 1, "mypkg.workers.Custom"),
    ],
)
def test_resolve(name: str, threads: int, expected: str) -> None:
    assert registry.resolve(name, threads) == expected


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(registry.UnknownWorker) as info:
        registry.resolve("tornado")
    assert str(info.value) == (
        "unknown worker type; expected sync, gthread, gevent, eventlet, asgi or a dotted class path"
    )


def test_the_error_lists_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a type is one row: the settings, the CLI and the error all follow it."""
    extra = registry.WorkerType("mine", "greenhorn.workers.sync:SyncWorker")
    monkeypatch.setitem(registry.TYPES, "mine", extra)
    assert registry.resolve("mine") == "mine"
    assert registry.load_worker_class("mine") is SyncWorker
    with pytest.raises(registry.UnknownWorker, match="asgi, mine or a dotted"):
        registry.resolve("nope")


def test_load_worker_class() -> None:
    assert registry.load_worker_class("sync") is SyncWorker
    assert registry.load_worker_class("sync", threads=2) is ThreadWorker
    assert registry.load_worker_class("greenhorn.workers.base.Worker") is Worker
    assert registry.load_worker_class("greenhorn.workers.base:Worker") is Worker


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuchpkg.Worker", "module 'nosuchpkg' not found"),
        ("greenhorn.workers.base.Nope", "'greenhorn.workers.base' has no attribute 'Nope'"),
        ("greenhorn.workers.base.WORKER_IGNORED", "is not a class"),
    ],
)
def test_load_errors_are_one_line(name: str, message: str) -> None:
    with pytest.raises(ImportFailed) as info:
        registry.load_worker_class(name)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_installed", lambda package: False)
    with pytest.raises(registry.MissingExtra, match=r"needs gevent: pip install gevent"):
        registry.load_worker_class("gevent")
