"""Process titles: what ``ps`` and ``top`` show for the master and each worker.

Why a module of its own: both processes set their title, and setproctitle has one trap
that must be handled at start-up, before anything edits ``os.environ`` (see
``init_title``). Titles are cosmetic: nothing here ever raises.
"""

from __future__ import annotations

import contextlib

__all__ = ["init_title", "master_title", "set_title", "worker_title"]

try:  # setproctitle is a declared dependency, but titles are cosmetic: never fail on them
    import setproctitle as _spt
except ImportError:  # pragma: no cover - only without the dependency
    _spt = None  # type: ignore[assignment]


def init_title() -> None:
    """Let setproctitle find argv/environ before anyone edits os.environ.

    Removing a variable first (LISTEN_FDS, GREENHORN_FD) makes setproctitle's start-up
    scan fail silently (gunicorn #3430), so ``cli.main`` calls this first thing (and so
    does ``Arbiter.run``, for embedders). It is idempotent.
    """
    if _spt is not None:
        with contextlib.suppress(Exception):
            _spt.getproctitle()


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
