"""Process-level helpers that are not about sockets or config: exit codes, titles,
privilege drop, daemonizing, close-on-exec, liveness and memory of a pid.

Why a module of its own: gunicorn keeps these in a grab-bag util.py; here they are named
after their job so the arbiter and the worker read as a list of verbs.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import sys
from collections.abc import Callable

# Exit codes of the master process (gunicorn's values, so scripts keep working).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad setting or config file, like argparse
WORKER_BOOT_ERROR = 3  # a worker could not boot (hook raised, import failed after fork)
APP_LOAD_ERROR = 4  # the WSGI application could not be loaded

# Where the command was started, recorded at import (before --chdir moves us): a USR2
# re-exec must run the same command line from the same place.
try:
    START_CWD = os.getcwd()
except OSError:  # the directory was deleted under us
    START_CWD = "/"

try:  # setproctitle is a declared dependency, but titles are cosmetic: never fail on them
    import setproctitle as _spt
except ImportError:  # pragma: no cover - only without the dependency
    _spt = None  # type: ignore[assignment]


def init_title() -> None:
    """Let setproctitle find argv/environ before anyone edits os.environ.

    Removing a variable first (LISTEN_FDS, GREENHORN_FD) makes setproctitle's start-up
    scan fail silently (gunicorn #3430), so this runs when this module is imported; the
    arbiter may call it again, it is idempotent.
    """
    if _spt is not None:
        with contextlib.suppress(Exception):
            _spt.getproctitle()


init_title()


def set_title(text: str) -> None:
    """Set the process title shown by ps/top; silently nothing without setproctitle."""
    if _spt is not None:
        with contextlib.suppress(Exception):
            _spt.setproctitle(text)


def master_title(proc_name: str) -> str:
    """The master's title: ``greenhorn: master [proc_name]``."""
    return f"greenhorn: master [{proc_name}]"


def worker_title(proc_name: str) -> str:
    """A worker's title: ``greenhorn: worker [proc_name]``."""
    return f"greenhorn: worker [{proc_name}]"


def _resolve(value: int | str, lookup: Callable[[str], int], what: str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return lookup(text)
    except KeyError:
        raise ValueError(f"no such {what}: {text!r}") from None


def resolve_uid(value: int | str) -> int:
    """A user name or number to a uid; ValueError (one line) for an unknown name."""
    return _resolve(value, lambda name: pwd.getpwnam(name).pw_uid, "user")


def resolve_gid(value: int | str) -> int:
    """A group name or number to a gid; ValueError (one line) for an unknown name."""
    return _resolve(value, lambda name: grp.getgrnam(name).gr_gid, "group")


def drop_privileges(uid: int | None, gid: int | None, initgroups: bool = False) -> None:
    """Switch to ``gid`` then ``uid`` (None = keep); nothing when the ids already match.

    Order matters: groups and gid first, while we still may. With ``initgroups`` the
    supplementary groups become those of ``uid``'s user (initgroups(3)); without it,
    a process leaving root keeps only ``gid`` as supplementary group instead of
    root's (gunicorn would keep root's). Raises OSError (EPERM) when not allowed.
    """
    target_gid = os.getgid() if gid is None else gid
    if os.geteuid() == 0 and uid is not None and (uid != 0 or initgroups):
        user = _user_name(uid) if initgroups else None
        if user is not None:
            os.initgroups(user, target_gid)
        elif uid != 0:
            os.setgroups([target_gid])
    if gid is not None and (gid != os.getgid() or gid != os.getegid()):
        os.setgid(gid)
    if uid is not None and (uid != os.getuid() or uid != os.geteuid()):
        os.setuid(uid)


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def set_umask(mask: int) -> int:
    """Set the process umask; returns the previous one."""
    return os.umask(mask)


def set_cloexec(fd: int) -> None:
    """Mark ``fd`` close-on-exec (not inherited by exec'd programs)."""
    os.set_inheritable(fd, False)


def set_nonblocking(fd: int) -> None:
    """Put ``fd`` in non-blocking mode."""
    os.set_blocking(fd, False)


def daemonize(enable_stdio_inheritance: bool = False) -> None:
    """Detach from the terminal: fork, setsid, fork; only the grandchild returns.

    As gunicorn's ``--daemon``: the working directory is kept, the umask becomes 0o022,
    stdin always reads /dev/null. stdout/stderr go to /dev/null too, unless
    ``enable_stdio_inheritance``: then they are kept when redirected (``> log 2>&1``)
    and replaced only when they are a terminal. The caller skips this after a USR2
    re-exec (the old master already detached). See daemon(7), "SysV Daemons".
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # or buffered output is written twice, once per fork
    if os.fork():
        os._exit(EXIT_OK)
    os.setsid()
    if os.fork():
        os._exit(EXIT_OK)
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, 0)
        for fd in (1, 2):
            if not enable_stdio_inheritance or _is_tty(fd):
                os.dup2(null, fd)
    finally:
        if null > 2:
            os.close(null)


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


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


def _read_kb_fields(path: str, names: tuple[str, ...]) -> dict[str, int] | None:
    """``Name:   123 kB`` lines from a /proc file, in bytes; None if unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in lines:
        key, sep, rest = line.partition(":")
        if sep and key in names:
            fields = rest.split()
            if fields and fields[0].isdigit():
                found[key] = int(fields[0]) * 1024
    return found


def rss_bytes(pid: int, proc_root: str = "/proc") -> int | None:
    """Resident set size (VmRSS from /proc/<pid>/status); None if unknown."""
    fields = _read_kb_fields(f"{proc_root}/{pid}/status", ("VmRSS",))
    return None if not fields else fields.get("VmRSS")


def pss_bytes(pid: int, proc_root: str = "/proc") -> int | None:
    """Proportional set size (Pss from /proc/<pid>/smaps_rollup): shared pages divided
    among the processes sharing them, the fair measure for forked workers."""
    fields = _read_kb_fields(f"{proc_root}/{pid}/smaps_rollup", ("Pss",))
    return None if not fields else fields.get("Pss")


def uss_bytes(pid: int, proc_root: str = "/proc") -> int | None:
    """Unique set size (Private_Clean + Private_Dirty from smaps_rollup): what killing
    ``pid`` would give back."""
    names = ("Private_Clean", "Private_Dirty")
    fields = _read_kb_fields(f"{proc_root}/{pid}/smaps_rollup", names)
    if not fields or not all(name in fields for name in names):
        return None
    return sum(fields[name] for name in names)
