"""``--spew``: print every line of Python the server runs, as gunicorn's ``--spew`` does.

Why a module of its own: it is the last-resort debugging aid, and nothing else in greenhorn
installs a trace function. ``install`` runs once in the master, right before the arbiter
starts; workers are forked from it and keep the trace function of the thread that forked
them, so the master's loop, each worker's boot, its request loop and the application's own
code all show up. Threads started afterwards (gthread's pool, the control thread) are
traced too.

Each line executed is written to stdout as gunicorn writes it, ``module:lineno: source``
(``greenhorn.master.arbiter:312: ready = self.wait(fd, LOOP_SECONDS)``), and flushed at
once, so that the lines before a crash are not lost in a buffer.
"""

from __future__ import annotations

import linecache
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeAlias

Tracer: TypeAlias = Callable[[FrameType, str, object], "Tracer | None"]

__all__ = ["install", "trace_line"]


def trace_line(frame: FrameType) -> str:
    """The line ``frame`` is about to run, as ``module:lineno: source``."""
    name = frame.f_globals.get("__name__", "[unknown]")
    lineno = frame.f_lineno
    source = linecache.getline(frame.f_code.co_filename, lineno).rstrip()
    if not source:
        source = f"[no source: {frame.f_code.co_name}]"
    return f"{name}:{lineno}: {source}\n"


def _spew(frame: FrameType, event: str, arg: object) -> Tracer:
    if event == "line":
        out = sys.stdout
        try:
            out.write(trace_line(frame))
            out.flush()
        except (OSError, ValueError, AttributeError):
            pass  # stdout closed (daemon mode) or gone: nothing to trace to
    return _spew


def install() -> None:
    """Trace this thread from now on, and every thread started after this call."""
    threading.settrace(_spew)
    sys.settrace(_spew)
