"""Where setting values come from, and in which order they win.

Why a module of its own: the precedence rules are the part of configuration users argue
about, so they live in one place, as data flowing through pure functions:

    defaults  <  environment defaults (PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS, SENDFILE)
              <  config file (-c FILE, else ./greenhorn.conf.py, else ./gunicorn.conf.py)
              <  GREENHORN_CMD_ARGS (or GUNICORN_CMD_ARGS when that is unset)
              <  command line

Each source becomes a `Layer` of raw values; `merge` converts and stacks them and returns
the effective values together with the name of the layer each one came from, so
`--print-config` can say why a value is what it is. "Not given" stays distinct from "given
the default value": argparse runs with `default=SUPPRESS`, so an absent flag is an absent key.

Rules:
- `merge` reads no files and no environment; only `resolve` (and the config-file readers it
  calls) touches the outside world.
- Every error is a one-line `ConfigError` that names the setting the way the user wrote it:
  `argument -w/--workers`, `config file 'x.py': setting workers`, `environment variable PORT`.
- Config-file names that are not settings produce a warning with the closest setting name,
  never silence (gunicorn ignores them, so `worker = 4` goes unnoticed there). Names
  starting with `_`, modules, imported names and ALL_CAPS constants are skipped.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import inspect
import os
import shlex
import sys
import traceback
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from greenhorn import __version__
from greenhorn.config.converters import check_address, to_octal, to_opt_str
from greenhorn.config.importer import one_line
from greenhorn.config.setting import ConfigError, Setting, Warned
from greenhorn.config.settings import BY_NAME, SECTIONS, SETTINGS

PROG = "greenhorn"
USAGE = "%(prog)s [OPTIONS] [APP_MODULE]"
CMD_ARGS_VARS = ("GREENHORN_CMD_ARGS", "GUNICORN_CMD_ARGS")
DEFAULT_CONFIG_FILES = ("greenhorn.conf.py", "gunicorn.conf.py")
CONFIG_MODULE_NAME = "__config__"

SOURCE_DEFAULT = "default"
SOURCE_CLI = "command line"

LayerKind = Literal["default", "environ", "file", "args"]


@dataclass(frozen=True, slots=True)
class Layer:
    """Raw values from one source. `source` is the provenance label shown by
    --print-config; `kind` and `where` decide how errors name a setting."""

    source: str
    values: Mapping[str, Any]
    kind: LayerKind = "args"
    where: str = ""  # the file, environment variable or CMD_ARGS variable


@dataclass(frozen=True, slots=True)
class Merged:
    """The effective value of every setting, where each came from, and warnings."""

    values: dict[str, Any]
    sources: dict[str, str]
    warnings: tuple[str, ...] = field(default=())
    # how an error names each setting: "argument -w/--workers", "config file 'x': setting
    # workers" (where the effective value came from)
    subjects: dict[str, str] = field(default_factory=dict)


# --- the command-line parser, generated from the table -------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise ConfigError instead of printing usage and exiting: the
    caller decides how to report them (one line), and GREENHORN_CMD_ARGS errors can say
    where they came from."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout at the terminal's width, measured here: argparse's own
    measurement imports ``shutil`` (and with it the bz2 and lzma libraries) for every parser
    built, memory the master would share with every worker."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        if kwargs.get("width") is None:
            kwargs["width"] = _terminal_columns() - 2  # argparse's margin
        super().__init__(prog, **kwargs)


def _terminal_columns() -> int:
    """$COLUMNS, else the width of the terminal on stdout, else 80 (as shutil decides)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def default_text(setting: Setting) -> str:
    """How the docs page shows a setting's default: as a config file spells it."""
    if setting.default_doc is not None:
        return setting.default_doc.replace("`", "")
    return repr(setting.default)


def typed_default(setting: Setting) -> str | None:
    """How `-h` shows a setting's default: as a user types it after the flag, or None when
    there is nothing to type (a flag without a value, an unset or computed default, which
    the help text describes)."""
    if setting.help_default is not None:
        return setting.help_default
    value = setting.default
    if setting.action in ("store_true", "store_const") or setting.default_factory is not None:
        return None
    if value is None or value == "" or value == []:
        return None
    if setting.convert is to_octal and isinstance(value, int):
        return f"0o{value:o}" if value else "0"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def help_line(setting: Setting) -> str:
    """A flag's `-h` entry: the help's first sentence (or the flag's own line), then the
    default in brackets."""
    text = setting.flag_help or setting.short
    default = typed_default(setting)
    return f"{text} [{default}]" if default is not None else text


