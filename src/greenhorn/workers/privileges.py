"""Dropping privileges in a worker: ``--user``, ``--group`` and ``--initgroups``.

Why a module of its own: the order of the calls matters and each platform rule (who may
call ``initgroups``, which supplementary groups a process keeps) is a security decision
with a test of its own. The master keeps its ids; each worker drops them right after fork.
"""

from __future__ import annotations

import os
import pwd

__all__ = ["drop_privileges"]


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
