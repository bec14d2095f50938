"""Find the WSGI application: `module`, `module:attr`, `module:obj.attr`, `module:factory()`,
`module:factory(1, name='x')`; plus the process set-up that must happen before the import
(`raw_env`, `chdir`, `pythonpath`).

Why a module of its own: the arbiter (preload, HUP reload), the worker (lazy load after fork)
and `--check-config` all load the app the same way, and each failure has to turn into one
readable line. `AppImportError` carries that line; the original exception stays on
`__cause__` for whoever wants the traceback. Reading the name and importing what it names
is `greenhorn.config.importer`'s job (the one importer of `module:attr` names); this module
adds what is the application's own: a bare `module` means attribute `application` (as in
gunicorn), `module:factory(ARGS)` is called (literal arguments only, never `eval`'d), and the
result must be callable.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from greenhorn.config.importer import (
    APPLICATION,
    ImportFailed,
    ObjectRef,
    one_line,
    parse_app,
    resolve,
    where,
)
from greenhorn.ipc import exits

if TYPE_CHECKING:
    from greenhorn.config import Config

__all__ = [
    "AppImportError",
    "AppSource",
    "StartResponse",
    "WSGIApp",
    "add_pythonpath",
    "app_label",
    "apply_chdir",
    "apply_raw_env",
    "check_configured_app",
    "check_importable",
    "exit_status",
    "load_app",
    "load_configured",
    "load_configured_app",
    "load_paste",
    "parse_uri",
    "prepare_environment",
]

# PEP 3333's two callables, as the server sees them.
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

DEFAULT_ATTRIBUTE = APPLICATION
# The one error type of a failed load (an application named wrongly, missing, or failing).
AppImportError = ImportFailed


# Parse an application URI without importing anything (`AppImportError` when malformed).
parse_uri = parse_app


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
        raise AppImportError(f"error importing {top!r}: {one_line(exc)}", importing=True) from exc
    if spec is None:
        hint = ""
        if ref.module.endswith(".py") and os.path.exists(ref.module):
            hint = f" (did you mean '{ref.module[:-3]}:{DEFAULT_ATTRIBUTE}'?)"
        raise AppImportError(f"module {ref.module!r} not found{hint}", importing=True)


def _call_factory(ref: ObjectRef, factory: object) -> object:
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
        app: object = factory(*ref.args, **ref.kwargs)
    except Exception as exc:
        raise AppImportError(
            f"factory {name}() raised {one_line(exc)}{where(exc)}", importing=True
        ) from exc
    if app is None:
        raise AppImportError(f"factory {name}() returned None instead of an application")
    return app


def exit_status(exc: AppImportError) -> int:
    """The exit status of a server whose workers cannot load the application, as gunicorn's:
    ``WORKER_BOOT_ERROR`` (3) when importing the module or the application's own code
    failed (a missing module, an exception, a syntax error, a factory that raised: gunicorn
    lets those through as a worker boot failure); ``APP_LOAD_ERROR`` (4) when the module
    imported but the name is wrong (a missing attribute, a malformed name, a factory called
    with the wrong arguments, an object that is None or not callable)."""
    return exits.WORKER_BOOT_ERROR if exc.importing else exits.APP_LOAD_ERROR


def load_app(uri: str) -> WSGIApp:
    """Import and return the WSGI callable named by `uri`.

    Raises `AppImportError` with a one-line message when the URI is malformed, the module is
    missing or fails to import (syntax errors give file:line), an attribute is missing, a
    factory cannot take the given arguments or raises, or the result is not callable.
    """
    ref = parse_uri(uri)
    obj = resolve(ref, suggest=f":{DEFAULT_ATTRIBUTE}")
    if ref.call:
        obj = _call_factory(ref, obj)
    if not callable(obj):
        raise AppImportError(
            f"application object {ref.module}:{ref.target} is not callable "
            f"(it is {type(obj).__name__})"
        )
    return cast("WSGIApp", obj)  # callable; PEP 3333 cannot be checked further here


# --- PasteDeploy (--paste) ----------------------------------------------------------------


def _paste_path(uri: str) -> tuple[str, str]:
    """``app.ini#name`` -> (absolute path of the file, section name or "")."""
    path, _, name = uri.partition("#")
    return os.path.abspath(path), name


