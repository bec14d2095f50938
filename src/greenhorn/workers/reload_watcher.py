"""``--reload``: watch the application's source files and ask the master for a reload.

Why it exists: during development the server should pick up code changes by itself. Each
worker runs a small watcher (``start_watching``) over the files of every module it has
imported (``sys.modules[*].__file__``, re-read every second because modules import lazily)
plus ``reload_extra_files`` (literal paths, or glob patterns expanded on every check). When a
file changes, the watcher does not exit the worker: it calls ``worker.request_reload``, and
the master boots a new generation of workers and retires the old one only once the new one
is up (rolling back if it cannot boot). Before asking, a changed ``.py`` file is compiled;
on a syntax error the watcher logs one line naming ``file:line`` and does *not* reload, so
the old workers keep serving until the file is fixed.

Engines (``reload_engine``):

- ``inotify``: Linux inotify on the directories that contain the watched files. An event in
  a directory only tells us *where* to look: the files of that directory are re-stat'ed
  and compared with their last signature (mtime, size, inode). Directories that cannot be
  watched (e.g. ``max_user_watches`` reached) fall back to polling for their files, and a
  queue overflow re-checks everything. Where inotify is unavailable the worker logs why
  (one line) and exits with the boot-error status.
- ``poll``: stat every watched file once a second.
- ``auto``: inotify when the platform has it, else poll.

Why hand-written ctypes rather than a package: runtime dependencies are stdlib plus
setproctitle, and the part of inotify we need is three libc calls (``inotify_init1``,
``inotify_add_watch`` and ``read`` of a fixed 16-byte event header), which is less code
than adapting a package's event model, and has no native build step.

Before asking for the reload, the cached bytecode (``__pycache__/*.pyc``) of each changed
``.py`` file is removed: Python checks a ``.pyc`` against the source's mtime in whole seconds
and its size, so an edit within the same second that keeps the size would otherwise let the
new generation import the old code.

Debounce: editors save in several steps (truncate, write, rename, chmod). After the first
change the watcher waits until the files have been quiet for ``DEBOUNCE`` seconds (at most
``MAX_SETTLE``) and then decides once for the whole batch.

Threads and green workers: the watcher runs in a daemon thread. Under gevent or eventlet
``threading`` is monkey-patched and that thread is a greenlet, so the watcher must never
block the hub: in that case it waits with ``time.sleep`` (cooperative there) instead of
blocking in ``poll``, and it always reads the non-blocking inotify descriptor through libc
(eventlet's patched ``os.read`` would wait for the next event instead of returning).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import importlib.util
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from greenhorn.ipc.exits import WORKER_BOOT_ERROR

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.observe.logger import Logger

__all__ = ["Inotify", "ReloadError", "Watcher", "check_syntax", "choose_engine", "start_watching"]

INTERVAL = 1.0  # seconds between checks (poll) and between module-set refreshes
DEBOUNCE = 0.3  # quiet time that ends a burst of writes
MAX_SETTLE = 3.0  # a file rewritten continuously still gets a decision after this
GREEN_TICK = 0.2  # how often a green watcher looks at the inotify queue

# <sys/inotify.h>
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

Signature = tuple[int, int, int] | None


class Watched(Protocol):
    """The worker whose source is watched (``workers.base.Worker``)."""

    alive: bool

    @property
    def cfg(self) -> Config: ...

    @property
    def log(self) -> Logger: ...

    def request_reload(self, reason: str) -> None: ...  # (mtime_ns, size, inode); None: missing


class ReloadError(Exception):
    """The reloader cannot run as configured (e.g. inotify asked for but unavailable)."""


# -- inotify -----------------------------------------------------------------------------------


class Inotify:
    """A non-blocking inotify descriptor watching directories (Linux, through libc)."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init1 = libc.inotify_init1
            add_watch = libc.inotify_add_watch
        except (OSError, AttributeError) as exc:
            raise ReloadError(f"inotify is not available on this platform: {exc}") from None
        init1.argtypes = [ctypes.c_int]
        init1.restype = ctypes.c_int
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        add_watch.restype = ctypes.c_int
        # read(2) through libc as well: eventlet's monkey-patched os.read waits for the
        # descriptor to become readable instead of raising EAGAIN, which would park the
        # watcher until the next event and stop its periodic refresh.
        read = libc.read
        read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        read.restype = ctypes.c_ssize_t
        self._add_watch = add_watch
        self._read = read
        self._buf = ctypes.create_string_buffer(65536)
        fd = init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise ReloadError(f"inotify_init1 failed: {os.strerror(err)}")
        self.fd = fd
        self.dirs: dict[int, set[str]] = {}  # watch descriptor -> directories (symlinks share)

    def watch(self, directory: str) -> bool:
        """Watch ``directory``; False when the kernel refuses (gone, limit reached)."""
        wd = self._add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            return False
        self.dirs.setdefault(wd, set()).add(directory)
        return True

    def read(self) -> tuple[set[str], bool, set[str]]:
        """Pending events as (directories touched, queue overflowed, directories dropped)."""
        touched: set[str] = set()
        dropped: set[str] = set()
        overflow = False
        while True:
            n = self._read(self.fd, self._buf, len(self._buf))
            if n < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                break  # EAGAIN: nothing pending (or the descriptor is gone)
            if n == 0:
                break
            buf = self._buf.raw[:n]
            pos = 0
            while pos + _EVENT.size <= len(buf):
                wd, mask, _cookie, size = _EVENT.unpack_from(buf, pos)
                pos += _EVENT.size + size
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                dirs = self.dirs.get(wd, ())
                touched.update(dirs)
                if mask & IN_IGNORED:
                    dropped.update(self.dirs.pop(wd, ()))
        return touched, overflow, dropped

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


