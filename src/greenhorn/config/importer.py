"""Python objects named by strings in the settings: THE one parser and importer of
``module:attr`` names.

Why a module of its own: the application (``module:app``, ``module:factory(1, x='y')``),
server hooks given as strings (``module.function``), ``logger_class`` and custom worker
classes are all Python objects named by a string, and they must be read the same way, with
the same one-line errors. This module reads those names and imports what they name; each
caller adds what is its own (the app loader calls a factory and checks the result is
callable, the worker registry knows which extra a worker type needs).

Forms:
- ``module:attr``, ``module:obj.attr``: the attribute path after the colon;
- ``module.attr`` (no colon): the last dotted part is the attribute (``logger_class``,
  hooks, worker classes, as gunicorn reads them);
- ``module`` alone: only where the caller names a default attribute (the application's
  ``application``);
- ``module:factory(ARGS)``: only where the caller allows calls (the application); the
  arguments must be literals, read with ``ast``: nothing is ever ``eval``'d.

Every failure is an ``ImportFailed`` whose ``str()`` is one line; the original exception
stays on ``__cause__`` for whoever wants the traceback.
"""

from __future__ import annotations

import ast
import importlib
import os
import traceback
from dataclasses import dataclass, field
from types import ModuleType

__all__ = [
    "APPLICATION",
    "ImportFailed",
    "ObjectRef",
    "import_module",
    "import_object",
    "one_line",
    "parse_app",
    "parse_ref",
    "resolve",
    "where",
]


APPLICATION = "application"  # the attribute a bare application module names, as in gunicorn


class ImportFailed(Exception):
    """A named object could not be found or imported; ``str()`` is one line for the user.

    ``importing`` tells the two kinds apart: True when importing the module failed (it is
    missing, it raised, it has a syntax error) or the named factory raised; False when the
    name itself is wrong (malformed, a missing attribute, an object that cannot be used).
    gunicorn exits differently for the two (see ``greenhorn.wsgi.app.exit_status``).
    """

    def __init__(self, message: str, *, importing: bool = False) -> None:
        super().__init__(message)
        self.importing = importing


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A parsed name: the module, the attribute path, and for a factory its arguments."""

    uri: str
    module: str
    attrs: tuple[str, ...]
    call: bool = False
    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = field(default_factory=dict)

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


def where(exc: BaseException) -> str:
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
        raise ImportFailed(f"{uri!r}: expected an attribute name or a factory call")
    parts.append(node.id)
    return tuple(reversed(parts))


def _literal(node: ast.expr, uri: str) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ImportFailed(
            f"{uri!r}: factory arguments must be literals, got {ast.unparse(node)!r}"
        )


def parse_ref(uri: str, *, default_attr: str | None = None, calls: bool = False) -> ObjectRef:
    """Parse a name without importing anything; ``ImportFailed`` when it is malformed.

    Without a colon, the last dotted part is the attribute, unless ``default_attr`` is
    given: then the whole text is the module (``myapp`` means ``myapp:application``).
    ``calls`` allows ``module:factory(ARGS)``.
    """
    text = uri.strip()
    if not text:
        raise ImportFailed("empty name" if default_attr is None else "empty application module")
    module, sep, expr = text.partition(":")
    if not sep and default_attr is None:
        module, _, expr = text.rpartition(".")
        if not module:
            raise ImportFailed(f"{uri!r} is not an import path (module.name or module:name)")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ImportFailed(f"{uri!r}: {module!r} is not a valid module name")
    if not sep and default_attr is not None:
        return ObjectRef(uri=text, module=module, attrs=(default_attr,))
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise ImportFailed(f"{uri!r}: expected an attribute name or a factory call")
    if not isinstance(node, ast.Call):
        return ObjectRef(uri=text, module=module, attrs=_dotted_path(node, uri))
    if not calls:
        raise ImportFailed(f"{uri!r}: expected an attribute name, not a call")
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        kw.arg is None for kw in node.keywords
    ):
        raise ImportFailed(f"{uri!r}: *args and **kwargs are not supported")
    return ObjectRef(
        uri=text,
        module=module,
        attrs=_dotted_path(node.func, uri),
        call=True,
        args=tuple(_literal(a, uri) for a in node.args),
        kwargs={kw.arg: _literal(kw.value, uri) for kw in node.keywords if kw.arg},
    )


def parse_app(uri: str) -> ObjectRef:
    """An application name: ``module`` (its ``application``), ``module:attr`` or
    ``module:factory(ARGS)``."""
    return parse_ref(uri, default_attr=APPLICATION, calls=True)


def import_module(name: str, *, suggest: str = "") -> ModuleType:
    """Import module `name`, turning every failure into a one-line `ImportFailed`.

    A missing ``x.py`` that exists as a file gets a hint: ``did you mean 'x<suggest>'``.
    """
    try:
        return importlib.import_module(name)
    except SyntaxError as exc:
        place = f"{exc.filename}:{exc.lineno}" if exc.filename else name
        raise ImportFailed(f"syntax error in {place}: {exc.msg}", importing=True) from exc
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            hint = ""
            if name.endswith(".py") and os.path.exists(name):
                hint = f" (did you mean '{name[:-3]}{suggest}'?)"
            raise ImportFailed(f"module {name!r} not found{hint}", importing=True) from exc
        raise ImportFailed(
            f"error importing {name!r}: {one_line(exc)}{where(exc)}", importing=True
        ) from exc
    except (Exception, SystemExit) as exc:
        raise ImportFailed(
            f"error importing {name!r}: {one_line(exc)}{where(exc)}", importing=True
        ) from exc


def resolve(ref: ObjectRef, *, suggest: str = "") -> object:
    """Import ``ref.module`` and follow ``ref.attrs`` (a factory is not called here)."""
    obj: object = import_module(ref.module, suggest=suggest)
    for i, attr in enumerate(ref.attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            owner = ".".join((ref.module, *ref.attrs[:i]))
            raise ImportFailed(f"{owner!r} has no attribute {attr!r}") from exc
    return obj


def import_object(name: str) -> object:
    """The object named ``module:attr`` or ``module.attr``; ``ImportFailed`` (one line)."""
    return resolve(parse_ref(name))