def load_paste(uri: str, global_conf: Mapping[str, str] | None = None) -> WSGIApp:
    """The application of a PasteDeploy config file, as gunicorn's ``--paste`` loads it:
    ``app.ini`` serves its ``[app:main]``, ``app.ini#name`` its ``[app:name]``;
    ``global_conf`` (``--paste-global``) is passed to the factories. Relative paths are
    taken from the current directory. ``AppImportError`` (one line) on any failure."""
    path, name = _paste_path(uri)
    if not os.path.isfile(path):
        raise AppImportError(f"PasteDeploy config file {path!r} not found")
    try:
        from paste.deploy import loadapp
    except ImportError as exc:
        raise AppImportError("--paste needs PasteDeploy: pip install PasteDeploy") from exc
    config_uri = f"config:{path}" + (f"#{name}" if name else "")
    try:
        app: object = loadapp(
            config_uri, relative_to=os.getcwd(), global_conf=dict(global_conf or {})
        )
    except Exception as exc:
        raise AppImportError(
            f"PasteDeploy could not load {uri!r}: {one_line(exc)}{where(exc)}"
        ) from exc
    if not callable(app):
        raise AppImportError(f"PasteDeploy application {uri!r} is not callable")
    return cast("WSGIApp", app)


def paste_global_conf(items: Iterable[str]) -> dict[str, str]:
    """``--paste-global KEY=VALUE`` items as PasteDeploy's global_conf."""
    from greenhorn.config.converters import split_paste_global

    return dict(split_paste_global(item) for item in items)


def app_label(cfg: Config) -> str:
    """The application as the log names it: APP_MODULE, or the --paste file."""
    return str(cfg.paste if cfg.paste is not None else cfg.wsgi_app)


def load_configured_app(cfg: Config) -> WSGIApp:
    """The application the settings name: ``--paste`` (it wins, as in gunicorn), else
    APP_MODULE."""
    if cfg.paste is not None:
        return load_paste(cfg.paste, paste_global_conf(cfg.raw_paste_global_conf))
    return load_app(cfg.wsgi_app or "")


def check_configured_app(cfg: Config) -> None:
    """What the master checks without importing the application (see check_importable):
    for --paste, that the file exists and PasteDeploy is installed."""
    if cfg.paste is None:
        check_importable(cfg.wsgi_app)
        return
    path, _ = _paste_path(cfg.paste)
    if not os.path.isfile(path):
        raise AppImportError(f"PasteDeploy config file {path!r} not found")
    if importlib.util.find_spec("paste") is None:
        raise AppImportError("--paste needs PasteDeploy: pip install PasteDeploy")


class AppSource(Protocol):
    """An object that loads the application itself: the Python API's ``BaseApplication``
    (``greenhorn.app.base``), whose ``wsgi()`` calls its ``load()`` once."""

    def wsgi(self) -> WSGIApp: ...


def load_configured(cfg: Config, source: AppSource | None = None) -> WSGIApp:
    """The application to serve: ``source.wsgi()`` when the Python API gave an application
    object, else the one the settings name. ``AppImportError`` (one line) when it fails; an
    exception from ``source`` counts as the application's own code failing (status 3)."""
    if source is None:
        return load_configured_app(cfg)
    try:
        app = source.wsgi()
    except AppImportError:
        raise
    except Exception as exc:
        raise AppImportError(f"load() raised {one_line(exc)}{where(exc)}", importing=True) from exc
    if not callable(app):
        raise AppImportError(f"load() returned {type(app).__name__}, not an application")
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


def prepare_environment(cfg: Config) -> None:
    """Apply `cfg.raw_env`, `cfg.chdir` and `cfg.pythonpath`, in that order (pythonpath
    entries are relative to the new directory, as in gunicorn)."""
    apply_raw_env(cfg.raw_env)
    apply_chdir(cfg.chdir)
    add_pythonpath(cfg.pythonpath)
