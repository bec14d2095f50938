"""Find the WSGI application: `module`, `module:attr`, `module:obj.attr`, `module:factory()`,
`module:factory(1, name='x')`; plus the process set-up that must happen before the import
(`raw_env`, `chdir`, `pythonpath`).

Why a module of its own: the arbiter (preload, HUP reload), the worker (lazy load after fork)
and `--check-config` all load the app the same way, and each failure has to turn into one
readable line. `AppImportError` carries that line; the original exception stays on
`__cause__` for whoever wants the traceback.

Rules (gunicorn compatible, stricter where gunicorn guesses):
- A bare `module` means attribute `application`, as in gunicorn.
- Factory arguments are parsed with `ast` and must be literals; nothing is ever `eval`'d.
- The attribute part may be a dotted path (`module:api.app`), also for factories.
- This module does not import `greenhorn.config`; it reads the three set-up settings from
  whatever `cfg` it is given.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

DEFAULT_ATTRIBUTE = "application"


class AppImportError(Exception):
    """The application could not be loaded; `str()` is one line meant for the user."""


@dataclass(frozen=True, slots=True)
class AppRef:
    """A parsed application URI."""

    uri: str
    module: str
    attrs: tuple[str, ...]
    call: bool = False
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The attribute path as written, without arguments: `create_app` or `api.app`."""
        return ".".join(self.attrs)


def one_line(exc: BaseException) -> str:
    """`"ValueError: boom"`: the exception's summary (type and message) on one line."""
    text = " ".join(
        part.strip() for part in traceback.format_exception_only(type(exc), exc) if part.strip()
    )
    return " ".join(text.split())


def _where(exc: BaseException) -> str:
    """`" (at app.py:3)"` for the innermost frame that is not importlib's own, or `""`."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")
    ]
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno})"


def _dotted_path(node: ast.expr, uri: str) -> tuple[str, ...]:
    """`a.b.c` as an ast expression → `("a", "b", "c")`."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppImportError(f"{uri!r}: expected an attribute name or a factory call")
    parts.append(node.id)
    return tuple(reversed(parts))


def _literal(node: ast.expr, uri: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise AppImportError(
            f"{uri!r}: factory arguments must be literals, got {ast.unparse(node)!r}"
        )


def parse_uri(uri: str) -> AppRef:
    """Parse an application URI without importing anything; raise `AppImportError` when it
    is malformed."""
    text = uri.strip()
    if not text:
        raise AppImportError("empty application module")
    module, sep, expr = text.partition(":")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise AppImportError(f"{uri!r}: {module!r} is not a valid module name")
    if not sep:
        return AppRef(uri=text, module=module, attrs=(DEFAULT_ATTRIBUTE,))
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise AppImportError(f"{uri!r}: expected an attribute name or a factory call")
    if not isinstance(node, ast.Call):
        return AppRef(uri=text, module=module, attrs=_dotted_path(node, uri))
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        kw.arg is None for kw in node.keywords
    ):
        raise AppImportError(f"{uri!r}: *args and **kwargs are not supported")
    return AppRef(
        uri=text,
        module=module,
        attrs=_dotted_path(node.func, uri),
        call=True,
        args=tuple(_literal(a, uri) for a in node.args),
        kwargs={kw.arg: _literal(kw.value, uri) for kw in node.keywords if kw.arg},
    )


def check_importable(uri: str | None) -> None:
    """Fail early, in the master, when the application's top-level module cannot be found.

    Nothing is imported (``find_spec`` of the top-level name only runs no code), so the
    master stays free of the application; attribute and import-time errors are still found
    by the workers. Raises ``AppImportError`` with gunicorn-like wording.
    """
    if not uri:
        raise AppImportError("no application module specified")
    ref = parse_uri(uri)
    top = ref.module.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise AppImportError(f"error importing {top!r}: {one_line(exc)}") from exc
    if spec is None:
        hint = ""
        if ref.module.endswith(".py") and os.path.exists(ref.module):
            hint = f" (did you mean '{ref.module[:-3]}:{DEFAULT_ATTRIBUTE}'?)"
        raise AppImportError(f"module {ref.module!r} not found{hint}")


def import_module(name: str) -> ModuleType:
    """Import module `name`, turning every failure into a one-line `AppImportError`."""
    try:
        return importlib.import_module(name)
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else name
        raise AppImportError(f"syntax error in {where}: {exc.msg}") from exc
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            hint = ""
            if name.endswith(".py") and os.path.exists(name):
                hint = f" (did you mean '{name[:-3]}:{DEFAULT_ATTRIBUTE}'?)"
            raise AppImportError(f"module {name!r} not found{hint}") from exc
        raise AppImportError(f"error importing {name!r}: {one_line(exc)}{_where(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise AppImportError(f"error importing {name!r}: {one_line(exc)}{_where(exc)}") from exc


def _call_factory(ref: AppRef, factory: Any) -> Any:
    name = f"{ref.module}:{ref.target}"
    if not callable(factory):
        raise AppImportError(f"{name} is not callable, so it cannot be used as a factory")
    try:
        inspect.signature(factory).bind(*ref.args, **ref.kwargs)
    except TypeError as exc:
        raise AppImportError(f"factory {name}() cannot take these arguments: {exc}") from exc
    except ValueError:  # no introspectable signature: just call it
        pass
    try:
        app = factory(*ref.args, **ref.kwargs)
    except Exception as exc:
        raise AppImportError(f"factory {name}() raised {one_line(exc)}{_where(exc)}") from exc
    if app is None:
        raise AppImportError(f"factory {name}() returned None instead of an application")
    return app


def load_app(uri: str) -> Callable[..., Any]:
    """Import and return the WSGI callable named by `uri`.

    Raises `AppImportError` with a one-line message when the URI is malformed, the module is
    missing or fails to import (syntax errors give file:line), an attribute is missing, a
    factory cannot take the given arguments or raises, or the result is not callable.
    """
    ref = parse_uri(uri)
    obj: Any = import_module(ref.module)
    for i, attr in enumerate(ref.attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            owner = ".".join((ref.module, *ref.attrs[:i]))
            raise AppImportError(f"{owner!r} has no attribute {attr!r}") from exc
    if ref.call:
        obj = _call_factory(ref, obj)
    if not callable(obj):
        raise AppImportError(
            f"application object {ref.module}:{ref.target} is not callable "
            f"(it is {type(obj).__name__})"
        )
    app: Callable[..., Any] = obj
    return app


# --- process set-up before the import ---------------------------------------------------


def apply_raw_env(raw_env: Iterable[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Set each `KEY=VALUE` of `raw_env` in `environ` (default `os.environ`)."""
    target = os.environ if environ is None else environ
    for item in raw_env:
        key, _, value = item.partition("=")
        target[key] = value


def apply_chdir(path: str | None) -> None:
    """Change to `path` (when given) and put the working directory first on `sys.path`,
    as gunicorn does, so `module:app` is found relative to it."""
    if path:
        os.chdir(path)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def add_pythonpath(paths: Iterable[str]) -> None:
    """Prepend each of `paths` (made absolute against the current directory) to `sys.path`,
    keeping their order and skipping ones already present."""
    for path in reversed([os.path.abspath(p) for p in paths]):
        if path not in sys.path:
            sys.path.insert(0, path)


def prepare_environment(cfg: Any) -> None:
    """Apply `cfg.raw_env`, `cfg.chdir` and `cfg.pythonpath`, in that order (pythonpath
    entries are relative to the new directory, as in gunicorn)."""
    apply_raw_env(cfg.raw_env)
    apply_chdir(cfg.chdir)
    add_pythonpath(cfg.pythonpath)