def build_parser() -> argparse.ArgumentParser:
    """The `greenhorn [OPTIONS] [APP_MODULE]` parser: one argument group per section."""
    parser = _Parser(
        prog=PROG,
        usage=USAGE,
        formatter_class=_Formatter,
        description="greenhorn: a pre-fork WSGI HTTP server, a drop-in for gunicorn.",
        argument_default=argparse.SUPPRESS,
        epilog="Every option can also be set in a config file (-c) or in GREENHORN_CMD_ARGS.",
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="help", help="Show this help and exit.")
    parser.add_argument(
        "-v",
        "--version",
        action="version",
        version=f"{PROG} (version {__version__})",
        help="Show the version and exit.",
    )
    parser.add_argument(
        "wsgi_app",
        nargs="?",
        metavar="APP_MODULE",
        help="the WSGI application: MODULE:ATTRIBUTE, MODULE or MODULE:factory(ARGS)",
    )
    groups = {
        section: parser.add_argument_group(section)
        for section in SECTIONS
        if any(s.flags for s in SETTINGS if s.section == section)
    }
    for setting in SETTINGS:
        if not setting.flags:
            continue
        kwargs: dict[str, Any] = {
            "dest": setting.name,
            "action": setting.action,
            "default": argparse.SUPPRESS,
            "help": help_line(setting).replace("%", "%%"),
        }
        if setting.action in ("store", "append"):
            kwargs["metavar"] = setting.metavar
        if setting.nargs is not None:
            kwargs["nargs"] = setting.nargs
        if setting.action == "store_const" or setting.nargs == "?":
            kwargs["const"] = setting.const
        groups[setting.section].add_argument(*setting.flags, **kwargs)
    return parser


def parse_args(parser: argparse.ArgumentParser, args: Sequence[str]) -> dict[str, Any]:
    """The options present in `args`, by setting name (absent options are absent keys)."""
    return dict(vars(parser.parse_args(list(args))))


# --- merging --------------------------------------------------------------------------------


def _subject(setting: Setting, layer: Layer) -> str:
    if layer.kind == "args":
        prefix = f"{layer.where}: " if layer.where else ""
        if not setting.flags:
            return f"{prefix}argument APP_MODULE"
        return f"{prefix}argument {'/'.join(setting.flags)}"
    if layer.kind == "environ":
        return f"environment variable {layer.where}"
    if layer.kind == "file":
        return f"config file {layer.where!r}: setting {setting.name}"
    return f"setting {setting.name}"


def _show(raw: object) -> str:
    if callable(raw):
        return f"<{getattr(raw, '__qualname__', type(raw).__name__)}>"
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def check_combinations(values: Mapping[str, Any]) -> None:
    """Checks that involve more than one setting; raise ConfigError naming them."""
    lo, hi = values["workers_min"], values["workers_max"]
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"workers_min ({lo}) is greater than workers_max ({hi})")
    soft, hard = values["max_worker_memory"], values["max_worker_memory_hard"]
    if soft is not None and hard is not None and hard < soft:
        raise ConfigError(
            f"max_worker_memory_hard ({hard} MB) is below max_worker_memory ({soft} MB)"
        )
    if values["keyfile"] and not values["certfile"]:
        raise ConfigError("keyfile is set but certfile is not")


