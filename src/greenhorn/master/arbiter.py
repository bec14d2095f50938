"""The master process: open the sockets, fork the workers, watch them, obey signals.

Why it reads as a list of verbs: the loop below is the whole job. Signals arrive as bytes on
a pipe (``ipc/signals.py``) and are dispatched here, never in signal context. Decisions about
how many workers to run and whom to kill are pure functions in ``policy.py``; this module
only gathers the facts, applies the decisions and logs them.

    run:  start → loop { dispatch signals → reap → murder late → manage count } → stop

Graceful stop (TERM) is built so that new connections are refused at once while queued
ones are still served: the master closes its listening sockets and asks each worker to
drain (``ipc/scoreboard.py``: ``DRAIN``); each worker's control thread accepts what the kernel already
queued and closes its own copy, so the socket leaves LISTEN within milliseconds instead of
when the slowest request ends.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from typing import Any

from greenhorn import __version__
from greenhorn.ipc import exits, titles
from greenhorn.ipc.scoreboard import BOOTED, DRAIN, EXIT_REASON, WorkerTmp, choose_tmp_dir
from greenhorn.ipc.signals import MASTER_SIGNALS, WORKER_SIGNALS, SignalPipe
from greenhorn.ipc.signals import name as signame
from greenhorn.master import handover, listeners, observer, policy, systemd
from greenhorn.master.observer import Observer
from greenhorn.master.pidfile import Pidfile, PidfileError

__all__ = ["Arbiter"]

LOOP_SECONDS = 1.0


class Arbiter:
    """The master process. Attributes read by hooks keep gunicorn's names."""

    def __init__(self, cfg: Any, argv: list[str] | None = None, cwd: str | None = None) -> None:
        self.cfg = cfg
        self.argv = list(argv or [])
        self.log: Any = None
        self.pid = os.getpid()
        self.app: Any = None
        self.WORKERS: dict[int, Any] = {}
        self.LISTENERS: list[listeners.Listener] = []
        self.num_workers = 1
        self.worker_class: Any = None
        self.worker_age = 0
        self.generation = 0
        self.previous_cfg: Any = None
        self.master_pid = int(os.environ.get(handover.MASTER_PID_ENV, "0") or 0)
        self.reexec_pid = 0
        self.pidfile: Pidfile | None = None
        self.signals = SignalPipe()
        self.ready_sent = False
        self.stopping = False
        self.halt_code: int | None = None
        self.halt_reason = ""
        self.sent_kill: set[int] = set()
        self.cwd = cwd if cwd is not None else os.getcwd()  # where a USR2 re-exec starts
        self.observer = Observer()
        self.scaler: Any = None
        self.servers: list[Any] = []  # metrics and control listeners (non-blocking)
        self.state = "starting"
        self.last_gauge = -1

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
        from greenhorn import observe
        from greenhorn.workers.registry import MissingExtra, load_worker_class
        from greenhorn.wsgi.app import AppImportError, check_importable, load_app

        cfg = self.cfg
        if cfg.daemon:
            from greenhorn.master import daemon

            daemon.daemonize(cfg.enable_stdio_inheritance)
            self.pid = os.getpid()
        try:
            self.log = observe.create(cfg)
        except Exception as exc:
            sys.stderr.write(f"greenhorn: error: cannot set up logging: {exc}\n")
            return exits.EXIT_FAILURE
        titles.set_title(titles.master_title(self.proc_name))
        try:
            self.worker_class = load_worker_class(cfg.worker_class, cfg.threads)
        except (MissingExtra, ImportError, AttributeError) as exc:
            self.log.error("Cannot load worker class %r: %s", cfg.worker_class, exc)
            return exits.EXIT_USAGE
        setup = getattr(self.worker_class, "setup", None)
        if callable(setup):
            setup()
        from greenhorn.master.scaling import Scaler

        self.scaler = Scaler(cfg, self.log)
        self.num_workers = self.scaler.initial_workers()
        self.call_hook("on_starting", self)
        try:
            if cfg.preload_app:
                self.app = load_app(cfg.wsgi_app)
            else:
                check_importable(cfg.wsgi_app)
        except AppImportError as exc:
            self.log.error("Failed to load application %r: %s", cfg.wsgi_app, exc)
            return exits.APP_LOAD_ERROR
        if cfg.reload:
            from greenhorn.workers import reload_watcher as reload

            try:
                reload.choose_engine(cfg.reload_engine)
            except reload.ReloadError as exc:
                self.log.error("Cannot watch for code changes (--reload): %s", exc)
                return exits.EXIT_USAGE
        if cfg.certfile:
            from greenhorn.workers import tls

            try:
                tls.server_context(cfg)  # fail now, with one line, not in every worker
            except Exception as exc:
                self.log.error("Invalid TLS settings: %s", exc)
                return exits.EXIT_FAILURE
        try:
            self.LISTENERS = self.open_listeners()
        except (OSError, ValueError) as exc:
            self.log.error("%s", exc)
            return exits.EXIT_FAILURE
        if cfg.pidfile:
            name = cfg.pidfile + (".2" if self.master_pid else "")
            self.pidfile = Pidfile(name)
            try:
                self.pidfile.create(self.pid)
            except (PidfileError, OSError) as exc:
                self.pidfile = None
                self.log.error("%s", exc)
                return exits.EXIT_FAILURE
        self.signals.install(MASTER_SIGNALS)
        self.log.info("Starting greenhorn %s", __version__)
        scheme = "https" if cfg.certfile else "http"
        for listener in self.LISTENERS:
            self.log.info("Listening at: %s (%s)", listener.url(scheme), self.pid)
        self.log.info("Using worker: %s", cfg.worker_class)
        code = self.open_servers()
        if code is not None:
            return code
        if cfg.capture_output:
            self.log.capture_output()
        self.log.close_on_exec()
        if self.app is not None:
            gc.collect()
            gc.freeze()  # keep the preloaded heap out of copy-on-write churn
        self.call_hook("when_ready", self)
        return None

    @property
    def proc_name(self) -> str:
        return self.cfg.proc_name or self.cfg.default_proc_name

    def open_servers(self) -> int | None:
        return observer.open_servers(self)

    def open_listeners(self) -> list[listeners.Listener]:
        found = listeners.inherited_listeners(os.environ, backlog=self.cfg.backlog)
        if not found:
            found = listeners.bind_listeners(
                self.cfg.bind,
                backlog=self.cfg.backlog,
                reuse_port=self.cfg.reuse_port,
                umask=self.cfg.umask,
                owner=self.owner(),
                log=self.log.error,
            )
        listeners.defer_accept(found, self.cfg.defer_accept)
        return found

    def owner(self) -> tuple[int, int] | None:
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
            self.maybe_promote_master()
            ready = self.wait(fd, LOOP_SECONDS)
            for sig in self.signals.read() if fd in ready else ():
                code = self.dispatch(sig)
                if code is not None:
                    return code
            self.reap_workers()
            if self.halt_code is not None:
                self.log.error("Shutting down: %s", self.halt_reason)
                self.stop(graceful=False)
                return self.halt_code
            self.murder_workers()
            self.observer.sample(self.WORKERS, read_rss=self.scaler.watches_memory)
            self.scaler.step(self, self.snapshot(), self.backlog())
            self.manage_workers()
            self.check_ready()
            self.check_reload_requests()

    def wait(self, fd: int, seconds: float) -> list[int]:
        """Sleep until a signal arrives or ``seconds`` pass; /metrics and ctl are served."""
        return observer.wait(self, fd, seconds)

    def backlog(self) -> int:
        return observer.backlog(self)

    def status(self) -> dict[str, Any]:
        """Everything /metrics and ``greenhorn ctl`` show."""
        return self.observer.status(self)

    def control(self, command: str, args: list[str]) -> dict[str, Any]:
        """A command from ``greenhorn ctl`` (ValueError for a bad one)."""
        return observer.control(self, command, args)

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
            self.set_num_workers(self.num_workers + 1)
        elif sig == signal.SIGTTOU:
            self.set_num_workers(max(1, self.num_workers - 1))
        elif sig == signal.SIGUSR1:
            self.log.reopen_files()
            self.kill_workers(signal.SIGUSR1)
        elif sig == signal.SIGUSR2:
            self.reexec()
        elif sig == signal.SIGWINCH:
            if self.cfg.daemon:
                self.log.info("graceful stop of workers")
                self.set_num_workers(0)
                self.kill_workers(signal.SIGTERM)
            else:
                self.log.debug("SIGWINCH ignored. Not daemonized")
        return None

    def set_num_workers(self, count: int) -> None:
        old, self.num_workers = self.num_workers, count
        if old != count:
            self.call_hook("nworkers_changed", self, count, old)

    # -- workers ---------------------------------------------------------------------------

    def snapshot(self) -> list[policy.WorkerView]:
        return self.observer.views(self.WORKERS, self.sent_kill)

    def manage_workers(self) -> None:
        """Spawn or retire workers so the current generation has ``num_workers``."""
        if self.stopping:
            return
        target = self.num_workers + (self.scaler.surge if self.scaler else 0)
        decision = policy.plan(self.snapshot(), target, self.generation)
        for pid in decision.retire:
            worker = self.WORKERS.get(pid)
            if worker is not None and pid != getattr(self.scaler, "recycling", None):
                self.retire(worker, decision.reason)
        for _ in range(decision.spawn):
            self.spawn_worker()
        alive = len(self.WORKERS)
        if alive != self.last_gauge:
            self.last_gauge = alive
            self.log.gauge("gunicorn.workers", alive)

    def retire(self, worker: Any, reason: str) -> None:
        """Ask a worker to finish its in-flight requests and exit."""
        worker.retire_reason = reason
        self.kill_worker(worker.pid, signal.SIGTERM)

    def spawn_worker(self) -> Any:
        cfg = self.cfg
        self.worker_age += 1
        slots = max(1, int(getattr(self.worker_class, "slots_for", lambda c: 1)(cfg)))
        tmp = WorkerTmp(choose_tmp_dir(cfg.worker_tmp_dir), slots=slots)
        owner = self.owner()
        if owner is not None:
            os.fchown(tmp.fileno(), owner[0], owner[1])
        worker = self.worker_class(
            self.worker_age, self.pid, self.LISTENERS, self.app, cfg, self.log, tmp
        )
        worker.server = self
        worker.generation = self.generation
        worker.lifetime = self.scaler.lifetime_for() if self.scaler else 0.0
        worker.recycle_reason = None
        self.call_hook("pre_fork", self, worker)
        # Signals stay blocked across fork until the child has its own handlers: a TERM
        # sent to a just-forked worker is then held, not lost (or fed to our pipe).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            worker.pid = pid
            self.WORKERS[pid] = worker
            self.log.info("Booting worker with pid: %s", pid)
            return worker
        # -- in the child (signals blocked until Worker.init_signals) --
        worker.sigmask = mask
        worker.pid = os.getpid()
        self.signals.close(restore=False)
        for _, server in self.servers:
            server.close_in_child()
        try:
            cfg.post_fork(self, worker)
        except BaseException:
            self.log.exception("post_fork hook failed")
            os._exit(exits.WORKER_BOOT_ERROR)
        worker.init_process()

    def kill_worker(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
            if sig == signal.SIGKILL:
                self.sent_kill.add(pid)
        except ProcessLookupError:
            self.WORKERS.pop(pid, None)

    def kill_workers(self, sig: int) -> None:
        for pid in list(self.WORKERS):
            self.kill_worker(pid, sig)

    def murder_workers(self) -> None:
        """Abort workers that missed their heartbeat or hold a request past ``timeout``."""
        now_wall, now_mono = time.time(), time.monotonic()
        for kill in policy.kills(self.snapshot(), now_wall, now_mono, self.cfg.timeout):
            worker = self.WORKERS.get(kill.pid)
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
            self.kill_worker(kill.pid, kill.signal)

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
            if pid == self.reexec_pid:
                self.reexec_pid = 0
                self.log.info("Re-executed master (pid:%s) exited", pid)
                continue
            worker = self.WORKERS.pop(pid, None)
            if worker is None:
                continue
            reason = self.report_exit(worker, os.waitstatus_to_exitcode(status))
            self.observer.forget(worker, reason)
            self.sent_kill.discard(pid)
            worker.tmp.close()
            self.call_hook("child_exit", self, worker)

    def report_exit(self, worker: Any, code: int) -> str:
        """Log why a worker ended (never lose the reason); return it as a short label."""
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
            if sig == signal.SIGKILL and pid not in self.sent_kill:
                self.log.error("Worker (pid:%s) was sent SIGKILL! Perhaps out of memory?", pid)
                return "oom-or-killed"
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
        if code in (exits.WORKER_BOOT_ERROR, exits.APP_LOAD_ERROR):
            if worker.generation > self.generation:  # from a reload already rolled back
                return "boot-error"
            if self.generation and worker.generation == self.generation and self.previous_cfg:
                self.rollback_reload(code)
                return "boot-error"
            self.halt_code = code
            self.halt_reason = (
                "Worker failed to boot."
                if code == exits.WORKER_BOOT_ERROR
                else "App failed to load."
            )
            return "boot-error"
        return "crash"

    def check_ready(self) -> None:
        """Tell systemd we are ready once the current generation has booted."""
        if self.ready_sent or self.stopping:
            return
        current = [w for w in self.WORKERS.values() if w.generation == self.generation]
        if len(current) >= self.num_workers and all(w.tmp.board.counters[BOOTED] for w in current):
            self.ready_sent = True
            self.previous_cfg = None
            systemd.ready(f"greenhorn {__version__}: {len(current)} workers")

    # -- reload, re-exec (handover.py), stop --------------------------------------------------

    def check_reload_requests(self) -> None:
        handover.check_reload_requests(self)

    def reload(self) -> None:
        """HUP: new settings, new generation of workers, old one retired once it is up."""
        handover.reload(self)

    def rollback_reload(self, code: int) -> None:
        handover.rollback_reload(self, code)

    def reexec(self) -> None:
        """USR2: start a new master from the same command, handing over the listeners."""
        handover.reexec(self)

    def maybe_promote_master(self) -> None:
        handover.maybe_promote_master(self)

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
        unlink = not self.reexec_pid and not self.master_pid
        if graceful:
            for worker in self.WORKERS.values():
                worker.tmp.board.counters[DRAIN] = 1
        listeners.close_listeners(self.LISTENERS, unlink=unlink)
        self.kill_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.WORKERS and time.monotonic() < deadline:
            self.reap_workers()
            if self.WORKERS:
                self.wait_for_children(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.WORKERS:
            self.log.warning("Graceful timeout: killing %d worker(s)", len(self.WORKERS))
            self.kill_workers(signal.SIGKILL)
            end = time.monotonic() + 5.0
            while self.WORKERS and time.monotonic() < end:
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
        for _, server in self.servers:
            server.close()
        listeners.close_listeners(
            self.LISTENERS, unlink=not self.reexec_pid and not self.master_pid
        )
        self.signals.close()

    def call_hook(self, name: str, *args: Any) -> None:
        try:
            getattr(self.cfg, name)(*args)
        except Exception:
            if self.log is not None:
                self.log.exception("Exception in %s hook", name)
