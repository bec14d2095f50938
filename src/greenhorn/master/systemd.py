"""systemd integration without libsystemd: socket activation and sd_notify.

Why a module of its own: both protocols are small, stable and documented, so a few dozen
lines of stdlib replace a C dependency, and each function can be tested against a real
datagram socket.

- Socket activation, sd_listen_fds(3):
  https://www.freedesktop.org/software/systemd/man/latest/sd_listen_fds.html
  systemd passes listening fds starting at fd 3, with LISTEN_FDS (count), LISTEN_PID (who
  they are for) and LISTEN_FDNAMES (colon-separated names).
- Notifications, sd_notify(3):
  https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html
  newline-separated ``KEY=VALUE`` assignments in one datagram to the AF_UNIX socket named
  by NOTIFY_SOCKET (a path, or ``@name`` for the abstract namespace).

Rules: functions take the environment as a parameter (default ``os.environ``) and never
raise on a missing or malformed environment; sd_notify returns False instead of raising.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, MutableMapping

SD_LISTEN_FDS_START = 3
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.strip().isascii() or not text.strip().isdigit():
        return None
    value = int(text)
    return value if value > 0 else None


def listen_fds(
    environ: Mapping[str, str] | None = None,
    unset_environment: bool = True,
    pid: int | None = None,
) -> int:
    """Number of fds passed by socket activation (they start at fd 3); 0 if none.

    The fds count only when LISTEN_PID equals ``pid`` (default ``os.getpid()``). As
    sd_listen_fds(3) does, LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed from
    ``environ`` when ``unset_environment`` is true and ``environ`` is mutable, whether or
    not they were for us, so child processes never mistake them for their own. Read
    ``listen_fdnames`` first if you want the names.
    """
    env = os.environ if environ is None else environ
    count = _positive_int(env.get("LISTEN_FDS"))
    listen_pid = _positive_int(env.get("LISTEN_PID"))
    if unset_environment and isinstance(env, MutableMapping):
        for name in _LISTEN_VARS:
            env.pop(name, None)
    if count is None or listen_pid != (os.getpid() if pid is None else pid):
        return 0
    return count


def listen_fdnames(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names from LISTEN_FDNAMES (systemd's FileDescriptorName=), in fd order; [] if unset."""
    env = os.environ if environ is None else environ
    raw = env.get("LISTEN_FDNAMES")
    return raw.split(":") if raw else []


def _notify_address(environ: Mapping[str, str]) -> str | None:
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    return None  # vsock: and other transports are not supported


def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to NOTIFY_SOCKET; True if the datagram was sent.

    False, without raising, when NOTIFY_SOCKET is unset (not run by systemd) or when
    sending fails: a notification must never take the server down.
    """
    env = os.environ if environ is None else environ
    addr = _notify_address(env)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            sock.sendto(state.encode("utf-8", "replace"), addr)
    except (OSError, ValueError):
        return False
    return True


def _one_line(text: str) -> str:
    # A newline would start a new assignment: keep free text to one line.
    return " ".join(text.splitlines())


def ready(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """READY=1 (start-up finished), with an optional STATUS= line."""
    state = "READY=1" if status is None else f"READY=1\nSTATUS={_one_line(status)}"
    return sd_notify(state, environ)


def reloading(environ: Mapping[str, str] | None = None) -> bool:
    """RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload requires; send ready() after."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return sd_notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", environ)


def stopping(environ: Mapping[str, str] | None = None) -> bool:
    """STOPPING=1: shutdown has begun."""
    return sd_notify("STOPPING=1", environ)