def merge(layers: Sequence[Layer]) -> Merged:
    """Stack `layers` (lowest precedence first) over the defaults, converting every raw
    value with its setting's converter. Pure: no files, no environment.

    As in gunicorn, `None` for a setting that has no None value (`user = None`,
    `sendfile = None`, `errorlog = None` in a config file) leaves it as the layers below
    set it: the default, or what the environment gave. A converter's `Warned` value is
    kept and its message becomes one warning naming the setting."""
    values = {s.name: s.make_default() for s in SETTINGS}
    sources = dict.fromkeys(values, SOURCE_DEFAULT)
    subjects = {name: f"setting {name}" for name in values}
    warnings: list[str] = []
    for layer in layers:
        for name, raw in layer.values.items():
            setting = BY_NAME[name]
            subject = _subject(setting, layer)
            try:
                value = setting.convert(raw)
            except (TypeError, ValueError) as exc:
                if raw is None:
                    continue
                if isinstance(raw, list) and layer.kind == "args":
                    raise ConfigError(f"{subject}: {exc}") from None
                raise ConfigError(f"{subject}: invalid value {_show(raw)}: {exc}") from None
            if isinstance(value, Warned):
                warnings.append(f"{subject}: {_show(raw)}: {value.message}")
                value = value.value
            values[name] = value
            sources[name] = layer.source
            subjects[name] = subject
    check_combinations(values)
    # gunicorn names the processes after the application when no name was chosen: the
    # --paste file (which wins over APP_MODULE), else APP_MODULE.
    if sources["default_proc_name"] == SOURCE_DEFAULT:
        if values["paste"]:
            values["default_proc_name"] = os.path.abspath(str(values["paste"]).partition("#")[0])
            sources["default_proc_name"] = sources["paste"]
        elif values["wsgi_app"]:
            values["default_proc_name"] = values["wsgi_app"]
            sources["default_proc_name"] = sources["wsgi_app"]
    return Merged(values, sources, tuple(warnings), subjects)


# --- the environment ------------------------------------------------------------------------


def environ_layers(environ: Mapping[str, str]) -> list[Layer]:
    """Defaults that gunicorn takes from environment variables, read now (never at import).
    An empty variable counts as unset."""
    layers: list[Layer] = []
    port = environ.get("PORT", "").strip()
    if port:
        try:
            check_address(f"0.0.0.0:{port}")
        except ValueError:
            raise ConfigError(
                f"environment variable PORT: invalid value {port!r}: expected a port number"
            )
        layers.append(Layer("env PORT", {"bind": [f"0.0.0.0:{port}"]}, "environ", "PORT"))
    for var, name in (
        ("WEB_CONCURRENCY", "workers"),
        ("FORWARDED_ALLOW_IPS", "forwarded_allow_ips"),
    ):
        text = environ.get(var, "").strip()
        if text:
            layers.append(Layer(f"env {var}", {name: text}, "environ", var))
    sendfile = environ.get("SENDFILE", "").strip().lower()
    if sendfile:
        enabled = sendfile in ("y", "yes", "1", "true")
        layers.append(Layer("env SENDFILE", {"sendfile": enabled}, "environ", "SENDFILE"))
    return layers


def cmd_args_from_env(environ: Mapping[str, str]) -> tuple[str, list[str]] | None:
    """`(variable, args)` from GREENHORN_CMD_ARGS, else GUNICORN_CMD_ARGS, split like a
    shell command line; None when neither is set."""
    for var in CMD_ARGS_VARS:
        if var in environ:
            try:
                return var, shlex.split(environ[var])
            except ValueError as exc:
                raise ConfigError(f"{var}: {exc}")
    return None


# --- config files ---------------------------------------------------------------------------


def find_default_config(cwd: str) -> str | None:
    """`./greenhorn.conf.py` if it exists, else `./gunicorn.conf.py`, else None."""
    for name in DEFAULT_CONFIG_FILES:
        path = os.path.join(cwd, name)
        if os.path.isfile(path):
            return path
    return None


def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
    return names


def _exec_file(path: str, shown: str, cwd: str) -> tuple[dict[str, Any], set[str]]:
    try:
        source = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {shown!r}: {exc.strerror or exc}")
    try:
        tree = ast.parse(source, filename=path)
        code = compile(tree, path, "exec")
    except (SyntaxError, ValueError) as exc:
        line = f", line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        msg = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ConfigError(f"config file {shown!r}{line}: {msg}")
    # As in gunicorn: the file runs as the module `__config__`, registered in sys.modules, so
    # a worker or logger class defined in it is importable by name ("__config__.MyWorker"),
    # and with the start directory on sys.path, so it can import modules that sit there.
    module = types.ModuleType(CONFIG_MODULE_NAME)
    module.__file__ = path
    namespace: dict[str, Any] = module.__dict__
    namespace["__builtins__"] = builtins
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    previous = sys.modules.get(CONFIG_MODULE_NAME)
    sys.modules[CONFIG_MODULE_NAME] = module
    try:
        exec(code, namespace)
    except (Exception, SystemExit) as exc:
        if previous is None:
            sys.modules.pop(CONFIG_MODULE_NAME, None)
        else:
            sys.modules[CONFIG_MODULE_NAME] = previous
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        where = f" at line {lines[-1]}" if lines else ""
        raise ConfigError(f"config file {shown!r} raised {one_line(exc)}{where}")
    return namespace, _imported_names(tree)


