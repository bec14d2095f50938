"""The master process: open the sockets, fork the workers, watch them, obey signals.

Why it reads as a list of verbs: the loop below is the whole job. The state lives in the
parts the arbiter owns, each in a module of its own:

    listeners   Listeners     the listening sockets (listeners.py)
    table       WorkerTable   the live workers and what was sent to them (worker_table.py)
    handover    HandOver      HUP generations and USR2 upgrades (handover.py)
    scaler      Scaler        the worker target, autoscaling, recycling (scaling.py)
    tmp_dir     TmpDir        where heartbeat files are made, if it vanishes (tmp_dir.py)
    observer    Observer      samples, totals and the status (observer.py)
    endpoints   Endpoints     /metrics and the control socket (observer.py, metrics.py,
                              control.py)

Signals arrive as bytes on a pipe (``ipc/signals.py``) and are dispatched here, never in
signal context. Decisions about how many workers to run and whom to kill are pure
functions in ``policy.py``; this module gathers the facts, applies the decisions through
the parts and logs them.

    run:  start → loop { dispatch signals → reap → murder late → scale → manage count
                         → check ready → reload requests } → stop → cleanup

Graceful stop (TERM) is built so that new connections are refused at once while queued
ones are still served: the master closes its listening sockets and asks each worker to
drain (``ipc/scoreboard.py``: ``DRAIN``); each worker's control thread accepts what the
kernel already queued and closes its own copy, so the socket leaves LISTEN within
milliseconds instead of when the slowest request ends.

Hooks receive the arbiter as ``server``: its attributes keep gunicorn's names (``cfg``,
``log``, ``pid``, ``app``, ``WORKERS``, ``LISTENERS``, ``num_workers``, ``worker_class``,
``pidfile``, ``reexec_pid``, ``master_pid``, ``proc_name``).
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from greenhorn import __version__
from greenhorn.config import hooks, shown_settings
from greenhorn.ipc import exits, titles
from greenhorn.ipc.scoreboard import EXIT_REASON
from greenhorn.ipc.signals import MASTER_SIGNALS, WORKER_SIGNALS, SignalPipe
from greenhorn.ipc.signals import name as signame
from greenhorn.master import policy, systemd
from greenhorn.master.control import run_command
from greenhorn.master.handover import HandOver
from greenhorn.master.listeners import Listener, Listeners
from greenhorn.master.observer import Endpoints, MasterFacts, Observer
from greenhorn.master.pidfile import Pidfile, PidfileError
from greenhorn.master.scaling import Scaler
from greenhorn.master.tmp_dir import TmpDir
from greenhorn.master.worker_table import WorkerTable

if TYPE_CHECKING:
    from greenhorn.config import Config, Server
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.base import Worker
    from greenhorn.wsgi.app import AppSource, WSGIApp

__all__ = ["Arbiter"]

LOOP_SECONDS = 1.0
BOOT_FAILURES = {
    exits.WORKER_BOOT_ERROR: "Worker failed to boot.",
    exits.APP_LOAD_ERROR: "App failed to load.",
}


class Arbiter:
    """The master process. Attributes read by hooks keep gunicorn's names."""

    def __init__(
        self,
        cfg: Config,
        argv: list[str] | None = None,
        cwd: str | None = None,
        source: AppSource | None = None,
        reload_config: Callable[[], Config | None] | None = None,
        exec_argv: Sequence[str] | None = None,
    ) -> None:
        """``argv``: the command line after the program name (read again on HUP); ``cwd``:
        where it was started. The Python API (``greenhorn.app.base``) also gives
        ``source``, the object whose ``wsgi()`` loads the application, ``reload_config``,
        what HUP reads the settings from instead of ``argv``, and ``exec_argv``, the whole
        command USR2 re-executes (its script instead of ``greenhorn``)."""
        self.cfg = cfg
        self.source = source
        self.reload_config = reload_config
        self.log: Logger = None  # type: ignore[assignment]  # set first thing in start()
        self.pid = os.getpid()
        self.app: WSGIApp | None = None  # the application, with --preload
        self.worker_class: type[Worker] = None  # type: ignore[assignment]  # set in start()
        self.pidfile: Pidfile | None = None
        self.signals = SignalPipe()
        self.state = "starting"  # running, stopping
        self.stopping = False
        self.halt: tuple[int, str] | None = None  # (exit code, reason): stop the server
        self.table = WorkerTable()
        self.listeners = Listeners()
        self.handover = HandOver(
            list(argv or []), cwd if cwd is not None else os.getcwd(), exec_argv=exec_argv
        )
        self.scaler = Scaler(cfg, self.log, self.table, self.workers_changed)
        self.observer = Observer()
        self.endpoints = Endpoints()
        self.tmp_dir = TmpDir(cfg.worker_tmp_dir)

    # -- gunicorn's names ------------------------------------------------------------------

    @property
    def WORKERS(self) -> dict[int, Worker]:
        return self.table.workers

    @property
    def LISTENERS(self) -> list[Listener]:
        return self.listeners.sockets

    @property
    def num_workers(self) -> int:
        return self.scaler.target

    @num_workers.setter
    def num_workers(self, count: int) -> None:
        self.scaler.set_target(count)

    @property
    def timeout(self) -> int:
        return self.cfg.timeout

    @property
    def master_name(self) -> str:
        """gunicorn's ``Master``, ``Master.2`` while we are the new master of an upgrade."""
        return "Master.2" if self.handover.upgrading else "Master"

    @property
    def worker_age(self) -> int:
        return self.table.spawned

    @property
    def generation(self) -> int:
        return self.handover.generation

    @property
    def reexec_pid(self) -> int:
        return self.handover.child_pid

    @property
    def master_pid(self) -> int:
        return self.handover.parent_pid

    @property
    def argv(self) -> list[str]:
        return self.handover.argv

    @property
    def proc_name(self) -> str:
        """``--name`` (or the app), with gunicorn's ``.2`` while we are the new master of an
        upgrade whose old master still runs."""
        name = self.cfg.proc_name or self.cfg.default_proc_name
        return f"{name}.2" if self.handover.upgrading else name

    # -- entry -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit code."""
        titles.init_title()
        code = self.start()
        if code is not None:
            self.cleanup()
            return code
        try:
            code = self.loop()
        except KeyboardInterrupt:
            self.stop(graceful=False)
            code = exits.EXIT_OK
        except Exception:
            self.log.exception("Unhandled exception in the main loop")
            self.stop(graceful=False)
            code = exits.EXIT_FAILURE
        self.cleanup()
        return code

    def start(self) -> int | None:
        """Everything before the first fork. Returns an exit code when it cannot start."""
        self.handover.clear_environment()
        if self.cfg.daemon and not self.handover.upgrading:
            # a USR2 child is detached already, and must stay the old master's child
            # (handover.py: how it knows when to take over)
            from greenhorn.master import daemon

            daemon.daemonize(self.cfg.enable_stdio_inheritance)
            self.pid = os.getpid()
        steps: tuple[Callable[[], int | None], ...] = (
            self.open_log,
            self.load_worker_class,
            self.size,
            self.load_app,
            self.check_worker_settings,
            self.open_listeners,
            self.write_pidfile,
        )
        for step in steps:
            code = step()
            if code is not None:
                return code
        self.signals.install(MASTER_SIGNALS)
        self.announce()
        if not self.endpoints.open(
            self.cfg,
            self.log,
            pid=self.pid,
            takeover=bool(self.master_pid),
            status=self.status,
            dispatch=self.control,
        ):
            return exits.EXIT_FAILURE
        if self.cfg.capture_output:
            self.log.capture_output()
        self.log.close_on_exec()
        if self.app is not None:
            gc.collect()
            gc.freeze()  # keep the preloaded heap out of copy-on-write churn
        return self.start_hook("when_ready")

    def open_log(self) -> int | None:
        from greenhorn import observe

        try:
            self.log = observe.create(self.cfg)
        except Exception as exc:
            sys.stderr.write(f"greenhorn: error: cannot set up logging: {exc}\n")
            return exits.EXIT_FAILURE
        self.scaler.log = self.log
        titles.set_title(titles.master_title(self.proc_name))
        return None

    def load_worker_class(self) -> int | None:
        """The worker class, and its ``setup()`` (gevent and eventlet patch here, before
        the application is imported)."""
        from greenhorn.config.importer import ImportFailed
        from greenhorn.workers.registry import load_worker_class

        try:
            self.worker_class = load_worker_class(self.cfg.worker_class, self.cfg.threads)
        except ImportFailed as exc:
            self.log.error("Cannot load worker class %r: %s", self.cfg.worker_class, exc)
            return exits.EXIT_USAGE
        setup = getattr(self.worker_class, "setup", None)
        if callable(setup):
            setup()
        check = getattr(self.worker_class, "check_config", None)  # gunicorn's class hook
        if callable(check):
            try:
                check(self.cfg, self.log)
            except Exception as exc:
                self.log.error(
                    "Worker class %r refuses the settings: %s", self.cfg.worker_class, exc
                )
                return exits.EXIT_USAGE
        return None

    def size(self) -> int | None:
        """The first worker target, then ``on_starting``."""
        self.scaler.start()
        return self.start_hook("on_starting")

    def start_hook(self, name: str) -> int | None:
        """``on_starting`` or ``when_ready``: one that raises stops the start (exit 1, as
        gunicorn), logged with its traceback; hooks called later are only logged."""
        try:
            hooks.call_hook(self.cfg, name, self, propagate=True)
        except Exception:
            self.log.exception("Exception in %s hook: not starting", name)
            return exits.EXIT_FAILURE
        return None

    def load_app(self) -> int | None:
        """With ``--preload`` import the application now; else only check it can be found.

        The exit statuses are gunicorn's: with ``--preload`` 1 whatever the failure; without
        it a missing module is what a worker would fail to boot on (3, ``exit_status``)."""
        from greenhorn.wsgi.app import (
            AppImportError,
            app_label,
            check_configured_app,
            exit_status,
            load_configured,
        )

        try:
            if self.cfg.preload_app:
                self.app = load_configured(self.cfg, self.source)
            elif self.source is None:
                check_configured_app(self.cfg)
        except AppImportError as exc:
            self.log.error("Failed to load application %r: %s", app_label(self.cfg), exc)
            return exits.EXIT_FAILURE if self.cfg.preload_app else exit_status(exc)
        return None

    def check_worker_settings(self) -> int | None:
        """What every worker would fail on: check it once here, with one line."""
        cfg = self.cfg
        if cfg.reload:
            from greenhorn.workers import reload_watcher

            try:
                reload_watcher.choose_engine(cfg.reload_engine)
            except reload_watcher.ReloadError as exc:
                self.log.error("Cannot watch for code changes (--reload): %s", exc)
                return exits.EXIT_USAGE
        if "h2" in cfg.http_protocols:
            from greenhorn.http import http2

            if not http2.available():
                self.log.error(
                    "HTTP/2 (--http-protocols %s) needs the h2 library, version 4.1 or later: "
                    "pip install 'greenhorn[http2]'",
                    ",".join(cfg.http_protocols),
                )
                return exits.EXIT_USAGE
            if not getattr(self.worker_class, "speaks_http2", False):
                self.log.warning(
                    "The %s worker serves HTTP/1.1 only: --http-protocols h2 needs "
                    "-k gthread, -k gevent or -k asgi; serving HTTP/1.1",
                    self.worker_class_name,
                )
        if cfg.certfile:
            from greenhorn.workers import tls

            try:
                tls.server_context(cfg)  # fail now, with one line, not in every worker
            except Exception as exc:
                self.log.error("Invalid TLS settings: %s", exc)
                return exits.EXIT_FAILURE
        return None

    def open_listeners(self) -> int | None:
        cfg = self.cfg
        try:
            self.listeners.open(
                cfg.bind,
                backlog=cfg.backlog,
                reuse_port=cfg.reuse_port,
                umask=cfg.umask,
                defer=cfg.defer_accept,
                owner=self.owner(),
                log=self.log.error,
            )
        except (OSError, ValueError) as exc:
            self.log.error("%s", exc)
            return exits.EXIT_FAILURE
        return None

    def write_pidfile(self) -> int | None:
        if not self.cfg.pidfile:
            return None
        self.pidfile = Pidfile(self.handover.pidfile_path(self.cfg.pidfile))
        try:
            self.pidfile.create(self.pid)
        except (PidfileError, OSError) as exc:
            self.pidfile = None
            self.log.error("%s", exc)
            return exits.EXIT_FAILURE
        return None

    def announce(self) -> None:
        self.log.info("Starting greenhorn %s", __version__)
        scheme = "https" if self.cfg.certfile else "http"
        for listener in self.listeners:
            self.log.info("Listening at: %s (%s)", listener.url(scheme), self.pid)
        self.log.info("Using worker: %s", self.worker_class_name)

    @property
    def worker_class_name(self) -> str:
        """The worker type that runs: ``gthread`` for sync with ``threads`` > 1, as the
        log line, /metrics and ``greenhorn ctl`` say (gunicorn's log line says so too)."""
        from greenhorn.workers.registry import resolve

        return resolve(str(self.cfg.worker_class), self.cfg.threads)

    def owner(self) -> tuple[int, int] | None:
        """Who the socket and scoreboard files belong to: ``--user``/``--group`` when those
        differ from ours (the workers run as them), else None."""
        uid, gid = self.cfg.user, self.cfg.group
        if (uid, gid) == (os.geteuid(), os.getegid()):
            return None
        return uid, gid

    # -- the loop --------------------------------------------------------------------------

    def loop(self) -> int:
        self.state = "running"
        self.manage_workers()
        fd = self.signals.fileno()
        while True:
            old_master = self.handover.promoted()
            if old_master:
                self.promote(old_master)
            ready = self.wait(fd, LOOP_SECONDS)
            for sig in self.signals.read() if fd in ready else ():
                code = self.dispatch(sig)
                if code is not None:
                    return code
            self.reap_workers()
            if self.halt is not None:
                code, reason = self.halt
                self.log.error("Shutting down: %s", reason)
                self.stop(graceful=False)
                return code
            self.murder_workers()
            self.table.note_boots()
            self.observer.sample(self.table, read_rss=self.scaler.watches_memory)
            views = self.observer.views(self.table)
            backlog = self.listeners.backlog()
            self.scaler.step(views, backlog, self.generation)
            self.report_backlog(backlog)
            self.manage_workers()
            self.check_ready()
            self.check_reload_requests()

    def report_backlog(self, backlog: int) -> None:
        """``--enable-backlog-metric``: the connections waiting in the accept queues, once
        a loop, sent as gunicorn sends it (``gunicorn.backlog``, a StatsD histogram, with
        the configured prefix) through its logger's ``extra`` protocol."""
        if self.cfg.enable_backlog_metric:
            metric = {"metric": "gunicorn.backlog", "value": backlog, "mtype": "histogram"}
            self.log.debug("socket backlog: %d", backlog, extra=metric)

    def wait(self, fd: int, seconds: float) -> list[int]:
        """Sleep until a signal arrives or ``seconds`` pass; /metrics and ctl are served."""
        return self.endpoints.wait(fd, seconds, self.log)

    def dispatch(self, sig: int) -> int | None:
        """Handle one queued signal; return an exit code to stop."""
        if sig == signal.SIGCHLD:
            self.reap_workers()
            return None
        self.log.info("Handling signal: %s", signame(sig).lower())
        if sig == signal.SIGTERM:
            self.stop(graceful=True)
            return exits.EXIT_OK
        if sig in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False)
            return exits.EXIT_OK
        if sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGTTIN:
            self.num_workers += 1
        elif sig == signal.SIGTTOU:
            self.num_workers = max(1, self.num_workers - 1)
        elif sig == signal.SIGUSR1:
            self.reopen_logs()
        elif sig == signal.SIGUSR2:
            self.reexec()
        elif sig == signal.SIGWINCH:
            if self.cfg.daemon:
                self.log.info("graceful stop of workers")
                self.num_workers = 0
                self.table.kill_all(signal.SIGTERM)
            else:
                self.log.debug("SIGWINCH ignored. Not daemonized")
        return None

    def workers_changed(self, new: int, old: int | None) -> None:
        """The worker target changed (the scaler calls this)."""
        self.call_hook("nworkers_changed", self, new, old)

    def reopen_logs(self) -> None:
        """USR1: reopen the log files here and in every worker (after logrotate)."""
        self.log.reopen_files()
        self.table.kill_all(signal.SIGUSR1)

    # -- what /metrics and greenhorn ctl see and do ----------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything /metrics and ``greenhorn ctl`` show."""
        facts = MasterFacts(
            state=self.state,
            ready=self.handover.ready and not self.stopping,
            workers_target=self.num_workers,
            generation=self.generation,
            worker_class=self.worker_class_name,
            listeners=self.listeners.names(),
            backlog=self.listeners.queues(),
        )
        return self.observer.status(self.table, facts)

    def control(self, command: str, args: list[str]) -> dict[str, Any]:
        """A command from ``greenhorn ctl`` (ValueError for a bad one)."""
        return run_command(self, command, args)

    def show_config(self) -> dict[str, Any]:
        """``greenhorn ctl show config``: every setting as this master runs it (the worker
        class as it runs: ``threads`` > 1 makes sync gthread)."""
        settings = shown_settings(self.cfg)
        settings["worker_class"] = self.worker_class_name
        return settings

    def show_listeners(self) -> list[dict[str, Any]]:
        """``greenhorn ctl show listeners``: each listening socket, as gunicornc shows it
        (address, type, fd), with where it came from and its accept queue."""
        queues = self.listeners.queues()
        kinds = {socket.AF_UNIX: "unix", socket.AF_INET: "tcp", socket.AF_INET6: "tcp6"}
        return [
            {
                "address": listener.name,
                "type": kinds.get(listener.family, "unknown"),
                "fd": listener.fileno(),
                "origin": listener.origin,
                "queue": queues.get(listener.name),
            }
            for listener in self.listeners
        ]

    def kill_worker(self, pid: int) -> None:
        """``greenhorn ctl worker kill PID``: stop that worker gracefully (TERM), as
        gunicornc does; the master replaces it as it replaces any worker that exits."""
        if self.table.get(pid) is None:
            raise ValueError(f"worker kill: {pid} is not a worker of this master")
        self.log.info("Stopping worker (pid:%s) at greenhorn ctl's request", pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            raise ValueError(f"worker kill: worker {pid} has already exited") from None

    def shutdown(self, graceful: bool) -> None:
        """``greenhorn ctl shutdown [graceful|quick]``: queue TERM (or INT) to ourselves, so
        the stop runs in the loop exactly as for the signal, after this reply is sent."""
        os.kill(self.pid, signal.SIGTERM if graceful else signal.SIGINT)

    def add_workers(self, delta: int) -> int:
        """``greenhorn ctl add/remove``: change the target now; the new target."""
        self.num_workers = max(1, self.num_workers + delta)
        self.manage_workers()
        return self.num_workers

    # -- workers ---------------------------------------------------------------------------

    def manage_workers(self) -> None:
        """Spawn or retire workers so the current generation has ``num_workers``."""
        if self.stopping:
            return
        decision = policy.plan(self.observer.views(self.table), self.scaler.wanted, self.generation)
        for pid in decision.retire:
            worker = self.table.get(pid)
            if worker is not None and pid != self.scaler.recycling:
                self.table.retire(worker, decision.reason)
        for _ in range(decision.spawn):
            if self.spawn_worker() is None:
                break  # logged; the next loop tries again
        self.table.report_count(self.log)

    def spawn_worker(self) -> Worker | None:
        """Fork one worker of the current generation (in the child this never returns);
        None (logged) when its heartbeat file cannot be made anywhere."""
        try:
            worker = self.new_worker()
        except OSError as exc:
            self.log.error("Cannot make a worker's heartbeat file: %s; retrying", exc)
            return None
        self.call_hook("pre_fork", self, worker.for_hooks())
        # Signals stay blocked across fork until the child has its own handlers: a TERM
        # sent to a just-forked worker is then held, not lost (or fed to our pipe).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            worker.pid = pid
            self.table.add(worker)
            self.log.info("Booting worker with pid: %s", pid)
            return worker
        self.become_worker(worker, mask)

    def new_worker(self) -> Worker:
        """The worker object (the master's record of it, and the child's life after fork),
        with its scoreboard file."""
        cfg = self.cfg
        slots = max(1, int(getattr(self.worker_class, "slots_for", lambda c: 1)(cfg)))
        if self.tmp_dir.configured != cfg.worker_tmp_dir:  # changed on reload
            self.tmp_dir = TmpDir(cfg.worker_tmp_dir)
        tmp = self.tmp_dir.new_file(slots, self.log)
        owner = self.owner()
        if owner is not None:
            os.fchown(tmp.fileno(), owner[0], owner[1])
        worker = self.worker_class(
            self.table.next_age(),
            self.pid,
            self.LISTENERS,
            self.app,
            cfg,
            self.log,
            tmp,
            self.source,
        )
        worker.server = self
        worker.generation = self.generation
        worker.lifetime = self.scaler.lifetime_for()
        return worker

    def become_worker(self, worker: Worker, mask: set[int | signal.Signals]) -> NoReturn:
        """In the child right after fork: drop the master's fds, run ``post_fork``, boot
        (signals stay blocked until ``Worker.init_signals``)."""
        worker.sigmask = mask
        worker.pid = os.getpid()
        self.signals.close(restore=False)
        self.endpoints.close_in_child()
        try:
            hooks.call_hook(self.cfg, "post_fork", self, worker.for_hooks(), propagate=True)
        except BaseException:
            self.log.exception("post_fork hook failed")
            os._exit(exits.WORKER_BOOT_ERROR)
        worker.init_process()

    def murder_workers(self) -> None:
        """Abort workers that missed their heartbeat or hold a request past ``timeout``."""
        now_wall, now_mono = time.time(), time.monotonic()
        views = self.observer.views(self.table)
        for kill in policy.kills(views, now_wall, now_mono, self.cfg.timeout):
            worker = self.table.get(kill.pid)
            if worker is None:
                continue
            if kill.signal == signal.SIGABRT:
                stuck = worker.tmp.board.oldest_request()
                what = f" while serving {stuck[1]} for {now_mono - stuck[0]:.1f}s" if stuck else ""
                self.log.critical("WORKER TIMEOUT (pid:%s)%s", kill.pid, what)
                worker.aborted_at = now_mono
                worker.exit_reason = "timeout"
            else:
                self.log.error("Worker (pid:%s) ignored SIGABRT; sending SIGKILL", kill.pid)
            self.table.kill(kill.pid, kill.signal)

    def reap_workers(self) -> None:
        """Collect exited children (all of them: we may be PID 1) and say why they died."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if self.handover.child_exited(pid):
                self.report_new_master_exit(pid, os.waitstatus_to_exitcode(status))
                continue
            was_killed, booted = pid in self.table.killed, self.table.has_booted(pid)
            worker = self.table.remove(pid)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            reason = self.report_exit(worker, code, was_killed, booted)
            self.observer.forget(worker, reason)
            worker.tmp.close()
            self.call_hook("child_exit", self, worker.for_hooks())

    def report_exit(self, worker: Worker, code: int, killed: bool, booted: bool) -> str:
        """Log why a worker ended (never lose the reason); return it as a short label.
        ``killed``: we sent it SIGKILL. ``booted``: it had finished booting, so whatever its
        exit status (even 3 or 4, from the application's own ``sys.exit``/``os._exit``) it
        is replaced; only a worker that failed during boot stops the server."""
        pid = worker.pid
        if code < 0:
            sig = -code
            if worker.exit_reason in ("timeout", "memory-hard"):
                self.log.error(
                    "Worker (pid:%s) was killed by SIG%s [%s]",
                    pid,
                    signame(sig),
                    worker.exit_reason,
                )
                return worker.exit_reason
            if sig == signal.SIGKILL and not killed:
                self.log.error("Worker (pid:%s) was sent SIGKILL! Perhaps out of memory?", pid)
                return "oom-or-killed"
            if sig == signal.SIGTERM:  # asked to stop, and it re-raised TERM (uvicorn): info
                self.log.info("Worker (pid:%s) was sent SIGTERM!", pid)
            else:
                self.log.warning("Worker (pid:%s) was sent SIG%s!", pid, signame(sig))
            return "signal"
        if code == 0:
            reason = worker.retire_reason or worker.exit_reason
            if reason is None and worker.tmp.board.counters[EXIT_REASON] == 1:
                reason = "max-requests"
            self.log.info("Worker exited (pid: %s)%s", pid, f" [{reason}]" if reason else "")
            return reason or "exit"
        if worker.exit_reason == "timeout":
            self.log.error("Worker (pid:%s) aborted after timeout (exit code %s)", pid, code)
            return "timeout"
        self.log.error("Worker (pid:%s) exited with code %s", pid, code)
        if code in BOOT_FAILURES and not booted:
            self.boot_failed(worker, code)
            return "boot-error"
        return "crash"

    def boot_failed(self, worker: Worker, code: int) -> None:
        """A worker exited with a boot-error status: roll an unconfirmed reload back, else
        stop the server with that status."""
        if worker.generation > self.generation:  # from a reload already rolled back
            return
        if self.handover.can_roll_back(worker.generation):
            self.rollback_reload(code)
            return
        self.halt = (code, BOOT_FAILURES[code])

    def check_ready(self) -> None:
        """Tell systemd we are ready once the current generation has booted."""
        if self.handover.ready or self.stopping:
            return
        current = self.table.of_generation(self.generation)
        if len(current) >= self.num_workers and self.table.all_booted(current):
            self.handover.confirm()
            systemd.ready(f"greenhorn {__version__}: {len(current)} workers")

    # -- reload (HUP), re-exec (USR2): handover.py ------------------------------------------

    def check_reload_requests(self) -> None:
        """A worker saw its source change (``--reload``): reload once for all of them."""
        asked = self.table.take_reload_requests()
        if asked and not self.stopping and any(w.generation == self.generation for w in asked):
            self.log.info("Reloading: application source changed")
            self.reload()

    def reload(self) -> None:
        """HUP: new settings, new generation of workers, old one retired once it is up."""
        cfg = self.handover.load(self.argv, self.cfg, self.log, self.reload_config)
        if cfg is None:
            return
        self.handover.begin(self.cfg)
        old, self.cfg = self.cfg, cfg
        from greenhorn.observe.logger import LogConfigError

        try:
            self.log.setup(cfg)
        except (LogConfigError, OSError) as exc:
            self.log.error("Reload: cannot set up logging, keeping the old setup: %s", exc)
        self.scaler.reconfigure(cfg)  # nworkers_changed, before on_reload as in gunicorn
        if list(cfg.bind) != list(old.bind):
            self.rebind()
        self.call_hook("on_reload", self)
        titles.set_title(titles.master_title(self.proc_name))
        self.manage_workers()

    def rebind(self) -> None:
        """HUP with a new ``bind``: the new listeners, or the old ones if they fail."""
        cfg = self.cfg
        try:
            self.listeners.rebind(
                cfg.bind, backlog=cfg.backlog, reuse_port=cfg.reuse_port, defer=cfg.defer_accept
            )
        except (OSError, ValueError) as exc:
            self.log.error("Reload: %s; keeping the old listeners", exc)
            return
        for listener in self.listeners:
            self.log.info("Listening at: %s (%s)", listener.name, self.pid)

    def rollback_reload(self, code: int) -> None:
        """A worker of the new generation failed to boot: keep the old generation."""
        self.log.error(
            "Reload failed: new workers cannot boot (exit code %s); keeping the previous ones",
            code,
        )
        failed = self.generation
        self.cfg = self.handover.roll_back()
        for worker in self.table.of_generation(failed):
            self.table.retire(worker, "failed reload")

    def reexec(self) -> None:
        """USR2: start a new master from the same command, handing over the listeners."""
        if self.handover.refuses_reexec(self.log):
            return
        self.handover.reexec(self.listeners, lambda: self.call_hook("pre_exec", self))

    def report_new_master_exit(self, pid: int, code: int) -> None:
        """In the old master: the master we started on USR2 is gone (a failed upgrade when
        we still run: we keep serving, and a USR2 is accepted again)."""
        how = f"was killed by SIG{signame(-code)}" if code < 0 else f"exited with code {code}"
        if code == 0 or self.stopping:
            self.log.info("New master (pid:%s) %s", pid, how)
        else:
            self.log.error("New master (pid:%s) %s; this master keeps serving", pid, how)

    def promote(self, old_master: int) -> None:
        """After USR2, in the new master: the old one is gone; take over the real pid file
        (never fatal: a pid file we cannot write is one error line, and we serve on)."""
        self.log.info("Master has been promoted.")
        if self.pidfile is not None and self.cfg.pidfile:
            try:
                self.pidfile.rename(self.cfg.pidfile, replacing=old_master)
            except (PidfileError, OSError) as exc:
                self.log.error(
                    "Cannot take the pid file over, keeping %s: %s", self.pidfile.path, exc
                )
        self.endpoints.take_over(self.log)
        titles.set_title(titles.master_title(self.proc_name))

    # -- stop ------------------------------------------------------------------------------

    def stop(self, graceful: bool = True) -> None:
        """Stop every worker: TERM (finish in-flight work) or QUIT, then KILL at the deadline.

        A graceful stop with ``shutdown_delay`` first keeps serving that long while /readyz
        says 503, so a load balancer takes the instance out of rotation before its listeners
        close. A second TERM ends the delay; INT or QUIT also turn the stop into a fast one.
        """
        self.stopping = True
        self.state = "stopping"
        systemd.stopping()
        if graceful and self.cfg.shutdown_delay > 0:
            graceful = self.delay_shutdown(float(self.cfg.shutdown_delay))
        if graceful:
            # the port stops taking connections only when nothing outlives this master
            final = not self.handover.shared_sockets and self.listeners.all_bound_here()
            self.table.drain(final=final)
        self.listeners.close(unlink=not self.handover.shared_sockets)
        self.table.kill_all(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.table and time.monotonic() < deadline:
            self.reap_workers()
            if self.table:
                self.wait_for_children(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.table:
            self.log.warning("Graceful timeout: killing %d worker(s)", len(self.table))
            self.table.kill_all(signal.SIGKILL)
            end = time.monotonic() + 5.0
            while self.table and time.monotonic() < end:
                self.reap_workers()
                self.wait_for_children(0.05)

    def delay_shutdown(self, seconds: float) -> bool:
        """Serve on for ``seconds`` (not ready); False when INT/QUIT asked for a fast stop."""
        self.log.info("Shutdown delay: serving %gs more while not ready", seconds)
        fd = self.signals.fileno()
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready = self.wait(fd, min(LOOP_SECONDS, left))
            for sig in self.signals.read() if fd in ready else ():
                if sig in (signal.SIGINT, signal.SIGQUIT):
                    self.log.info("Handling signal: %s", signame(sig).lower())
                    return False
                if sig == signal.SIGTERM:
                    self.log.info("Handling signal: term (ending the shutdown delay)")
                    return True
            self.reap_workers()
            self.murder_workers()
        return True

    def wait_for_children(self, seconds: float) -> None:
        """While stopping: wait a little, keep /readyz (503) and ctl answering, and drop
        further signals (a second TERM changes nothing; INT/QUIT are already under way)."""
        fd = self.signals.fileno()
        if fd < 0:
            time.sleep(seconds)
            return
        if fd in self.wait(fd, seconds):
            self.signals.read()

    def cleanup(self) -> None:
        """Last words: on_exit hook, pid file, listeners."""
        if self.log is not None:
            self.call_hook("on_exit", self)
            self.log.info("Shutting down: Master")
        if self.pidfile is not None:
            self.pidfile.unlink()
        self.endpoints.close()
        self.listeners.close(unlink=not self.handover.shared_sockets)
        self.signals.close()

    def call_hook(self, name: str, *args: object) -> None:
        """A server hook; a failure is logged, never raised (``config.hooks.call_hook``)."""
        hooks.call_hook(self.cfg, name, *args, log=self.log)


if TYPE_CHECKING:  # what hooks are promised (config.Server) is what the arbiter is

    def _hooks_see_a_server(arbiter: Arbiter) -> Server:
        return arbiter
