"""Server hooks: validation when the config is loaded, and greenhorn.config.hooks.call_hook."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from greenhorn.config import Config, ConfigError, hooks, load_resolved
from greenhorn.config.settings import BY_NAME

APPS = Path(__file__).resolve().parents[1] / "apps" / "cfg"


def load_conf(tmp_path: Path, text: str) -> Config:
    (tmp_path / "greenhorn.conf.py").write_text(text)
    return load_resolved([], {}, cwd=str(tmp_path)).config


def hook_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_conf(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- validation at load time --------------------------------------------------------------


def test_defaults_are_the_noops_from_hooks():
    cfg = Config()
    for name in hooks.HOOK_NAMES:
        assert getattr(cfg, name) is hooks.HOOK_DEFAULTS[name]
        assert hooks.is_default(cfg, name)


def test_hooks_with_the_right_signature_are_kept(tmp_path):
    cfg = load_conf(
        tmp_path,
        "def on_starting(server):\n    pass\n"
        "def pre_fork(server, worker=None):\n    pass\n"
        "def when_ready(*args):\n    pass\n"
        "def nworkers_changed(server, new, old, *, extra=1):\n    pass\n",
    )
    assert cfg.on_starting.__name__ == "on_starting"
    assert not hooks.is_default(cfg, "on_starting")
    assert cfg.pre_fork.__name__ == "pre_fork" and cfg.when_ready.__name__ == "when_ready"
    assert cfg.nworkers_changed.__name__ == "nworkers_changed"


def test_a_hook_with_the_wrong_arity_is_refused_with_its_signature(tmp_path):
    message = hook_error(tmp_path, "def pre_fork(server):\n    pass\n")
    assert "setting pre_fork" in message
    assert "must accept 2 positional argument(s): pre_fork(server, worker)" in message


def test_a_required_keyword_only_parameter_is_refused(tmp_path):
    message = hook_error(tmp_path, "def on_exit(server, *, how):\n    pass\n")
    assert "on_exit(server)" in message


def test_a_non_callable_hook_is_refused(tmp_path):
    assert "expected a function when_ready(server)" in hook_error(tmp_path, "when_ready = 3\n")


def test_post_request_with_fewer_arguments_is_adapted(tmp_path):
    cfg = load_conf(tmp_path, "def post_request(worker, req):\n    return (worker, req)\n")
    assert cfg.post_request("w", "r", {"E": 1}, "resp") == ("w", "r")
    three = BY_NAME["post_request"].convert(lambda worker, req, environ: environ)
    assert three("w", "r", {"E": 1}, "resp") == {"E": 1}
    with pytest.raises(TypeError):
        BY_NAME["post_request"].convert(lambda worker: None)


def test_hooks_may_be_given_as_import_paths(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(APPS))
    try:
        cfg = load_conf(
            tmp_path,
            "on_starting = 'cfgapp_hooks.on_starting'\npre_fork = 'cfgapp_hooks:two_args'\n",
        )
        module = sys.modules["cfgapp_hooks"]
        assert cfg.on_starting is module.on_starting and cfg.pre_fork is module.two_args
        assert "module 'cfgapp_nope' not found" in hook_error(
            tmp_path, "on_exit = 'cfgapp_nope.on_exit'\n"
        )
        assert "has no attribute 'missing'" in hook_error(
            tmp_path, "on_exit = 'cfgapp_hooks.missing'\n"
        )
        assert "must accept 1" in hook_error(tmp_path, "on_exit = 'cfgapp_hooks.two_args'\n")
    finally:
        sys.modules.pop("cfgapp_hooks", None)


def test_ssl_context_default_uses_the_factory():
    sentinel = object()
    assert Config().ssl_context(Config(), lambda: sentinel) is sentinel


# --- call_hook ------------------------------------------------------------------------------


class RecordingLog:
    def __init__(self) -> None:
        self.records: list[tuple[str, tuple[object, ...], BaseException | None]] = []

    def exception(self, msg: str, *args: object, **kw: object) -> None:
        self.records.append((msg, args, sys.exc_info()[1]))


def cfg_with(**hooks_: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(**hooks_)


def test_call_hook_passes_arguments_and_returns_the_result():
    cfg = cfg_with(pre_fork=lambda server, worker: (server, worker))
    assert hooks.call_hook(cfg, "pre_fork", "s", "w") == ("s", "w")


def test_call_hook_logs_and_contains_a_failure():
    def boom(server):
        raise RuntimeError("hook failed")

    log = RecordingLog()
    assert hooks.call_hook(cfg_with(when_ready=boom), "when_ready", "s", log=log) is None
    [(msg, args, exc)] = log.records
    assert msg % args == "Exception in when_ready hook"
    assert isinstance(exc, RuntimeError)


def test_call_hook_without_a_logger_writes_the_traceback_to_stderr(capsys):
    def boom(server):
        raise KeyError("missing")

    hooks.call_hook(cfg_with(on_exit=boom), "on_exit", "s")
    err = capsys.readouterr().err
    assert "exception in on_exit hook" in err and "KeyError: 'missing'" in err


def test_call_hook_propagates_when_asked():
    def boom(server, worker):
        raise ValueError("post_fork failed")

    log = RecordingLog()
    with pytest.raises(ValueError, match="post_fork failed"):
        hooks.call_hook(cfg_with(post_fork=boom), "post_fork", "s", "w", log=log, propagate=True)
    assert log.records == []


def test_call_hook_lets_system_exit_through():
    def leave(worker):
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        hooks.call_hook(cfg_with(worker_int=leave), "worker_int", "w", log=RecordingLog())


def test_accepts():
    assert hooks.accepts(lambda a, b: None, 2)
    assert hooks.accepts(lambda *a: None, 4)
    assert hooks.accepts(lambda a, b=1: None, 1)
    assert not hooks.accepts(lambda a: None, 2)
    assert not hooks.accepts(lambda a, *, k: None, 1)
    assert hooks.accepts(max, 3)  # builtins without a signature are trusted
