"""greenhorn.workers.reload_watcher: syntax checks, the inotify wrapper, and the watcher's decisions with a
fake worker (no processes). Timing constants are shrunk so each test takes milliseconds."""

from __future__ import annotations

import importlib
import importlib.util
import os
import py_compile
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from greenhorn.workers import reload_watcher as reload


class FakeWorker:
    def __init__(self, extra: list[str] | None = None) -> None:
        self.cfg = SimpleNamespace(reload_extra_files=extra or [], reload_engine="auto")
        self.alive = True
        self.reasons: list[str] = []
        self.log = SimpleNamespace(
            lines=[],
            error=lambda msg, *a: self.log.lines.append(("error", msg % a)),
            debug=lambda msg, *a: None,
            exception=lambda msg, *a: self.log.lines.append(("exception", msg % a)),
        )

    def request_reload(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload, "INTERVAL", 0.05)
    monkeypatch.setattr(reload, "DEBOUNCE", 0.05)
    monkeypatch.setattr(reload, "MAX_SETTLE", 1.0)


def bump(path: Path, text: str) -> None:
    """Rewrite ``path`` so that its signature surely changes (mtime moved forward)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def detect(watcher: reload.Watcher, timeout: float = 5.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        changed = watcher.poll_once(0.05) | watcher.refresh()
        if changed:
            return watcher.settle(changed)
    return set()


ENGINES = ["poll", "inotify"]


# -- check_syntax ---------------------------------------------------------------------------------


def test_check_syntax(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("x = 1\n")
    assert reload.check_syntax(str(good)) is None
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\ndef f(:\n    pass\n")
    message = reload.check_syntax(str(bad))
    assert message is not None and message.startswith(f"Syntax error in {bad}:2: ")
    assert "\n" not in message
    indent = tmp_path / "indent.py"
    indent.write_text("if x:\nreturn\n")
    assert f"{indent}:2:" in (reload.check_syntax(str(indent)) or "")
    nul = tmp_path / "nul.py"
    nul.write_bytes(b"x = 1\x00\n")
    assert (reload.check_syntax(str(nul)) or "").startswith(f"Syntax error in {nul}:")
    assert reload.check_syntax(str(tmp_path / "gone.py")) is None


# -- inotify ---------------------------------------------------------------------------------------


def test_inotify_reports_the_directory(tmp_path):
    ino = reload.Inotify()
    try:
        assert ino.watch(str(tmp_path))
        assert not ino.watch(str(tmp_path / "missing"))
        assert ino.read() == (set(), False, set())
        (tmp_path / "f.txt").write_text("x")
        touched, overflow, dropped = ino.read()
        assert touched == {str(tmp_path)} and not overflow and not dropped
    finally:
        ino.close()


def test_inotify_unavailable(monkeypatch):
    def broken(*a: Any, **kw: Any) -> Any:
        raise OSError("no libc here")

    monkeypatch.setattr(reload.ctypes, "CDLL", broken)
    with pytest.raises(reload.ReloadError, match="inotify is not available"):
        reload.choose_engine("inotify")
    assert reload.choose_engine("auto") == "poll"
    assert reload.choose_engine("poll") == "poll"


def test_auto_prefers_inotify_on_linux():
    assert reload.choose_engine("auto") == "inotify"


# -- the watcher ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_extra_file_change_requests_a_reload(tmp_path, engine):
    conf = tmp_path / "settings.toml"
    conf.write_text("a = 1\n")
    worker = FakeWorker([str(conf)])
    watcher = reload.Watcher(worker, engine)
    assert str(conf) in watcher.known
    assert watcher.poll_once(0.05) == set()
    bump(conf, "a = 2\n")
    changed = detect(watcher)
    assert changed == {str(conf)}
    assert watcher.decide(changed)
    assert worker.reasons == [f"{conf} modified"]


@pytest.mark.parametrize("engine", ENGINES)
def test_imported_module_syntax_error_then_fix(tmp_path, engine, monkeypatch):
    mod = tmp_path / "reload_unit_mod.py"
    mod.write_text("TEXT = 'one'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("reload_unit_mod")
    try:
        worker = FakeWorker()
        watcher = reload.Watcher(worker, engine)
        assert str(mod) in watcher.known
        # a syntax error: logged with file:line, no reload
        bump(mod, "TEXT = 'two'\nif True\n")
        changed = detect(watcher)
        assert changed == {str(mod)}
        assert not watcher.decide(changed)
        assert worker.reasons == []
        assert len(worker.log.lines) == 1
        level, line = worker.log.lines[0]
        assert level == "error" and line.startswith(f"Syntax error in {mod}:2: ")
        # fixed: reload, and the stale bytecode is gone so the new workers recompile
        pyc = Path(importlib.util.cache_from_source(str(mod)))
        bump(mod, "TEXT = 'three'\n")
        py_compile.compile(str(mod), cfile=str(pyc))
        assert pyc.exists()
        changed = detect(watcher)
        assert watcher.decide(changed)
        assert worker.reasons == [f"{mod} modified"]
        assert not pyc.exists()
    finally:
        sys.modules.pop("reload_unit_mod", None)


@pytest.mark.parametrize("engine", ENGINES)
def test_atomic_replace_and_delete(tmp_path, engine):
    conf = tmp_path / "c.ini"
    conf.write_text("x")
    worker = FakeWorker([str(conf)])
    watcher = reload.Watcher(worker, engine)
    tmp = tmp_path / "c.ini.tmp"
    tmp.write_text("y")  # same size; the inode changes with the rename
    os.utime(tmp, ns=(conf.stat().st_mtime_ns,) * 2)
    os.replace(tmp, conf)
    assert detect(watcher) == {str(conf)}
    conf.unlink()
    changed = detect(watcher)
    assert changed == {str(conf)}
    watcher.decide(changed)
    assert worker.reasons == [f"{conf} deleted"]


@pytest.mark.parametrize("engine", ENGINES)
def test_glob_pattern_picks_up_new_files(tmp_path, engine):
    templates = tmp_path / "templates"
    (templates / "sub").mkdir(parents=True)
    (templates / "a.html").write_text("a")
    worker = FakeWorker([str(templates / "**" / "*.html")])
    watcher = reload.Watcher(worker, engine)
    assert str(templates / "a.html") in watcher.known
    assert detect(watcher, timeout=0.3) == set()
    new = templates / "sub" / "b.html"
    new.write_text("b")
    assert detect(watcher) == {str(new)}
    (templates / "ignored.txt").write_text("nope")
    assert detect(watcher, timeout=0.3) == set()


def test_debounce_collects_a_burst(tmp_path):
    files = [tmp_path / f"f{i}.cfg" for i in range(3)]
    for f in files:
        f.write_text("0")
    worker = FakeWorker([str(f) for f in files])
    watcher = reload.Watcher(worker, "inotify")

    def editor() -> None:
        for i, f in enumerate(files):
            bump(f, str(i + 1))
            time.sleep(0.02)

    thread = threading.Thread(target=editor)
    thread.start()
    changed = detect(watcher)
    thread.join(5)
    assert changed == {str(f) for f in files}
    watcher.decide(changed)
    assert worker.reasons == [f"{files[0]} modified (and 2 more)"]


@pytest.mark.parametrize("engine", ENGINES)
def test_start_watching_runs_until_the_worker_stops(tmp_path, engine):
    conf = tmp_path / "x.conf"
    conf.write_text("1")
    worker = FakeWorker([str(conf)])
    worker.cfg.reload_engine = engine
    before = {t.ident for t in threading.enumerate()}
    reload.start_watching(worker)
    threads = [t for t in threading.enumerate() if t.ident not in before]
    assert [t.name for t in threads] == ["greenhorn-reload"]
    assert threads[0].daemon
    bump(conf, "2")
    deadline = time.monotonic() + 5
    while not worker.reasons and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.reasons == [f"{conf} modified"]
    worker.alive = False
    threads[0].join(5)
    assert not threads[0].is_alive()


def test_unwatchable_directory_falls_back_to_polling(tmp_path, monkeypatch):
    conf = tmp_path / "y.conf"
    conf.write_text("1")
    monkeypatch.setattr(reload.Inotify, "watch", lambda self, d: False)
    watcher = reload.Watcher(FakeWorker([str(conf)]), "inotify")
    assert str(conf) in watcher.unwatched
    bump(conf, "2")
    deadline = time.monotonic() + 5
    changed: set[str] = set()
    while not changed and time.monotonic() < deadline:
        changed = watcher.poll_once(0.05)
    assert changed == {str(conf)}


def test_start_watching_without_inotify_exits_the_worker(monkeypatch):
    def broken(*a: Any, **kw: Any) -> Any:
        raise OSError("no libc here")

    monkeypatch.setattr(reload.ctypes, "CDLL", broken)
    worker = FakeWorker()
    worker.cfg.reload_engine = "inotify"
    with pytest.raises(SystemExit) as info:
        reload.start_watching(worker)
    assert info.value.code == 3
    assert worker.log.lines == [
        (
            "error",
            "Cannot watch for code changes (--reload): inotify is not available on this "
            "platform: no libc here",
        )
    ]


def test_inotify_read_never_blocks_on_a_patched_os_read(tmp_path, monkeypatch):
    """eventlet's os.read waits for readability instead of raising EAGAIN: not used."""

    def green_read(fd: int, n: int) -> bytes:
        raise AssertionError("os.read must not be used")

    monkeypatch.setattr(os, "read", green_read)
    ino = reload.Inotify()
    try:
        assert ino.watch(str(tmp_path))
        assert ino.read() == (set(), False, set())
        (tmp_path / "f").write_text("x")
        assert ino.read()[0] == {str(tmp_path)}
    finally:
        ino.close()
