"""The settings table and what is generated from it: Config, the parser, the docs page."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from greenhorn.config import SETTINGS, Config, docgen
from greenhorn.config.layers import build_parser
from greenhorn.config.settings import BY_NAME, SECTIONS

# gunicorn 27's flags for the settings greenhorn supports, and the setting each one sets.
GUNICORN_FLAGS = {
    "-c": "config", "--config": "config", "-b": "bind", "--bind": "bind",
    "--backlog": "backlog", "-w": "workers", "--workers": "workers", "-k": "worker_class",
    "--worker-class": "worker_class", "--threads": "threads",
    "--worker-connections": "worker_connections", "--max-requests": "max_requests",
    "--max-requests-jitter": "max_requests_jitter", "-t": "timeout", "--timeout": "timeout",
    "--graceful-timeout": "graceful_timeout", "--keep-alive": "keepalive",
    "--limit-request-line": "limit_request_line",
    "--limit-request-fields": "limit_request_fields",
    "--limit-request-field_size": "limit_request_field_size", "--reload": "reload",
    "--reload-engine": "reload_engine", "--reload-extra-file": "reload_extra_files",
    "--spew": "spew", "--check-config": "check_config", "--print-config": "print_config",
    "--preload": "preload_app", "--no-sendfile": "sendfile", "--reuse-port": "reuse_port",
    "--chdir": "chdir", "-D": "daemon", "--daemon": "daemon", "-e": "raw_env",
    "--env": "raw_env", "-p": "pidfile", "--pid": "pidfile",
    "--worker-tmp-dir": "worker_tmp_dir", "-u": "user", "--user": "user", "-g": "group",
    "--group": "group", "-m": "umask", "--umask": "umask", "--initgroups": "initgroups",
    "--forwarded-allow-ips": "forwarded_allow_ips", "--access-logfile": "accesslog",
    "--disable-redirect-access-to-syslog": "disable_redirect_access_to_syslog",
    "--access-logformat": "access_log_format", "--error-logfile": "errorlog",
    "--log-file": "errorlog", "--log-level": "loglevel", "--capture-output": "capture_output",
    "--logger-class": "logger_class", "--log-config": "logconfig",
    "--log-config-json": "logconfig_json", "--log-syslog-to": "syslog_addr",
    "--log-syslog": "syslog", "--log-syslog-prefix": "syslog_prefix",
    "--log-syslog-facility": "syslog_facility", "-R": "enable_stdio_inheritance",
    "--enable-stdio-inheritance": "enable_stdio_inheritance", "--statsd-host": "statsd_host",
    "--dogstatsd-tags": "dogstatsd_tags", "--statsd-prefix": "statsd_prefix",
    "--enable-backlog-metric": "enable_backlog_metric", "-n": "proc_name",
    "--name": "proc_name", "--pythonpath": "pythonpath", "--proxy-protocol": "proxy_protocol",
    "--proxy-allow-from": "proxy_allow_ips", "--keyfile": "keyfile", "--certfile": "certfile",
    "--ssl-version": "ssl_version", "--cert-reqs": "cert_reqs", "--ca-certs": "ca_certs",
    "--suppress-ragged-eofs": "suppress_ragged_eofs",
    "--do-handshake-on-connect": "do_handshake_on_connect", "--ciphers": "ciphers",
    "--permit-obsolete-folding": "permit_obsolete_folding",
    "--strip-header-spaces": "strip_header_spaces",
    "--permit-unconventional-http-method": "permit_unconventional_http_method",
    "--permit-unconventional-http-version": "permit_unconventional_http_version",
    "--casefold-http-method": "casefold_http_method",
    "--forwarder-headers": "forwarder_headers", "--header-map": "header_map",
    "--control-socket": "control_socket", "--control-socket-mode": "control_socket_mode",
    "--no-control-socket": "control_socket_disable",
}  # fmt: skip

GREENHORN_ONLY = {
    "header_timeout": "--header-timeout", "body_min_rate": "--body-min-rate",
    "shutdown_delay": "--shutdown-delay", "access_log_json": "--access-log-json",
    "worker_memory": "--worker-memory", "workers_min": "--workers-min",
    "workers_max": "--workers-max", "max_worker_memory": "--max-worker-memory",
    "max_worker_memory_hard": "--max-worker-memory-hard",
    "max_worker_lifetime": "--max-worker-lifetime", "metrics_bind": "--metrics-bind",
    "control_socket": "--control-socket", "body_buffer_size": "--body-buffer-size",
    "limit_request_body": "--limit-request-body",
    "body_spool_threshold": "--body-spool-threshold",
}  # fmt: skip

CONFIG_FILE_ONLY = {
    "wsgi_app", "tmp_upload_dir", "secure_scheme_headers", "logconfig_dict",
    "default_proc_name",
}  # fmt: skip

HOOKS = {
    "on_starting": 1, "on_reload": 1, "when_ready": 1, "pre_fork": 2, "post_fork": 2,
    "post_worker_init": 1, "worker_int": 1, "worker_abort": 1, "pre_exec": 1,
    "pre_request": 2, "post_request": 4, "child_exit": 2, "worker_exit": 2,
    "nworkers_changed": 3, "on_exit": 1, "ssl_context": 2,
}  # fmt: skip


# --- the table ----------------------------------------------------------------------------


def test_names_are_unique_and_sections_known():
    assert len(BY_NAME) == len(SETTINGS)
    assert {s.section for s in SETTINGS} == set(SECTIONS)


def test_every_row_has_a_one_paragraph_help():
    for s in SETTINGS:
        assert s.help.endswith((".", ")")) and "\n" not in s.help, s.name
        assert s.short.endswith((".", ")")) and len(s.short) < 200, s.name


@pytest.mark.parametrize(
    ("text", "first"),
    [("One. Two.", "One."), ("Like `listen ... deferred`, it saves. More.", "Like `listen ... deferred`, it saves."),
     ("A `x. y` b. c", "A `x. y` b."), ("A (see b. c) d. e", "A (see b. c) d."),
     ("Wait ... then. Go.", "Wait ... then."), ("A, e.g. b. C", "A, e.g. b."), ("No stop", "No stop")],
)  # fmt: skip
def test_first_sentence_is_whole(text, first):
    from greenhorn.config.setting import first_sentence

    assert first_sentence(text) == first


def test_flags_are_unique():
    flags = [f for s in SETTINGS for f in s.flags]
    assert len(flags) == len(set(flags))


def test_valued_options_have_a_metavar():
    for s in SETTINGS:
        if s.flags and s.action in ("store", "append"):
            assert s.metavar, s.name


def test_greenhorn_only_settings_exist_with_their_flags():
    for name, flag in GREENHORN_ONLY.items():
        assert flag in BY_NAME[name].flags


def test_config_file_only_settings_have_no_flags():
    for name in CONFIG_FILE_ONLY | set(HOOKS):
        assert BY_NAME[name].flags == (), name


def test_server_hooks_have_gunicorn_names_and_arity():
    from greenhorn.config import hooks

    assert set(hooks.HOOK_NAMES) == set(HOOKS)
    for name, nargs in HOOKS.items():
        assert hooks.arity(name) == nargs and BY_NAME[name].is_hook


def test_not_reloadable_settings():
    fixed = {s.name for s in SETTINGS if not s.reloadable}
    assert {"config", "daemon", "user", "group", "umask", "chdir", "pythonpath"} <= fixed
    assert not fixed & {"workers", "bind", "timeout", "loglevel", "wsgi_app"}


# --- Config -----------------------------------------------------------------------------


def test_config_fields_are_the_table_in_order():
    assert [f.name for f in dataclasses.fields(Config)] == [s.name for s in SETTINGS]


def test_config_is_frozen_slotted_and_replaceable():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 3  # type: ignore[misc]
    assert not hasattr(cfg, "__dict__")
    changed = dataclasses.replace(cfg, workers=4)
    assert changed.workers == 4 and cfg.workers == 1


def test_config_defaults_are_gunicorns():
    cfg = Config()
    assert cfg.bind == ["127.0.0.1:8000"] and cfg.workers == 1 and cfg.worker_class == "sync"
    assert (cfg.timeout, cfg.graceful_timeout, cfg.keepalive, cfg.backlog) == (30, 30, 2, 2048)
    # except limit_request_line: 8190 (gunicorn 4094), as RFC 9112 §3 recommends (issue 20)
    assert (cfg.limit_request_line, cfg.limit_request_fields) == (8190, 100)
    assert cfg.limit_request_field_size == 8190
    assert cfg.access_log_format == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    assert cfg.errorlog == "-" and cfg.accesslog is None and cfg.loglevel == "info"
    assert cfg.forwarded_allow_ips == ["127.0.0.1", "::1"]
    assert cfg.secure_scheme_headers == {
        "X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on",
    }  # fmt: skip
    assert cfg.header_map == "drop" and cfg.proxy_protocol == "off" and cfg.sendfile is True


def test_config_mutable_defaults_are_not_shared():
    a, b = Config(), Config()
    a.bind.append("x")
    assert b.bind == ["127.0.0.1:8000"]


def test_config_reads_no_environment(monkeypatch):
    for var, value in {
        "PORT": "1234", "WEB_CONCURRENCY": "9", "FORWARDED_ALLOW_IPS": "*", "SENDFILE": "0",
        "GREENHORN_CMD_ARGS": "-w 3", "GUNICORN_CMD_ARGS": "-w 3",
    }.items():  # fmt: skip
        monkeypatch.setenv(var, value)
    cfg = Config()
    assert (cfg.bind, cfg.workers, cfg.forwarded_allow_ips, cfg.sendfile) == (
        ["127.0.0.1:8000"], 1, ["127.0.0.1", "::1"], True,
    )  # fmt: skip


def _conforms(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items()
        )
    if origin is collections.abc.Callable:
        return callable(value)
    if hint in (int, float):
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (hint is float or isinstance(value, int))
        )
    return isinstance(value, hint)


def test_defaults_match_the_declared_types_and_converters_are_idempotent():
    hints = typing.get_type_hints(Config)
    for s in SETTINGS:
        default = s.make_default()
        assert _conforms(default, hints[s.name]), (s.name, default, hints[s.name])
        assert s.convert(default) == default, s.name


@pytest.mark.parametrize(
    ("name", "raw"),
    [("workers", "auto"), ("workers", "3"), ("loglevel", "DEBUG"), ("proxy_protocol", "true"),
     ("umask", "022"), ("metrics_bind", ":9100"), ("pythonpath", "a,b"),
     ("forwarder_headers", "remote_user"), ("cert_reqs", "CERT_REQUIRED")],
)  # fmt: skip
def test_converted_values_match_the_declared_types(name, raw):
    value = BY_NAME[name].convert(raw)
    assert _conforms(value, typing.get_type_hints(Config)[name])
    assert BY_NAME[name].convert(value) == value


# --- the parser -------------------------------------------------------------------------


def test_parser_accepts_every_gunicorn_flag():
    actions = build_parser()._option_string_actions
    for flag, name in GUNICORN_FLAGS.items():
        assert flag in actions, flag
        assert actions[flag].dest == name, flag


def test_parser_leaves_absent_options_absent():
    assert vars(build_parser().parse_args([])) == {}


def test_help_groups_options_by_section():
    text = build_parser().format_help()
    assert text.startswith("usage: greenhorn [OPTIONS] [APP_MODULE]")
    positions = [text.index(f"\n{section}:\n") for section in SECTIONS if section != "Server Hooks"]
    assert positions == sorted(positions)
    workers_section = text[text.index("\nWorker Processes:\n") : text.index("\nSecurity:\n")]
    assert "-w INT, --workers INT" in workers_section and "--threads INT" in workers_section
    assert "Server Hooks:" not in text


@pytest.mark.parametrize("columns", [60, 100])
def test_help_wraps_at_the_terminal_width(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    lines = build_parser().format_help().splitlines()
    # (argparse never breaks an option's own spelling: "  --a-long-flag INT, --another INT")
    wrapped = [line for line in lines if not (line.startswith("  -") and "  " not in line[2:])]
    assert max(map(len, wrapped)) <= columns - 2  # argparse keeps a 2-column margin
    assert max(map(len, wrapped)) > columns - 20  # and uses the width it has


# --- the docs page ------------------------------------------------------------------------


def test_committed_settings_page_is_current():
    page = docgen.DEFAULT_OUTPUT
    assert page.exists(), "run: python -m greenhorn.config.docgen"
    assert page.read_text(encoding="utf-8") == docgen.render(), (
        "docs/reference/settings.md is stale: run python -m greenhorn.config.docgen"
    )


def test_settings_page_has_banner_and_every_setting():
    text = docgen.render()
    assert text.startswith("<!-- Generated file, do not edit")
    for s in SETTINGS:
        assert f"### `{s.name}`" in text


def test_docgen_check_mode(tmp_path: Path):
    out = tmp_path / "settings.md"
    assert docgen.main(["--check", "-o", str(out)]) == 1
    assert docgen.main(["-o", str(out)]) == 0
    assert docgen.main(["--check", "-o", str(out)]) == 0
    out.write_text(out.read_text() + "edited\n")
    assert docgen.main(["--check", "-o", str(out)]) == 1
