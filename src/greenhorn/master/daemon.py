"""``--daemon``: detach the master from its terminal, as gunicorn does.

Why a module of its own: the double fork and the rules for the standard streams are a
small protocol of their own (daemon(7)), run once, before the master does anything else.
"""

from __future__ import annotations

import contextlib
import os
import sys

from greenhorn.ipc.exits import EXIT_OK

__all__ = ["daemonize"]


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
