"""The `greenhorn` command: argv + environment → Config → (checks) → Arbiter(cfg).run().

Why a module of its own: this is the one place that turns errors into exit codes and
messages for a human at a terminal. Everything below it raises; everything here reports:

- a bad setting, an unreadable or failing config file, a missing APP_MODULE:
  one line `greenhorn: error: ...` on stderr, exit 2 (EXIT_USAGE), never a traceback;
- `--print-config`: every effective setting with its source on stdout, exit 0;
- `--check-config`: import the application (after raw_env, chdir and pythonpath are
  applied); exit 0 when it loads, else one line on stderr and exit 1;
- otherwise the arbiter runs and its return value is the exit code. Loading the app at
  run time (exit 3 or 4, as gunicorn: greenhorn.wsgi.app.exit_status) is the arbiter's business.

`greenhorn ctl ...` (talk to a running master, see greenhorn.ctl) is a subcommand only when
`ctl` is the FIRST argument, so an application module named `ctl` still runs as
`greenhorn ctl:app`, `greenhorn -w 2 ctl` or `greenhorn -- ctl`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from greenhorn.config import Config, ConfigError, Resolved, load_resolved, render, warn_stderr
from greenhorn.ipc import titles
from greenhorn.ipc.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from greenhorn.wsgi.app import (
    AppImportError,
    app_label,
    load_configured_app,
    prepare_environment,
)

PROG = "greenhorn"


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    sys.stderr.flush()


def _resolve(argv: Sequence[str], environ: Mapping[str, str]) -> Resolved | int:
    """The resolved config, or the exit code when parsing already finished the run
    (-h, --version: 0; a bad setting: 2)."""
    try:
        return load_resolved(argv, environ)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except SystemExit as exc:  # -h / --version printed and asked to exit
        return exc.code if isinstance(exc.code, int) else EXIT_OK


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the directory was deleted under us
        return "/"


def _known_worker_type(resolved: Resolved) -> bool:
    """Is ``worker_class`` a type the registry has (or a dotted path)? Else one line."""
    from greenhorn.workers.registry import UnknownWorker, resolve

    try:
        resolve(resolved.config.worker_class)
    except UnknownWorker as exc:
        _error(str(resolved.invalid("worker_class", exc)))
        return False
    return True


def _effective(resolved: Resolved) -> dict[str, tuple[str, str]]:
    """What --print-config shows for settings another one changes: the worker type that
    runs when ``threads`` > 1 turns sync into gthread."""
    from greenhorn.workers.registry import canonical, resolve

    cfg = resolved.config
    runs = resolve(cfg.worker_class, cfg.threads)
    if runs == canonical(cfg.worker_class):
        return {}
    return {"worker_class": (repr(runs), f"threads = {cfg.threads} runs {runs}")}


def check_app(cfg: Config) -> int:
    """Import the application the settings name: EXIT_OK, or EXIT_FAILURE with one line."""
    try:
        load_configured_app(cfg)
    except AppImportError as exc:
        _error(f"cannot load application {app_label(cfg)!r}: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run greenhorn with `argv` (default `sys.argv[1:]`); return the process exit code."""
    titles.init_title()  # before anything edits os.environ (see titles.init_title)
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["ctl"]:
        from greenhorn import ctl

        return ctl.main(args[1:])
    resolved = _resolve(args, os.environ)
    if isinstance(resolved, int):
        return resolved
    if not _known_worker_type(resolved):
        return EXIT_USAGE
    for message in resolved.warnings:
        warn_stderr(message)
    cfg = resolved.config

    if cfg.print_config:
        sys.stdout.write(render(resolved, _effective(resolved)))
        sys.stdout.flush()
        return EXIT_OK
    if cfg.wsgi_app is None and cfg.paste is None:
        _error("No application module specified.")
        return EXIT_USAGE
    if cfg.paste is not None and not os.path.isfile(cfg.paste.partition("#")[0]):
        _error(str(resolved.invalid("paste", "no such file")))  # gunicorn: "... not found"
        return EXIT_USAGE

    start_cwd = _cwd()  # before --chdir: where a USR2 re-exec must start from
    try:
        prepare_environment(cfg)
    except OSError as exc:  # chdir target vanished since it was validated
        _error(f"cannot prepare the environment: {exc}")
        return EXIT_USAGE
    if cfg.check_config:
        return check_app(cfg)

    from greenhorn.master.arbiter import Arbiter  # imported late: the CLI must not need it to check

    arbiter = Arbiter(cfg, argv=args, cwd=start_cwd)
    if cfg.spew:
        from greenhorn.observe import spew

        spew.install()
    return arbiter.run()