# -- the watcher ---------------------------------------------------------------------------------


class Watcher:
    """Tracks file signatures and turns changes into ``worker.request_reload`` calls."""

    def __init__(self, worker: Watched, engine: str) -> None:
        self.worker = worker
        self.log = worker.log
        self.engine = engine
        self.inotify = Inotify() if engine == "inotify" else None
        self.green = _green_threads()
        self.known: dict[str, Signature] = {}
        self.by_dir: dict[str, set[str]] = {}  # directory -> known files in it (path or real)
        self.watched_dirs: set[str] = set()
        self.unwatched: set[str] = set()  # files whose directory inotify could not watch
        self.literal_extra: list[str] = []
        self.patterns: list[str] = []
        for item in worker.cfg.reload_extra_files or ():
            path = os.path.abspath(item)
            if any(c in item for c in "*?["):
                self.patterns.append(path)
            else:
                self.literal_extra.append(path)
        self.refresh(initial=True)

    # -- discovery ---------------------------------------------------------------------------

    def candidates(self) -> Iterable[str]:
        """Every file that should be watched now (modules, extra files, pattern matches)."""
        for module in sys.modules.copy().values():
            try:
                path = getattr(module, "__file__", None)
            except Exception:
                continue
            if isinstance(path, str) and path:
                yield path
        yield from self.literal_extra

    def refresh(self, initial: bool = False) -> set[str]:
        """Pick up newly imported modules (their current state is the baseline) and new
        pattern matches (a change, after the first call). Returns the changed paths."""
        changed: set[str] = set()
        for path in self.candidates():
            path = os.path.abspath(path)
            if path not in self.known and os.path.isfile(path):
                self.add(path)
        for pattern in self.patterns:
            for path in glob.glob(pattern, recursive=True):
                if path not in self.known and os.path.isfile(path):
                    self.add(path)
                    if not initial:
                        changed.add(path)
        return changed

    def add(self, path: str) -> None:
        self.known[path] = _signature(path)
        dirs = {os.path.dirname(path), os.path.dirname(os.path.realpath(path))}
        watched = True
        for directory in dirs:
            self.by_dir.setdefault(directory, set()).add(path)
            watched = self._watch_dir(directory) and watched
        if not watched:
            self.unwatched.add(path)

    def _watch_dir(self, directory: str) -> bool:
        if self.inotify is None:
            return False
        if directory in self.watched_dirs:
            return True
        if not self.inotify.watch(directory):
            return False
        self.watched_dirs.add(directory)
        return True

    # -- detection ---------------------------------------------------------------------------

    def changed(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` whose signature differs from the last one (baseline updated)."""
        out = set()
        for path in paths:
            sig = _signature(path)
            if self.known.get(path, sig) != sig:
                out.add(path)
            self.known[path] = sig
        return out

    def poll_once(self, timeout: float) -> set[str]:
        """Wait up to ``timeout`` for something to change; return the changed paths."""
        if self.inotify is None:
            self._sleep(timeout)
            return self.changed(list(self.known)) | self.refresh()
        touched, overflow, dropped = self._wait_events(timeout)
        for directory in dropped:
            self.watched_dirs.discard(directory)
            for path in self.by_dir.get(directory, ()):
                self.unwatched.add(path)  # polled until the directory can be watched again
        if overflow:
            paths: set[str] = set(self.known)
        else:
            paths = set(self.unwatched)
            for directory in touched:
                paths.update(self.by_dir.get(directory, ()))
        return self.changed(paths)

    def _wait_events(self, timeout: float) -> tuple[set[str], bool, set[str]]:
        assert self.inotify is not None
        if self.green:
            self._sleep(min(timeout, GREEN_TICK))
        else:
            poller = select.poll()
            poller.register(self.inotify.fd, select.POLLIN)
            try:
                poller.poll(timeout * 1000.0)
            except InterruptedError:
                pass
        return self.inotify.read()

    def settle(self, changed: set[str]) -> set[str]:
        """Wait until the files stop changing (debounce); return everything that changed."""
        until = time.monotonic() + MAX_SETTLE
        while time.monotonic() < until:
            self._sleep(DEBOUNCE)
            if self.inotify is None:
                more = self.changed(list(self.known))
            else:
                more = self.changed(changed) | self.poll_once(0.0)
            if not more:
                break
            changed |= more
        return changed

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)  # cooperative under gevent/eventlet monkey-patching

    # -- decision ----------------------------------------------------------------------------

    def decide(self, changed: set[str]) -> bool:
        """Ask for a reload unless a changed Python file does not compile. True if asked."""
        broken = False
        for path in sorted(changed):
            if path.endswith(".py"):
                error = check_syntax(path)
                if error is not None:
                    self.log.error("%s; not reloading, the running workers keep serving", error)
                    broken = True
        if broken:
            return False
        for path in changed:
            if path.endswith(".py"):
                _drop_bytecode(path)
        first = sorted(changed)[0]
        what = "deleted" if self.known.get(first) is None else "modified"
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        self.worker.request_reload(f"{first} {what}{more}")
        return True

    def run(self) -> None:
        """The watcher loop (daemon thread or greenlet) until the worker stops."""
        last_refresh = time.monotonic()
        try:
            while self.worker.alive:
                changed = self.poll_once(INTERVAL)
                now = time.monotonic()
                if self.inotify is not None and now - last_refresh >= INTERVAL:
                    changed |= self.refresh()
                    last_refresh = now
                if changed and self.worker.alive:
                    self.decide(self.settle(changed))
        except Exception:
            self.log.exception("The reload watcher failed; --reload is off in this worker")
        finally:
            if self.inotify is not None:
                self.inotify.close()


def check_syntax(path: str) -> str | None:
    """None when ``path`` compiles (or cannot be read); else one line ``Syntax error in
    FILE:LINE: MESSAGE``."""
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError:
        return None
    try:
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        message = " ".join(str(exc.msg).split())
        return f"Syntax error in {exc.filename or path}:{exc.lineno or 0}: {message}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"Syntax error in {path}:0: {' '.join(str(exc).split())}"
    return None


def choose_engine(name: str) -> str:
    """``inotify`` or ``poll`` for the ``reload_engine`` setting (auto picks inotify if it
    works here); raises ``ReloadError`` when inotify is asked for and unavailable."""
    if name == "poll":
        return "poll"
    if name == "inotify":
        Inotify().close()  # raises ReloadError with the reason
        return "inotify"
    try:
        Inotify().close()
    except ReloadError:
        return "poll"
    return "inotify"


def start_watching(worker: Watched) -> None:
    """Take a baseline of the worker's files now, then watch them in a daemon thread.

    When the engine cannot run (``inotify`` asked for where it is unavailable) the reason is
    logged as one error line and the worker exits with the boot-error status, so the master
    stops with "Worker failed to boot" instead of serving without the reloader.
    """
    try:
        engine = choose_engine(str(worker.cfg.reload_engine))
        watcher = Watcher(worker, engine)
    except ReloadError as exc:
        worker.log.error("Cannot watch for code changes (--reload): %s", exc)
        raise SystemExit(WORKER_BOOT_ERROR) from exc
    worker.log.debug("Reloader: watching %d files (%s)", len(watcher.known), engine)
    thread = threading.Thread(target=watcher.run, name="greenhorn-reload", daemon=True)
    thread.start()


def _drop_bytecode(path: str) -> None:
    """Remove the cached ``.pyc`` of a changed source. Python validates it by the source's
    mtime in whole seconds and its size, so an edit within the same second that keeps the
    size would let the new workers import the old bytecode."""
    try:
        os.unlink(importlib.util.cache_from_source(path))
    except (OSError, ValueError, NotImplementedError):
        pass


def _signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _green_threads() -> bool:
    """True when ``threading`` is monkey-patched by gevent or eventlet."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            if monkey.is_module_patched("threading"):
                return True
        except Exception:
            pass
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None:
        try:
            if patcher.is_monkey_patched("thread"):
                return True
        except Exception:
            pass
    return False