def _import_module(name: str, cwd: str) -> tuple[dict[str, Any], set[str]]:
    if cwd not in sys.path:  # as gunicorn: the start directory is importable
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(name)
    except (Exception, SystemExit) as exc:
        raise ConfigError(f"cannot import config module {name!r}: {one_line(exc)}")
    return dict(vars(module)), set()


def split_namespace(
    namespace: Mapping[str, Any], imported: set[str], label: str, own_module: str
) -> tuple[dict[str, Any], list[str]]:
    """Pick the settings out of an executed config file's namespace; warn about the rest."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in namespace.items():
        if key.startswith("_") or key in imported or isinstance(value, types.ModuleType):
            continue
        if key in BY_NAME:
            if key == "config":
                warnings.append(f"config file {label!r}: 'config' cannot be set here; ignored")
            else:
                values[key] = value
            continue
        if inspect.isclass(value):
            continue  # a class is a setting's value (worker_class = MyWorker), never a setting
        if inspect.isfunction(value) and getattr(value, "__module__", own_module) != own_module:
            continue
        if key.isupper() and key.lower() not in BY_NAME:
            continue
        import difflib  # only for the error message

        close = difflib.get_close_matches(key.lower(), list(BY_NAME), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"config file {label!r}: unknown setting {key!r} ignored{hint}")
    return values, warnings


def read_config(location: str, cwd: str) -> tuple[str, dict[str, Any], list[str]]:
    """Execute the config file (PATH, `file:PATH` or `python:MODULE`) and return
    `(label, settings found, warnings)`."""
    if location.startswith("python:"):
        module = location.removeprefix("python:").strip()
        namespace, imported = _import_module(module, cwd)
        return location, *split_namespace(namespace, imported, location, module)
    shown = location.removeprefix("file:")
    namespace, imported = _exec_file(os.path.join(cwd, shown), shown, cwd)
    return shown, *split_namespace(namespace, imported, shown, CONFIG_MODULE_NAME)


# --- everything together --------------------------------------------------------------------


def resolve(argv: Sequence[str], environ: Mapping[str, str], cwd: str | None = None) -> Merged:
    """Parse `argv` (without the program name), GREENHORN_CMD_ARGS and the config file, and
    merge them over the defaults. `cwd` is where relative config paths are looked up."""
    here = os.getcwd() if cwd is None else cwd
    parser = build_parser()
    cli = parse_args(parser, argv)
    env_var, env_values = "", {}
    cmd_args = cmd_args_from_env(environ)
    if cmd_args is not None:
        env_var, args = cmd_args
        try:
            env_values = parse_args(parser, args)
        except ConfigError as exc:
            raise ConfigError(f"{env_var}: {exc}")
    layers = environ_layers(environ)
    location = to_opt_str(cli.get("config", env_values.get("config")))
    if location is None:
        location = find_default_config(here)
        if location is not None:
            layers.append(Layer(SOURCE_DEFAULT, {"config": location}, "default"))
    warnings: list[str] = []
    if location is not None:
        label, file_values, warnings = read_config(location, here)
        layers.append(Layer(f"config file {label}", file_values, "file", label))
    if env_values:
        layers.append(Layer(f"env {env_var}", env_values, "args", env_var))
    layers.append(Layer(SOURCE_CLI, cli, "args"))
    merged = merge(layers)
    _paste_logging(merged)
    return Merged(merged.values, merged.sources, (*warnings, *merged.warnings), merged.subjects)


def _paste_logging(merged: Merged) -> None:
    """As gunicorn: a --paste file with a ``[loggers]`` section is also the logconfig,
    unless a logging configuration was given."""
    values, sources = merged.values, merged.sources
    paste = values["paste"]
    if not paste or any(sources[n] != SOURCE_DEFAULT for n in LOGGING_CONFIGS):
        return
    import configparser

    path = os.path.abspath(paste.partition("#")[0])
    parser = configparser.ConfigParser()
    try:
        parser.read([path])
    except configparser.Error:
        return  # not an ini file greenhorn can read: PasteDeploy will say so when loading
    if parser.has_section("loggers"):
        values["logconfig"] = path
        sources["logconfig"] = f"{sources['paste']} (its [loggers])"


LOGGING_CONFIGS = ("logconfig", "logconfig_dict", "logconfig_json")
