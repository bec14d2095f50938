"""greenhorn.config.layers and load(): precedence, provenance, config files, environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from greenhorn.config import Config, ConfigError, load, load_resolved
from greenhorn.config.layers import Layer, merge


def resolve(tmp_path: Path, argv=(), environ=None, files=None):
    """load_resolved with config files written into tmp_path (used as the cwd)."""
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    return load_resolved(list(argv), environ or {}, cwd=str(tmp_path))


def config_error(tmp_path: Path, argv=(), environ=None, files=None) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(tmp_path, argv, environ, files)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- merge: the pure part -----------------------------------------------------------------


def test_merge_without_layers_is_all_defaults():
    merged = merge([])
    assert Config(**merged.values) == Config()
    assert set(merged.sources.values()) == {"default"}


def test_merge_later_layers_win_and_record_their_source():
    merged = merge(
        [
            Layer("first", {"workers": "2", "timeout": "5"}),
            Layer("second", {"workers": 3}, kind="file", where="x.py"),
        ]
    )
    assert merged.values["workers"] == 3 and merged.sources["workers"] == "second"
    assert merged.values["timeout"] == 5 and merged.sources["timeout"] == "first"
    assert merged.sources["backlog"] == "default"


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (Layer("command line", {"workers": "abc"}), "argument -w/--workers: invalid value 'abc'"),
        (
            Layer("env", {"workers": "abc"}, "args", "GREENHORN_CMD_ARGS"),
            "GREENHORN_CMD_ARGS: argument -w/--workers: invalid value 'abc'",
        ),
        (
            Layer("config file g.py", {"workers": "abc"}, "file", "g.py"),
            "config file 'g.py': setting workers: invalid value 'abc'",
        ),
        (
            Layer("env WEB_CONCURRENCY", {"workers": "abc"}, "environ", "WEB_CONCURRENCY"),
            "environment variable WEB_CONCURRENCY: invalid value 'abc'",
        ),
    ],
)
def test_merge_errors_name_the_setting_as_the_user_wrote_it(layer, expected):
    with pytest.raises(ConfigError) as info:
        merge([layer])
    assert str(info.value).startswith(expected)


def test_merge_checks_combinations():
    with pytest.raises(ConfigError, match=r"workers_min .* workers_max"):
        merge([Layer("cli", {"workers_min": "4", "workers_max": "2"})])
    with pytest.raises(ConfigError, match="max_worker_memory_hard"):
        merge([Layer("cli", {"max_worker_memory": "512", "max_worker_memory_hard": "256"})])
    with pytest.raises(ConfigError, match="keyfile is set but certfile is not"):
        merge([Layer("cli", {"keyfile": "k.pem"})])


def test_default_proc_name_follows_the_application():
    merged = merge([Layer("command line", {"wsgi_app": "mysite.wsgi:application"})])
    assert merged.values["default_proc_name"] == "mysite.wsgi:application"
    named = merge([Layer("f", {"default_proc_name": "web"}), Layer("c", {"wsgi_app": "m:app"})])
    assert named.values["default_proc_name"] == "web"


# --- precedence end to end --------------------------------------------------------------


def test_defaults_file_env_args_and_command_line_stack_in_order(tmp_path):
    resolved = resolve(
        tmp_path,
        argv=["-w", "4", "app:app"],
        environ={"GREENHORN_CMD_ARGS": "-w 3 --timeout 7", "WEB_CONCURRENCY": "9"},
        files={"greenhorn.conf.py": "workers = 2\ntimeout = 6\nkeepalive = 5\n"},
    )
    cfg, src = resolved.config, resolved.sources
    assert (cfg.workers, src["workers"]) == (4, "command line")
    assert (cfg.timeout, src["timeout"]) == (7, "env GREENHORN_CMD_ARGS")
    assert cfg.keepalive == 5 and src["keepalive"].startswith("config file")
    assert (cfg.backlog, src["backlog"]) == (2048, "default")
    assert cfg.wsgi_app == "app:app"


def test_environment_defaults_lose_to_the_config_file(tmp_path):
    resolved = resolve(
        tmp_path,
        environ={"WEB_CONCURRENCY": "9", "PORT": "5000"},
        files={"greenhorn.conf.py": "workers = 2\n"},
    )
    assert resolved.config.workers == 2
    assert resolved.config.bind == ["0.0.0.0:5000"]
    assert resolved.sources["bind"] == "env PORT"


def test_gunicorn_cmd_args_is_the_fallback(tmp_path):
    only_gunicorn = resolve(tmp_path, environ={"GUNICORN_CMD_ARGS": "--threads 4"})
    assert only_gunicorn.config.threads == 4
    assert only_gunicorn.sources["threads"] == "env GUNICORN_CMD_ARGS"
    both = resolve(
        tmp_path, environ={"GUNICORN_CMD_ARGS": "--threads 4", "GREENHORN_CMD_ARGS": "-w 2"}
    )
    assert both.config.threads == 1 and both.config.workers == 2
    empty = resolve(
        tmp_path, environ={"GUNICORN_CMD_ARGS": "--threads 4", "GREENHORN_CMD_ARGS": ""}
    )
    assert empty.config.threads == 1


def test_cmd_args_are_split_like_a_shell(tmp_path):
    resolved = resolve(
        tmp_path, environ={"GREENHORN_CMD_ARGS": "--access-logformat '%(h)s \"%(r)s\"' -e 'A=b c'"}
    )
    assert resolved.config.access_log_format == '%(h)s "%(r)s"'
    assert resolved.config.raw_env == ["A=b c"]


def test_cmd_args_errors_say_where_they_came_from(tmp_path):
    assert config_error(tmp_path, environ={"GREENHORN_CMD_ARGS": "--bogus"}).startswith(
        "GREENHORN_CMD_ARGS: unrecognized arguments: --bogus"
    )
    assert "No closing quotation" in config_error(
        tmp_path, environ={"GUNICORN_CMD_ARGS": "-n 'open"}
    )


def test_cmd_args_may_name_the_config_file(tmp_path):
    (tmp_path / "other.py").write_text("threads = 8\n")
    resolved = resolve(tmp_path, environ={"GREENHORN_CMD_ARGS": "-c other.py"})
    assert resolved.config.threads == 8


# --- environment variables ----------------------------------------------------------------


def test_port_sets_the_default_bind_and_the_command_line_wins(tmp_path):
    assert resolve(tmp_path, environ={"PORT": "8080"}).config.bind == ["0.0.0.0:8080"]
    given = resolve(tmp_path, ["-b", "127.0.0.1:1"], environ={"PORT": "8080"})
    assert given.config.bind == ["127.0.0.1:1"]
    assert resolve(tmp_path, environ={"PORT": ""}).config.bind == ["127.0.0.1:8000"]
    assert "environment variable PORT" in config_error(tmp_path, environ={"PORT": "http"})


def test_web_concurrency_and_forwarded_allow_ips(tmp_path):
    resolved = resolve(
        tmp_path, environ={"WEB_CONCURRENCY": "auto", "FORWARDED_ALLOW_IPS": "10.0.0.0/8, *"}
    )
    assert resolved.config.workers == "auto"
    assert resolved.config.forwarded_allow_ips == ["10.0.0.0/8", "*"]
    assert resolved.sources["forwarded_allow_ips"] == "env FORWARDED_ALLOW_IPS"
    message = config_error(tmp_path, environ={"WEB_CONCURRENCY": "lots"})
    assert message.startswith("environment variable WEB_CONCURRENCY: invalid value 'lots'")


def test_sendfile_env_and_no_sendfile(tmp_path):
    assert resolve(tmp_path).config.sendfile is True
    assert resolve(tmp_path, environ={"SENDFILE": "0"}).config.sendfile is False
    assert resolve(tmp_path, environ={"SENDFILE": "yes"}).config.sendfile is True
    cli = resolve(tmp_path, ["--no-sendfile"], environ={"SENDFILE": "1"})
    assert cli.config.sendfile is False


def test_load_reads_only_the_environ_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.setenv("GREENHORN_CMD_ARGS", "--threads 3")
    cfg = load([], {}, cwd=str(tmp_path))
    assert cfg == Config()


# --- command line details -----------------------------------------------------------------


def test_repeatable_options_collect_and_replace_the_file_value(tmp_path):
    resolved = resolve(
        tmp_path,
        ["-b", "127.0.0.1:1", "--bind", "unix:/tmp/x.sock", "-e", "A=1", "-e", "B=2"],
        files={"greenhorn.conf.py": "bind = ['0.0.0.0:80']\nraw_env = ['C=3']\n"},
    )
    assert resolved.config.bind == ["127.0.0.1:1", "unix:/tmp/x.sock"]
    assert resolved.config.raw_env == ["A=1", "B=2"]


def test_flags_without_values(tmp_path):
    cfg = resolve(tmp_path, ["--preload", "-D", "--proxy-protocol", "--reuse-port"]).config
    assert cfg.preload_app and cfg.daemon and cfg.reuse_port
    assert cfg.proxy_protocol == "auto"
    assert resolve(tmp_path, ["--proxy-protocol", "v2"]).config.proxy_protocol == "v2"


def test_gunicorn_short_flags(tmp_path):
    me = str(Path.cwd())
    cfg = resolve(
        tmp_path,
        ["-w", "2", "-k", "gthread", "-t", "10", "-p", "/tmp/p.pid", "-u", "0", "-g", "0",
         "-m", "022", "-e", "X=1", "-n", "web", "-R", "--chdir", me, "app"],
    ).config  # fmt: skip
    assert (cfg.workers, cfg.worker_class, cfg.timeout, cfg.pidfile) == (
        2, "gthread", 10, "/tmp/p.pid",
    )  # fmt: skip
    assert (cfg.user, cfg.group, cfg.umask, cfg.raw_env, cfg.proc_name) == (
        0, 0, 0o22, ["X=1"], "web",
    )  # fmt: skip
    assert cfg.enable_stdio_inheritance and cfg.chdir == me and cfg.wsgi_app == "app"


def test_unknown_options_and_extra_arguments_are_errors(tmp_path):
    assert "unrecognized arguments: --no-such" in config_error(tmp_path, ["--no-such"])
    assert "unrecognized arguments: extra" in config_error(tmp_path, ["a:app", "extra"])
    assert "expected one argument" in config_error(tmp_path, ["-w"])


def test_bad_app_module_syntax_is_a_config_error(tmp_path):
    assert config_error(tmp_path, ["mod:create(x)"]).startswith("argument APP_MODULE:")


# --- config files -------------------------------------------------------------------------


def test_greenhorn_conf_is_preferred_over_gunicorn_conf(tmp_path):
    files = {"gunicorn.conf.py": "workers = 2\n", "greenhorn.conf.py": "workers = 3\n"}
    resolved = resolve(tmp_path, files=files)
    assert resolved.config.workers == 3
    assert resolved.config.config == str(tmp_path / "greenhorn.conf.py")
    assert resolved.sources["config"] == "default"


def test_gunicorn_conf_is_read_when_alone(tmp_path):
    assert resolve(tmp_path, files={"gunicorn.conf.py": "workers = 2\n"}).config.workers == 2


def test_explicit_config_skips_discovery(tmp_path):
    files = {"greenhorn.conf.py": "workers = 3\n", "mine.py": "threads = 2\n"}
    resolved = resolve(tmp_path, ["-c", "mine.py"], files=files)
    assert resolved.config.workers == 1 and resolved.config.threads == 2
    assert resolved.sources["threads"] == "config file mine.py"
    assert resolve(tmp_path, ["--config", "file:mine.py"], files=files).config.threads == 2


def test_python_module_config(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "tmpconf_module.py").write_text("workers = 5\nimport os\n")
    try:
        resolved = resolve(tmp_path, ["-c", "python:tmpconf_module"])
    finally:
        sys.modules.pop("tmpconf_module", None)
    assert resolved.config.workers == 5 and resolved.warnings == ()
    assert "cannot import config module 'tmpconf_nope'" in config_error(
        tmp_path, ["-c", "python:tmpconf_nope"]
    )


def test_config_file_runs_in_a_fresh_namespace_with_its_path(tmp_path):
    text = "import os\nproc_name = os.path.basename(__file__)\nloglevel = 'DEBUG'\n"
    cfg = resolve(tmp_path, files={"greenhorn.conf.py": text}).config
    assert cfg.proc_name == "greenhorn.conf.py" and cfg.loglevel == "debug"


def test_wsgi_app_may_come_from_the_config_file(tmp_path):
    files = {"greenhorn.conf.py": "wsgi_app = 'site.wsgi:application'\n"}
    assert resolve(tmp_path, files=files).config.wsgi_app == "site.wsgi:application"
    assert resolve(tmp_path, ["other:app"], files=files).config.wsgi_app == "other:app"


def test_unknown_names_warn_with_the_closest_setting(tmp_path):
    text = (
        "import os\nimport os.path as osp\nfrom multiprocessing import cpu_count\n"
        "BASE_DIR = '/srv'\n_private = 1\nworker = 4\nWORKERS = 2\ntimout = 5\n"
        "def helper():\n    return 1\n"
    )
    warnings = resolve(tmp_path, files={"greenhorn.conf.py": text}).warnings
    assert len(warnings) == 4, warnings
    assert "unknown setting 'worker' ignored (did you mean 'workers'?)" in warnings[0]
    assert "unknown setting 'WORKERS' ignored (did you mean 'workers'?)" in warnings[1]
    assert "(did you mean 'timeout'?)" in warnings[2]
    assert "unknown setting 'helper' ignored" in warnings[3]


def test_load_prints_warnings_to_stderr(tmp_path, capsys):
    (tmp_path / "greenhorn.conf.py").write_text("worker = 4\n")
    load([], {}, cwd=str(tmp_path))
    err = capsys.readouterr().err
    assert err.startswith("greenhorn: warning: config file") and "did you mean 'workers'" in err
    seen: list[str] = []
    load([], {}, cwd=str(tmp_path), warn=seen.append)
    assert len(seen) == 1


def test_config_file_errors_are_one_line(tmp_path):
    assert "cannot read config file 'missing.py'" in config_error(tmp_path, ["-c", "missing.py"])
    syntax = config_error(tmp_path, files={"greenhorn.conf.py": "workers = 2\nbind = [\n"})
    assert syntax.startswith("config file") and "line 2" in syntax
    raised = config_error(
        tmp_path, files={"greenhorn.conf.py": "workers = 2\n\nraise RuntimeError('boom')\n"}
    )
    assert "raised RuntimeError: boom at line 3" in raised
    exited = config_error(tmp_path, files={"greenhorn.conf.py": "import sys\nsys.exit(3)\n"})
    assert "raised SystemExit: 3" in exited


def test_bad_values_in_a_config_file_name_file_and_setting(tmp_path):
    message = config_error(tmp_path, files={"greenhorn.conf.py": "timeout = -5\n"})
    assert message.startswith("config file '") and message.endswith(
        "greenhorn.conf.py': setting timeout: invalid value -5: expected an integer >= 0"
    )
    message = config_error(tmp_path, files={"greenhorn.conf.py": "bind = 8000\n"})
    assert "setting bind" in message


def test_config_key_inside_a_config_file_is_ignored_with_a_warning(tmp_path):
    resolved = resolve(tmp_path, files={"greenhorn.conf.py": "config = 'x.py'\n"})
    assert resolved.config.config.endswith("greenhorn.conf.py")
    assert "'config' cannot be set here" in resolved.warnings[0]
