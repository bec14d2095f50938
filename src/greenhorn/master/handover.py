"""Replacing the code or the master without dropping a connection: HUP and USR2.

Why a module of its own: both are multi-step hand-overs with their own state and failure
paths, and they read best apart from the arbiter's steady-state loop. ``HandOver`` owns that
state; the arbiter's verbs (``reload``, ``rollback_reload``, ``reexec``) call it in order.

- HUP (and ``--reload``): load the settings again, boot a new *generation* of workers, and
  only once all of it has booted retire the old one (``policy.plan``). If the new
  generation cannot boot (a syntax error, a failing import), roll back: the old workers
  keep serving with the old settings. systemd hears RELOADING=1, then READY=1 again.
  ``previous_cfg`` is set while a reload is not yet confirmed; ``ready`` says whether the
  current generation has booted.
- USR2: fork and exec a new master with the listening sockets inherited (``GREENHORN_FD``,
  or LISTEN_FDS when systemd gave them). In the old master ``child_pid`` is the new one
  until it exits; in the new master ``parent_pid`` is the old one until it is gone. While
  either is set, another master serves on the same sockets: the socket files stay when
  this one exits, and a further USR2 is refused (one upgrade at a time).

The upgrade, step by step (gunicorn's procedure, which greenhorn keeps):

1. ``kill -USR2 OLD``: the old master forks; the child runs ``pre_exec`` and execs the
   same command line with ``GREENHORN_PID=OLD`` and the listeners' fds.
2. The new master does NOT daemonize again, even with ``--daemon``: the old master already
   detached, and staying the old master's child is how the new one knows, without a race,
   when the old one is gone (its parent pid changes the moment the old master exits).
3. It writes ``<pidfile>.2`` (``pidfile_path``), never ``<pidfile>``, which still names
   the old master, and boots its workers; both generations now serve.
4. ``kill -WINCH OLD`` (daemonized) retires the old workers; ``kill -QUIT OLD`` or
   ``kill -TERM OLD`` stops the old master, which removes ``<pidfile>`` on its way out.
5. The new master sees its parent gone (``promoted``): it logs "Master has been
   promoted.", renames ``<pidfile>.2`` to ``<pidfile>`` and is the only master.

If the new master cannot start (a broken deploy), it exits and the old master, which
never stopped serving, logs its exit status and accepts a USR2 again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING

from greenhorn.config import Config, ConfigError, load
from greenhorn.config.settings import SETTINGS
from greenhorn.ipc import exits
from greenhorn.ipc.signals import running
from greenhorn.master import systemd

if TYPE_CHECKING:
    from greenhorn.master.listeners import Listeners
    from greenhorn.observe.logger import Logger

__all__ = ["MASTER_PID_ENV", "HandOver"]

MASTER_PID_ENV = "GREENHORN_PID"


class HandOver:
    """The state of HUP reloads (generations) and USR2 upgrades (the other master)."""

    def __init__(
        self,
        argv: list[str],
        cwd: str,
        environ: Mapping[str, str] = os.environ,
        exec_argv: Sequence[str] | None = None,
    ) -> None:
        self.argv = argv  # the command line to re-execute (USR2)
        # the whole command USR2 execs: greenhorn with argv, or the Python API's script
        self.exec_argv = list(exec_argv) if exec_argv else None
        self.cwd = cwd  # where the command was started (before --chdir)
        self.generation = 0  # bumped on every reload
        self.previous_cfg: Config | None = None  # while a reload is not yet confirmed
        self.ready = False  # the current generation has booted (READY=1 sent)
        self.parent_pid = _pid(environ.get(MASTER_PID_ENV))  # USR2: the old master
        self.child_pid = 0  # USR2: the new master we started

    @property
    def upgrading(self) -> bool:
        """We are the new master of a USR2 upgrade and the old one still runs."""
        return bool(self.parent_pid)

    def clear_environment(self, environ: MutableMapping[str, str] = os.environ) -> None:
        """Drop ``GREENHORN_PID`` (read in ``__init__``) so workers and the application's
        subprocesses never see it; call after ``titles.init_title`` (see there)."""
        environ.pop(MASTER_PID_ENV, None)

    @property
    def shared_sockets(self) -> bool:
        """Another master serves on our sockets (USR2 under way): keep the socket files."""
        return bool(self.child_pid or self.parent_pid)

    def pidfile_path(self, pidfile: str) -> str:
        """A USR2 child writes ``<pidfile>.2`` until the old master is gone."""
        return pidfile + ".2" if self.parent_pid else pidfile

    # -- HUP ---------------------------------------------------------------------------------

    def load(
        self,
        argv: list[str],
        current: Config,
        log: Logger,
        source: Callable[[], Config | None] | None = None,
    ) -> Config | None:
        """The settings again (systemd hears RELOADING=1), from ``argv`` or from
        ``source`` (the Python API's ``load_config``), or None (logged) when they do not
        load: the current configuration stays."""
        systemd.reloading()
        try:
            cfg = source() if source is not None else load(argv, os.environ)
            if cfg is None:
                raise ConfigError("the application gave no settings")
        except ConfigError as exc:
            log.error("Reload failed, keeping the current configuration: %s", exc)
            systemd.ready()
            return None
        fixed = [
            s.name
            for s in SETTINGS
            if not s.reloadable
            and s.name != "bind"
            and getattr(current, s.name) != getattr(cfg, s.name)
        ]
        if fixed:
            log.warning(
                "Reload: %s changed but need a restart (or USR2) to take effect", ", ".join(fixed)
            )
        return cfg

    def begin(self, old: Config) -> None:
        """A new generation starts; ``old`` is kept until it has booted."""
        self.previous_cfg = old
        self.generation += 1
        self.ready = False

    def confirm(self) -> None:
        """The current generation has booted: the reload (if any) is done."""
        self.ready = True
        self.previous_cfg = None

    def can_roll_back(self, generation: int) -> bool:
        """A worker of ``generation`` failed to boot: is that an unconfirmed reload?"""
        return bool(self.generation and generation == self.generation and self.previous_cfg)

    def roll_back(self) -> Config:
        """Give up the current generation: the previous settings (the caller retires the
        failed generation's workers)."""
        assert self.previous_cfg is not None
        cfg, self.previous_cfg = self.previous_cfg, None
        self.generation -= 1
        self.ready = True
        return cfg

    # -- USR2 --------------------------------------------------------------------------------

    def refuses_reexec(self, log: Logger) -> bool:
        """One upgrade at a time: not while a child or a parent master is around."""
        if self.child_pid:
            log.warning("USR2 signal ignored. Child exists.")
            return True
        if self.parent_pid:
            log.warning("USR2 signal ignored. Parent exists.")
            return True
        return False

    def reexec(self, listeners: Listeners, pre_exec: Callable[[], None]) -> None:
        """Fork; the child runs ``pre_exec`` (the hook) and execs the same command with
        the listeners handed over. In the parent ``child_pid`` is set."""
        master_pid = os.getpid()
        pid = os.fork()
        if pid:
            self.child_pid = pid
            return
        try:
            pre_exec()
            environ = dict(os.environ)
            environ.update(listeners.hand_over())
            environ[MASTER_PID_ENV] = str(master_pid)
            os.chdir(self.cwd)
            argv = self.exec_argv or [sys.executable, "-m", "greenhorn", *self.argv]
            os.execve(argv[0], argv, environ)
        finally:
            os._exit(exits.EXIT_FAILURE)

    def child_exited(self, pid: int) -> bool:
        """Was ``pid`` (just reaped) the master we started on USR2?"""
        if pid and pid == self.child_pid:
            self.child_pid = 0
            return True
        return False

    def promoted(self) -> int:
        """In a USR2 child: the old master's pid, once, when it has exited (we are the
        master now: take over the real pid file); else 0.

        The old master is gone when our parent pid is no longer its pid (we are its child:
        the kernel re-parents us the moment it exits, zombie or not). A master started with
        ``GREENHORN_PID`` by something else is not its child: it waits until that process
        has really ended, so it never promotes itself while the old master still runs.
        """
        old = self.parent_pid
        if not old or os.getppid() == old or running(old):
            return 0
        self.parent_pid = 0
        return old


def _pid(text: str | None) -> int:
    """A pid from the environment: a positive number, else 0 (no upgrade)."""
    try:
        pid = int(text or 0)
    except ValueError:
        return 0
    return max(pid, 0)
