"""The master's pid file: create it atomically, hand it over on USR2, remove only our own.

Why a module of its own: pid files go wrong in small ways that hurt in production: a
half-written file read by an init script, a second master started on top of a live one,
an exiting master deleting the file its successor just wrote. Each rule below is one of
those, and each has a test.

Rules:
- ``create`` writes a temp file in the same directory and renames it over the target, so
  readers see either the old content or the whole new pid, never a partial one.
- ``create`` refuses (PidfileError, gunicorn's message) when the file names another live
  process, and silently replaces a stale one (dead pid, garbage).
- ``unlink`` removes the file only if it still holds our pid.

USR2 flow (gunicorn's, which greenhorn keeps): the old master keeps ``<pidfile>``; the new
master, re-executed with the listeners, writes ``<pidfile>.2``; when the old master has
exited, the new master calls ``rename("<pidfile>", replacing=OLD)`` and becomes the one in
``<pidfile>``. The old master, on exit, removes ``<pidfile>`` (it still holds its pid) and
never touches ``<pidfile>.2``; if it could not (SIGKILL), ``replacing`` lets the new master
write over a file that still names the old master, even while that one is an unreaped
zombie. (nginx and unicorn instead rename the old file to ``.oldbin``; the primitives here
allow that too.)
"""

from __future__ import annotations

import contextlib
import errno
import os

from greenhorn.ipc.signals import is_alive

_MODE = 0o644  # -rw-r--r--, as gunicorn


class PidfileError(RuntimeError):
    """The pid file cannot be written; ``str()`` is one line for the error log."""


def read_pid(path: str) -> int | None:
    """The pid written in ``path``, or None if the file is missing, unreadable or garbage."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    if not text.isascii() or not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


class Pidfile:
    """One pid file at ``path`` (kept up to date by ``rename``); ``pid`` is what we wrote."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None

    def create(self, pid: int) -> None:
        """Write ``pid`` to the file atomically.

        PidfileError if the file names another live process ("Already running on PID ..."),
        or if the directory does not exist or is not writable. A stale file is replaced.
        """
        self._check_free(self.path, pid)
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise PidfileError(f"{directory} doesn't exist. Can't create pidfile.")
        import tempfile  # only with --pid: a plain server never loads it (memory)

        try:
            fd, tmp = tempfile.mkstemp(
                dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp"
            )
        except OSError as exc:
            raise PidfileError(f"Can't create pidfile {self.path}: {exc.strerror or exc}")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{pid}\n")
                os.fchmod(f.fileno(), _MODE)
            self._install(tmp, pid)
        except OSError as exc:
            raise PidfileError(f"Can't create pidfile {self.path}: {exc.strerror or exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.pid = pid

    def _install(self, tmp: str, pid: int) -> None:
        # link() fails if the target exists, so of two masters starting at once exactly one
        # wins; only when a file is already there do we re-check it and rename over it.
        try:
            os.link(tmp, self.path)
            return
        except FileExistsError:
            self._check_free(self.path, pid)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise  # filesystems without hard links fall through to rename
        os.replace(tmp, self.path)

    @staticmethod
    def _check_free(path: str, pid: int, gone: int = 0) -> None:
        other = read_pid(path)
        if other is not None and other not in (pid, gone, os.getpid()) and is_alive(other):
            raise PidfileError(f"Already running on PID {other} (or pid file '{path}' is stale)")

    def rename(self, new_path: str, replacing: int = 0) -> None:
        """Move our pid file to ``new_path`` (USR2: ``<pidfile>.2`` -> ``<pidfile>``).

        Atomic when both paths are on one filesystem. PidfileError if ``new_path`` names
        another live process than ``replacing`` (the old master, known to have exited).
        If our file has vanished, ``new_path`` is written afresh.
        """
        pid = self.pid if self.pid is not None else os.getpid()
        self._check_free(new_path, pid, replacing)
        if read_pid(self.path) == pid:
            try:
                os.replace(self.path, new_path)
                self.path = new_path
                return
            except OSError:
                pass  # other filesystem or directory: write the new one, drop the old one
        old = self.path
        self.path = new_path
        if replacing and read_pid(new_path) == replacing:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(new_path)  # the old master's, left behind: create() would refuse it
        self.create(pid)
        if read_pid(old) == pid:
            with contextlib.suppress(OSError):
                os.unlink(old)

    def unlink(self) -> bool:
        """Remove the file if it still holds our pid; True if removed. Never raises."""
        if self.pid is None or read_pid(self.path) != self.pid:
            return False
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True
