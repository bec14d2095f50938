"""Worker classes written for gunicorn, driven by greenhorn's master through gunicorn's contract.

Why it exists: many deployments run a worker class built on ``gunicorn.workers.base.Worker``
(``-k uvicorn.workers.UvicornWorker``, aiohttp's ``GunicornWebWorker``, an in-house
``SyncWorker`` subclass), with gunicorn installed as their library. ``GunicornHost`` is the
greenhorn worker that hosts one object of such a class (the *guest*) and keeps gunicorn's
promises to it:

- the guest is built in the master, before ``fork``, as gunicorn builds it:
  ``cls(age, ppid, sockets, app, timeout, cfg, log)``, where ``sockets`` are the listening
  sockets, ``app`` has gunicorn's ``wsgi()``, ``timeout`` is half of ``--timeout`` (how
  often to notify), ``cfg`` is gunicorn's ``cfg`` over greenhorn's settings
  (``config/gunicorn_cfg.py``) and ``log`` a logger with gunicorn's API
  (``observe/gunicorn_log.py``);
- its ``notify()`` is greenhorn's heartbeat: the guest's ``tmp`` is greenhorn's heartbeat
  file, so a guest that stops notifying for ``--timeout`` seconds is aborted (SIGABRT, then
  SIGKILL) like any greenhorn worker. Its first notify once ``run()`` has started marks it
  booted (a worker that exits before, as uvicorn does when lifespan startup fails, is a boot
  failure and stops the server with its status, as under gunicorn);
- in the child, the guest's own ``init_process`` runs (gunicorn's signal handlers, its
  ``post_worker_init``, its ``run``), and its exit codes are gunicorn's: 0 when ``run``
  returns, the ``SystemExit`` status, 3 for an exception before it booted, 255 after;
  ``worker_exit(server, worker)`` runs last;
- hooks receive the guest, as gunicorn's hooks receive the worker object.

greenhorn's own worker types never come here: gunicorn's names for them
(``gunicorn.workers.sync.SyncWorker``...) are aliases of greenhorn's (``registry.py``).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, NoReturn, cast

from greenhorn.config import hooks
from greenhorn.config.gunicorn_cfg import GunicornConfig, is_subclass_of
from greenhorn.ipc import exits, titles
from greenhorn.ipc.scoreboard import BOOTED, WorkerTmp
from greenhorn.observe.gunicorn_log import for_gunicorn
from greenhorn.workers.base import Listening, Worker

if TYPE_CHECKING:
    from greenhorn.config import Config, HookWorker
    from greenhorn.observe.logger import Logger
    from greenhorn.wsgi.app import AppSource, WSGIApp

__all__ = ["GunicornHost", "host_for", "is_gunicorn_worker"]

UNCAUGHT_AFTER_BOOT = 255  # gunicorn's sys.exit(-1)


def is_gunicorn_worker(cls: object) -> bool:
    """A class built on ``gunicorn.workers.base.Worker`` (found without importing gunicorn)."""
    return is_subclass_of(cls, "gunicorn.workers.base", "Worker")


def host_for(guest_class: type) -> type[GunicornHost]:
    """The greenhorn worker class that hosts objects of ``guest_class``."""
    return type(
        guest_class.__name__,
        (GunicornHost,),
        {"guest_class": guest_class, "__module__": guest_class.__module__},
    )


class GuestApp:
    """The application as gunicorn's workers see it (``gunicorn.app.base.BaseApplication``):
    ``wsgi()`` loads it once, in the worker unless ``--preload`` loaded it in the master. A
    load failure is one error line and gunicorn's exit status (3 or 4), as for greenhorn's
    own workers."""

    def __init__(self, cfg: Config, log: Logger, app: WSGIApp | None, source: AppSource | None):
        self.cfg = GunicornConfig(cfg)
        self.callable: object = app
        self._settings = cfg
        self._log = log
        self._source = source

    def load(self) -> object:
        from greenhorn.wsgi.app import AppImportError, app_label, exit_status, load_configured

        try:
            return load_configured(self._settings, self._source)
        except AppImportError as exc:
            self._log.error("Failed to load application %r: %s", app_label(self._settings), exc)
            raise SystemExit(exit_status(exc)) from None

    def wsgi(self) -> object:
        if self.callable is None:
            self.callable = self.load()
        return self.callable


class _GuestTmp:
    """The guest's ``tmp``: its ``notify()`` beats greenhorn's heartbeat file (and marks the
    worker booted once its ``run()`` has started)."""

    def __init__(self, tmp: WorkerTmp, host: GunicornHost) -> None:
        self._tmp = tmp
        self._host = host

    def notify(self) -> None:
        host = self._host
        if not host.booted and host.running:
            host.booted = True
            self._tmp.board.counters[BOOTED] = 1
        self._tmp.beat()

    def last_update(self) -> float:
        return self._tmp.last_update()

    def fileno(self) -> int:
        return self._tmp.fileno()

    def close(self) -> None:
        """The master owns the file; the guest's close (gunicorn closes it on exit) is a
        no-op here."""


class GunicornHost(Worker):
    """Hosts one worker object of a class written for gunicorn (see the module docstring)."""

    guest_class: ClassVar[type]

    def __init__(
        self,
        age: int,
        ppid: int,
        listeners: Sequence[Listening],
        app: WSGIApp | None,
        cfg: Config,
        log: Logger,
        tmp: WorkerTmp,
        source: AppSource | None = None,
    ) -> None:
        super().__init__(age, ppid, listeners, app, cfg, log, tmp, source)
        self.running = False
        gcfg = GunicornConfig(cfg, worker_class=self.guest_class)
        sockets = [listener.sock for listener in listeners]
        guest_app = GuestApp(cfg, log, app, source)
        timeout = cfg.timeout / 2.0
        self.guest: object = self.guest_class(
            age, ppid, sockets, guest_app, timeout, gcfg, for_gunicorn(log)
        )
        own = getattr(self.guest, "tmp", None)  # gunicorn's own heartbeat file: ours instead
        close = getattr(own, "close", None)
        if callable(close):
            close()
        self.guest.tmp = _GuestTmp(tmp, self)

    @classmethod
    def setup(cls) -> None:
        """gunicorn calls a worker class's ``setup()`` before the application is loaded."""
        setup = getattr(cls.guest_class, "setup", None)
        if callable(setup):
            setup()

    @classmethod
    def check_config(cls, cfg: Config, log: Logger) -> None:
        """gunicorn's ``check_config(cfg, log)`` class hook, with gunicorn's ``cfg``."""
        check = getattr(cls.guest_class, "check_config", None)
        if callable(check):
            check(GunicornConfig(cfg, worker_class=cls.guest_class), for_gunicorn(log))

    def for_hooks(self) -> HookWorker:
        return cast("HookWorker", self.guest)

    def init_process(self) -> NoReturn:
        """In the child: gunicorn's ``init_process`` on the guest, gunicorn's exit codes."""
        guest = self.guest
        self.pid = os.getpid()
        guest.pid = self.pid  # type: ignore[attr-defined]
        cfg = self.cfg
        titles.set_title(titles.worker_title(cfg.proc_name or cfg.default_proc_name))
        self._wrap(guest, "init_signals", after=self._unblock_signals)
        self._wrap(guest, "run", before=self._running)
        code = exits.EXIT_OK
        try:
            guest.init_process()  # type: ignore[attr-defined]
        except SystemExit as exc:
            code = _status(exc.code)
        except BaseException:
            self.log.exception("Exception in worker process")
            booted = bool(getattr(guest, "booted", False)) or self.booted
            code = UNCAUGHT_AFTER_BOOT if booted else exits.WORKER_BOOT_ERROR
        self._leave(code)

    def _running(self) -> None:
        self._unblock_signals()
        self.running = True

    def _unblock_signals(self) -> None:
        """greenhorn blocks the worker's signals across fork; the guest has its handlers
        now, so deliver what was held."""
        if self.sigmask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.sigmask)
            self.sigmask = None

    @staticmethod
    def _wrap(
        guest: object,
        name: str,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        method = getattr(guest, name, None)
        if not callable(method):
            return

        def wrapped(*args: object, **kwargs: object) -> object:
            if before is not None:
                before()
            result = method(*args, **kwargs)
            if after is not None:
                after()
            return result

        setattr(guest, name, wrapped)

    def _leave(self, code: int) -> NoReturn:
        try:
            self.log.info("Worker exiting (pid: %s)", self.pid)
        except Exception:
            pass
        hooks.call_hook(self.cfg, "worker_exit", self.server, self.guest, log=self.log)
        try:
            atexit._run_exitfuncs()
        except Exception:
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

    def run(self) -> None:  # the guest runs; this host never serves itself
        raise NotImplementedError


def _status(code: object) -> int:
    """A ``SystemExit`` code as the process's exit status (as Python itself exits)."""
    if code is None:
        return exits.EXIT_OK
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return exits.EXIT_FAILURE
