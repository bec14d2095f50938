"""``BaseApplication`` and ``Application``: greenhorn started from Python (gunicorn's API).

Why it exists: gunicorn documents a pattern for starting the server from a script, and
frameworks and deployments use it::

    from gunicorn.app.base import BaseApplication       # greenhorn.app.base here

    class StandaloneApplication(BaseApplication):
        def __init__(self, app, options=None):
            self.options = options or {}
            self.application = app
            super().__init__()

        def load_config(self):
            for key, value in self.options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key.lower(), value)

        def load(self):
            return self.application

    StandaloneApplication(app, {"bind": "127.0.0.1:8080", "workers": 4}).run()

It works here by changing the import only. ``self.cfg`` is ``Settings``: while
``load_config`` runs it collects values by setting name (``set`` checks each one with the
setting's own converter, the same as a config file's value), answers them as attributes and
lists the settings in ``cfg.settings``. ``run()`` freezes it into greenhorn's ``Config``
(with the environment's defaults, ``PORT`` and ``WEB_CONCURRENCY``, under it, as gunicorn's
defaults read them), prepares the process (``raw_env``, ``chdir``, ``pythonpath``) and runs
the master with this object as the application's source: each worker calls ``wsgi()``,
which calls ``load()`` once (in the master with ``preload_app``). On HUP the master calls
``load_config`` again on a fresh ``Settings``; on USR2 it re-executes the same command
(``python yourscript.py ...``). ``run()`` ends the process with the master's exit status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from greenhorn.config import Config, ConfigError, warn_stderr
from greenhorn.config.gunicorn_cfg import SettingValue
from greenhorn.config.layers import Layer, environ_layers, merge
from greenhorn.config.setting import Warned
from greenhorn.config.settings import BY_NAME
from greenhorn.ipc.exits import EXIT_USAGE

if TYPE_CHECKING:
    from greenhorn.wsgi.app import WSGIApp

__all__ = ["Application", "BaseApplication", "Settings"]

SOURCE = "application"


class Settings:
    """The settings an application's ``load_config`` fills in (its ``self.cfg``)."""

    def __init__(self, usage: str | None = None, prog: str | None = None) -> None:
        self.usage = usage
        self.prog = prog or os.path.basename(sys.argv[0])
        self._values: dict[str, object] = {}

    @property
    def settings(self) -> dict[str, SettingValue]:
        """Every setting by name (``name in cfg.settings``; ``cfg.settings[name].value``)."""
        return {
            name: SettingValue(name, setting.section, self._current(name))
            for name, setting in BY_NAME.items()
        }

    def set(self, name: str, value: object) -> None:
        """Set ``name`` (checked now: ``ConfigError``, one line, for a bad value)."""
        setting = BY_NAME.get(name)
        if setting is None:
            raise AttributeError(f"No configuration setting for: {name}")
        if value is not None:
            try:
                setting.convert(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"setting {name}: invalid value {value!r}: {exc}") from None
        self._values[name] = value

    def __getattr__(self, name: str) -> object:
        if name.startswith("_") or name not in BY_NAME:
            raise AttributeError(f"No configuration setting for: {name}")
        return self._current(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def _current(self, name: str) -> object:
        setting = BY_NAME[name]
        if name not in self._values or self._values[name] is None:
            return setting.make_default()
        value = setting.convert(self._values[name])
        return value.value if isinstance(value, Warned) else value

    def freeze(self, environ: Mapping[str, str] | None = None) -> Config:
        """greenhorn's ``Config``: the environment's defaults, then what was set."""
        layers = environ_layers(os.environ if environ is None else environ)
        layers.append(Layer(SOURCE, dict(self._values), "file", "load_config"))
        merged = merge(layers)
        for message in merged.warnings:
            warn_stderr(message)
        return Config(**merged.values)


class BaseApplication:
    """gunicorn's ``BaseApplication``: override ``load_config()`` and ``load()``."""

    def __init__(self, usage: str | None = None, prog: str | None = None) -> None:
        self.usage = usage
        self.prog = prog
        self.cfg: Settings = Settings(usage, prog)
        self.callable: object = None
        self.logger: object = None
        self.frozen: Config | None = None  # what run() started with (after HUP: reloaded)
        self.do_load_config()

    def do_load_config(self) -> None:
        """``load_default_config()`` then ``load_config()``; a bad value ends the process
        with one line on stderr and status 2 (a configuration error)."""
        try:
            self.load_default_config()
            self.load_config()
        except (ConfigError, AttributeError) as exc:
            sys.stderr.write(f"greenhorn: error: {exc}\n")
            sys.stderr.flush()
            raise SystemExit(EXIT_USAGE) from None

    def load_default_config(self) -> None:
        self.cfg = Settings(self.usage, prog=self.prog)

    def init(self, parser: object, opts: object, args: list[str]) -> dict[str, object] | None:
        raise NotImplementedError

    def load_config(self) -> None:
        """Fill ``self.cfg`` in (``self.cfg.set(name, value)``)."""
        raise NotImplementedError

    def load(self) -> object:
        """Return the application object (WSGI, or ASGI with ``worker_class = "asgi"``)."""
        raise NotImplementedError

    def reload(self) -> None:
        self.do_load_config()

    def wsgi(self) -> WSGIApp:
        """The application, loaded once (``load()``)."""
        if self.callable is None:
            self.callable = self.load()
        app: WSGIApp = self.callable  # type: ignore[assignment]
        return app

    def reloaded_config(self) -> Config | None:
        """For the master on HUP: ``load_config`` again, frozen (None when it fails:
        logged by the master, which keeps the current settings)."""
        try:
            self.load_default_config()
            self.load_config()
        except (ConfigError, AttributeError) as exc:
            raise ConfigError(str(exc)) from None
        self.frozen = self.cfg.freeze()
        return self.frozen

    def run(self) -> None:
        """Run the master with this application; never returns (exits with its status)."""
        from greenhorn.ipc import titles

        titles.init_title()
        try:
            self.frozen = self.cfg.freeze()
        except ConfigError as exc:
            sys.stderr.write(f"greenhorn: error: {exc}\n")
            raise SystemExit(EXIT_USAGE) from None
        raise SystemExit(serve(self.frozen, self))


def serve(cfg: Config, app: BaseApplication) -> int:
    """Prepare the process and run the master over ``app``; its exit status."""
    from greenhorn.master.arbiter import Arbiter
    from greenhorn.wsgi.app import prepare_environment

    start_cwd = os.getcwd()
    try:
        prepare_environment(cfg)
    except OSError as exc:
        sys.stderr.write(f"greenhorn: error: cannot prepare the environment: {exc}\n")
        return EXIT_USAGE
    if cfg.spew:
        from greenhorn.observe import spew

        spew.install()
    arbiter = Arbiter(
        cfg,
        argv=sys.argv[1:],
        cwd=start_cwd,
        source=app,
        reload_config=app.reloaded_config,
        exec_argv=[sys.executable, *sys.argv],
    )
    return arbiter.run()


class Application(BaseApplication):
    """gunicorn's ``Application``: the settings come from the command line, the
    environment (``GREENHORN_CMD_ARGS``) and the config file, as for the ``greenhorn``
    command; ``init(parser, opts, args)`` may return more settings, and ``load()`` returns
    the application. ``--print-config`` and ``--check-config`` work as on the command
    line."""

    def load_config(self) -> None:
        command_line_settings(self)

    def chdir(self) -> None:
        change_directory(self.cfg)

    def load_config_from_file(self, filename: str) -> dict[str, object]:
        """Read a config file (PATH, ``file:PATH`` or ``python:MODULE``) into ``self.cfg``."""
        return load_config_file(self.cfg, filename)

    def run(self) -> None:
        run_checks(self)
        super().run()


# -- what Application does, also for the classes built like it (wsgiapp, pasterapp) ---------


def command_line_settings(app: BaseApplication) -> None:
    """``app.cfg`` from the command line, ``GREENHORN_CMD_ARGS`` and the config file, then
    what ``app.init(parser, opts, args)`` returns."""
    from greenhorn.config import load_resolved

    resolved = load_resolved(sys.argv[1:], os.environ)
    for message in resolved.warnings:
        warn_stderr(message)
    cfg = resolved.config
    for name in BY_NAME:
        if resolved.sources.get(name) not in (None, "default"):
            app.cfg.set(name, getattr(cfg, name))
    args = [cfg.wsgi_app] if cfg.wsgi_app else []
    try:
        extra = app.init(None, cfg, args)
    except NotImplementedError:
        extra = None
    for name, value in (extra or {}).items():
        app.cfg.set(name.lower(), value)


def change_directory(cfg: Settings) -> None:
    directory = cfg.chdir
    if isinstance(directory, str):
        os.chdir(directory)
        if directory not in sys.path:
            sys.path.insert(0, directory)


def load_config_file(cfg: Settings, location: str) -> dict[str, object]:
    """A config file (PATH, ``file:PATH`` or ``python:MODULE``) into ``cfg``."""
    from greenhorn.config.layers import read_config

    _, values, warnings = read_config(location, os.getcwd())
    for message in warnings:
        warn_stderr(message)
    for name, value in values.items():
        cfg.set(name, value)
    return values


def run_checks(app: BaseApplication) -> None:
    """``--print-config`` and ``--check-config``: load the application, print, exit."""
    cfg = app.cfg
    if not (cfg.print_config or cfg.check_config):
        return
    try:
        app.load()
    except Exception as exc:
        sys.stderr.write(f"greenhorn: error: cannot load the application: {exc}\n")
        raise SystemExit(1) from None
    if cfg.print_config:
        for name in BY_NAME:
            sys.stdout.write(f"{name} = {getattr(cfg, name)!r}\n")
    raise SystemExit(0)
