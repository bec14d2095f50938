"""Replacing the code or the master without dropping a connection: HUP and USR2.

Why a module of its own: both are multi-step hand-overs with their own failure paths, and
they read best apart from the arbiter's steady-state loop.

- HUP (and ``--reload``): reload the settings, boot a new *generation* of workers, and only
  once all of it has booted retire the old one (``policy.plan``). If the new generation
  cannot boot (a syntax error, a failing import), roll back: the old workers keep serving
  with the old settings. systemd hears RELOADING=1, then READY=1 again.
- USR2: fork and exec a new master with the listening sockets inherited (``GREENHORN_FD``, or
  LISTEN_FDS when systemd gave them); it writes ``<pidfile>.2`` and takes ``<pidfile>`` over
  once the old master has exited (gunicorn's flow).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from greenhorn.ipc import exits, titles
from greenhorn.ipc.scoreboard import RELOAD
from greenhorn.master import listeners, systemd

__all__ = [
    "MASTER_PID_ENV",
    "check_reload_requests",
    "maybe_promote_master",
    "reexec",
    "reload",
    "rollback_reload",
]

MASTER_PID_ENV = "GREENHORN_PID"


def check_reload_requests(arbiter: Any) -> None:
    """A worker saw its source change (``--reload``): reload once for all of them."""
    asked = [w for w in arbiter.WORKERS.values() if w.tmp.board.counters[RELOAD]]
    if not asked or arbiter.stopping:
        return
    for worker in asked:
        worker.tmp.board.counters[RELOAD] = 0
    if any(w.generation == arbiter.generation for w in asked):
        arbiter.log.info("Reloading: application source changed")
        reload(arbiter)


def reload(arbiter: Any) -> None:
    """HUP: reload the config, boot a new generation, retire the old one once ready."""
    from greenhorn import config as gconfig
    from greenhorn.observe import logger as glog

    systemd.reloading()
    try:
        cfg = gconfig.load(arbiter.argv, os.environ)
    except gconfig.ConfigError as exc:
        arbiter.log.error("Reload failed, keeping the current configuration: %s", exc)
        systemd.ready()
        return
    warn_fixed_settings(arbiter, arbiter.cfg, cfg)
    arbiter.previous_cfg, arbiter.cfg = arbiter.cfg, cfg
    try:
        arbiter.log.setup(cfg)
    except (glog.LogConfigError, OSError) as exc:
        arbiter.log.error("Reload: cannot set up logging, keeping the old setup: %s", exc)
    if list(cfg.bind) != list(arbiter.previous_cfg.bind):
        try:
            new = listeners.bind_listeners(cfg.bind, backlog=cfg.backlog, reuse_port=cfg.reuse_port)
            listeners.defer_accept(new, cfg.defer_accept)
        except (OSError, ValueError) as exc:
            arbiter.log.error("Reload: %s; keeping the old listeners", exc)
        else:
            listeners.close_listeners(arbiter.LISTENERS, unlink=True)
            arbiter.LISTENERS = new
            for listener in new:
                arbiter.log.info("Listening at: %s (%s)", listener.name, arbiter.pid)
    arbiter.call_hook("on_reload", arbiter)
    titles.set_title(titles.master_title(arbiter.proc_name))
    if cfg.workers != "auto" and not (cfg.workers_min or cfg.workers_max):
        arbiter.set_num_workers(max(1, int(cfg.workers)))
    arbiter.generation += 1
    arbiter.ready_sent = False
    arbiter.manage_workers()


def warn_fixed_settings(arbiter: Any, old: Any, new: Any) -> None:
    """Name the settings that changed but only take effect on a restart (or USR2)."""
    from greenhorn.config.settings import SETTINGS

    fixed = [
        s.name
        for s in SETTINGS
        if not s.reloadable and s.name != "bind" and getattr(old, s.name) != getattr(new, s.name)
    ]
    if fixed:
        arbiter.log.warning(
            "Reload: %s changed but need a restart (or USR2) to take effect", ", ".join(fixed)
        )


def rollback_reload(arbiter: Any, code: int) -> None:
    """A worker of the new generation failed to boot: keep the old generation."""
    arbiter.log.error(
        "Reload failed: new workers cannot boot (exit code %s); keeping the previous ones",
        code,
    )
    failed = arbiter.generation
    arbiter.cfg, arbiter.previous_cfg = arbiter.previous_cfg, None
    arbiter.generation -= 1
    for worker in list(arbiter.WORKERS.values()):
        if worker.generation == failed:
            arbiter.retire(worker, "failed reload")
    arbiter.ready_sent = True


def reexec(arbiter: Any) -> None:
    """USR2: start a new master from the same command, handing over the listeners."""
    if arbiter.reexec_pid:
        arbiter.log.warning("USR2 signal ignored. Child exists.")
        return
    if arbiter.master_pid:
        arbiter.log.warning("USR2 signal ignored. Parent exists.")
        return
    master_pid = os.getpid()
    pid = os.fork()
    if pid:
        arbiter.reexec_pid = pid
        return
    try:
        arbiter.call_hook("pre_exec", arbiter)
        environ = dict(os.environ)
        environ.update(listeners.fds_env(arbiter.LISTENERS))
        environ[MASTER_PID_ENV] = str(master_pid)
        listeners.make_inheritable(arbiter.LISTENERS)
        os.chdir(arbiter.cwd)
        argv = [sys.executable, "-m", "greenhorn", *arbiter.argv]
        os.execve(sys.executable, argv, environ)
    finally:
        os._exit(exits.EXIT_FAILURE)


def maybe_promote_master(arbiter: Any) -> None:
    """After USR2: once the old master is gone, take over the real pid file."""
    if not arbiter.master_pid or arbiter.master_pid == os.getppid():
        return
    arbiter.log.info("Master has been promoted.")
    arbiter.master_pid = 0
    os.environ.pop(MASTER_PID_ENV, None)
    if arbiter.pidfile is not None and arbiter.cfg.pidfile:
        arbiter.pidfile.rename(arbiter.cfg.pidfile)
    titles.set_title(titles.master_title(arbiter.proc_name))
