"""Signals that only queue: the kernel-level handler writes the signal number to a pipe.

Why: doing work inside a Python signal handler (logging, reaping, raising to stop the loop)
is how gunicorn ended up with "reentrant call" errors and deadlocks (#2816, #3004, #3198).
Here the Python-level handler does nothing at all. ``signal.set_wakeup_fd`` makes CPython's
C handler write each signal number as one byte into a non-blocking pipe; the owner's loop
selects on the read end and dispatches. Nothing runs in signal context but that write.

The same mechanism serves the master (its select loop) and the workers (a small control
thread blocks on the pipe while the request loop serves).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

__all__ = ["MASTER_SIGNALS", "WORKER_SIGNALS", "SignalPipe", "is_alive", "name", "running"]

# The signals each process queues; everything else keeps its default action. What each one
# does is written where it is dispatched: ``master/arbiter.py`` (``Arbiter.dispatch``) and
# ``workers/base.py`` (``Worker.on_signal``). A new signal goes in a table here and gets its
# branch there.
MASTER_SIGNALS = (
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCHLD,
)
WORKER_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGABRT,
    signal.SIGHUP,
    signal.SIGWINCH,
)
# Ignored by workers (they belong to the master): a stray one must not kill a worker.
WORKER_IGNORED = (signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2)

NAMES = {
    getattr(signal, n): n[3:]
    for n in dir(signal)
    if n.startswith("SIG") and not n.startswith("SIG_") and isinstance(getattr(signal, n), int)
}


def name(signum: int) -> str:
    """``15`` → ``"TERM"``."""
    return NAMES.get(signum, str(signum))


def is_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (zombies included); EPERM counts as alive."""
    if pid <= 0:
        return False  # kill(0) and kill(-n) address process groups, not a pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: int) -> bool:
    """True if ``pid`` is a process that has not exited: alive and not a zombie (Linux
    ``/proc``; elsewhere as ``is_alive``)."""
    if not is_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return os.path.isdir(f"/proc/{pid}") or not os.path.isdir("/proc/self")
    return state not in (b"Z", b"X")


# Bound at import, before any green library patches os.read into a waiting call.
_os_read = os.read


def _ignore(signum: int, frame: object) -> None:
    """The Python-level handler: intentionally empty (the C handler already wrote the pipe)."""


class SignalPipe:
    """Install queue-only handlers for ``signals`` and expose the pipe to select on."""

    __slots__ = ("_previous", "_r", "_w")

    def __init__(self) -> None:
        self._r = -1
        self._w = -1
        self._previous: dict[int, object] = {}

    def install(self, signals: Iterable[int]) -> int:
        """Install handlers (main thread only); return the fd to wait on."""
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, _ignore)
        return self._r

    def fileno(self) -> int:
        return self._r

    def rearm(self) -> None:
        """Point the C handler at our pipe again, after a library replaced it (uvloop sets
        its own wakeup fd while its loop runs; main thread only)."""
        if self._w >= 0:
            signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def read(self) -> list[int]:
        """Signal numbers received since the last call, in order, CHLD collapsed to one.

        One read per call (the owner selects first): under eventlet's monkey-patching a
        second read on an empty non-blocking pipe would wait instead of raising.
        """
        out: list[int] = []
        try:
            data = _os_read(self._r, 4096)
        except (BlockingIOError, InterruptedError):
            return out
        for sig in data:
            if sig == 0 or (sig == signal.SIGCHLD and sig in out):
                continue
            out.append(sig)
        return out

    def wake(self) -> None:
        """Wake the owner's loop without a signal (writes a 0 byte, which ``read`` skips)."""
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def close(self, restore: bool = True) -> None:
        """Stop listening: restore previous handlers (if asked) and close the pipe."""
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:  # not the main thread
            pass
        if restore:
            for sig, handler in self._previous.items():
                try:
                    signal.signal(sig, handler)  # type: ignore[arg-type]
                except (ValueError, TypeError):
                    pass
        self._previous.clear()
        for fd in (self._r, self._w):
            if fd >= 0:
                os.close(fd)
        self._r = self._w = -1
