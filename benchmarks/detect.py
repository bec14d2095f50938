"""Find the tools the benchmarks compare against: wrk and a Python that can import gunicorn
(and uvicorn, for the ASGI scenarios).

Why a module of its own: ``run.py`` and ``parse.py`` both need gunicorn, which must live in
its own interpreter (a throwaway venv: installing it next to greenhorn would mix the two),
and neither script installs anything. So this module only looks, and when something is
missing it says exactly how to get it. Standard library only: ``parse.py`` also runs it
under gunicorn's interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = [
    "HOW_TO_GET_GUNICORN",
    "HOW_TO_GET_UVICORN",
    "HOW_TO_GET_WRK",
    "find_gunicorn_python",
    "find_uvicorn_python",
    "find_wrk",
    "import_path",
]

HOW_TO_GET_WRK = "install it with `apt-get install wrk` (Debian/Ubuntu)"
HOW_TO_GET_UVICORN = (
    "install it beside gunicorn: `/tmp/gvenv/bin/pip install 'uvicorn[standard]'` "
    "(or pass --uvicorn-python)"
)
HOW_TO_GET_GUNICORN = (
    "install it in a throwaway venv with "
    "`python -m venv /tmp/gvenv && /tmp/gvenv/bin/pip install gunicorn`, "
    "then pass --gunicorn-python /tmp/gvenv/bin/python"
)

# Where a throwaway gunicorn usually is, tried in this order after an explicit path.
_CANDIDATE_VENVS = ("/tmp/gvenv", "/work/gvenv")


def find_wrk(explicit: str | None = None) -> str | None:
    """The wrk executable (``explicit`` if given and runnable), or None."""
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("wrk")


def _ask(python: str, code: str) -> str | None:
    """What ``python -c code`` prints, or None if it cannot be run or fails."""
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def gunicorn_version(python: str) -> str | None:
    """gunicorn's version as seen by ``python``, or None if it cannot import gunicorn."""
    out = _ask(python, "import gunicorn; print(gunicorn.__version__)")
    return (out or "").strip() or None


def uvicorn_version(python: str) -> str | None:
    """uvicorn's version as seen by ``python`` (None if it cannot import uvicorn, or has
    neither httptools nor uvloop for the fast flavour: the ASGI scenarios need both)."""
    out = _ask(python, "import uvicorn, httptools, uvloop; print(uvicorn.__version__)")
    return (out or "").strip() or None


def find_uvicorn_python(
    explicit: str | None = None, also: str | None = None
) -> tuple[str, str] | None:
    """(python, uvicorn version) for an interpreter with ``uvicorn[standard]``, or None:
    ``explicit``, else the gunicorn interpreter (``also``), the usual venvs, this one."""
    candidates = [explicit] if explicit else [also or ""]
    if not explicit:
        candidates += [os.path.join(v, "bin", "python") for v in _CANDIDATE_VENVS]
        candidates.append(sys.executable)
    for python in dict.fromkeys(candidates):
        if python and os.access(python, os.X_OK):
            version = uvicorn_version(python)
            if version is not None:
                return python, version
    return None


def import_path(python: str) -> tuple[str, ...]:
    """``sys.path`` of ``python`` started normally (after its site start-up), or () if it
    cannot be asked. ``run.py`` starts each server with ``-S`` and this path in PYTHONPATH:
    the same modules import, but start-up code in ``.pth`` files runs in neither server."""
    out = _ask(python, "import sys; print('\\n'.join(p for p in sys.path if p))")
    return tuple(line for line in (out or "").splitlines() if line)


def find_gunicorn_python(explicit: str | None = None) -> tuple[str, str] | None:
    """(python, gunicorn version) for an interpreter that imports gunicorn, or None.

    Tried in order: ``explicit``; the usual throwaway venvs; this interpreter; the
    interpreter named in the shebang of a ``gunicorn`` script on PATH.
    """
    if explicit:
        candidates = [explicit]
    else:
        candidates = [os.path.join(v, "bin", "python") for v in _CANDIDATE_VENVS]
        candidates.append(sys.executable)
        script = shutil.which("gunicorn")
        if script:
            candidates.append(_shebang_python(script) or "")
    seen: set[str] = set()
    for python in candidates:
        if not python or python in seen or not os.access(python, os.X_OK):
            continue
        seen.add(python)
        version = gunicorn_version(python)
        if version is not None:
            return python, version
    return None


def _shebang_python(script: str) -> str | None:
    try:
        with open(script, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    return parts[0] if parts else None
