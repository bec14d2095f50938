"""greenhorn.wsgi.app: application URIs, loading, one-line errors, and the pre-import set-up."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from greenhorn.wsgi.app import (
    AppImportError,
    add_pythonpath,
    apply_chdir,
    apply_raw_env,
    load_app,
    parse_uri,
    prepare_environment,
)

APPS = Path(__file__).resolve().parents[1] / "apps" / "cfg"
PREFIXES = ("cfgapp_", "tmpapp_")


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """tests/apps/cfg and tmp_path importable; modules imported by the test forgotten after."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(APPS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith(PREFIXES):
            del sys.modules[name]


def load_error(uri: str) -> AppImportError:
    with pytest.raises(AppImportError) as info:
        load_app(uri)
    message = str(info.value)
    assert "\n" not in message and message
    return info.value


# --- parse_uri ----------------------------------------------------------------------------


def test_bare_module_means_attribute_application():
    ref = parse_uri("pkg.mod")
    assert (ref.module, ref.attrs, ref.call) == ("pkg.mod", ("application",), False)


def test_attribute_and_dotted_attribute_path():
    assert parse_uri("m:app").attrs == ("app",)
    assert parse_uri("m:api.v1.app").attrs == ("api", "v1", "app")


def test_factory_call_with_literal_arguments():
    ref = parse_uri("m:create(1, 'x', None, k=[1, 2], flag=True)")
    assert ref.call and ref.attrs == ("create",)
    assert ref.args == (1, "x", None)
    assert ref.kwargs == {"k": [1, 2], "flag": True}


def test_factory_without_arguments_is_a_call():
    ref = parse_uri("m:create()")
    assert ref.call and ref.args == () and ref.kwargs == {}


@pytest.mark.parametrize(
    "uri",
    [
        "",
        ":app",
        "my-app:app",
        "m:",
        "m:1 + 2",
        "m:app[0]",
        "m:create(x)",  # a name, not a literal
        "m:create(__import__('os'))",
        "m:__import__('os').system('true')",
        "m:create(*args)",
        "m:create(**kw)",
    ],
)
def test_malformed_uris_are_rejected_without_eval(uri):
    with pytest.raises(AppImportError) as info:
        parse_uri(uri)
    assert "\n" not in str(info.value)


# --- load_app: the forms ----------------------------------------------------------------


def test_load_module_default_attribute(on_path):
    app = load_app("cfgapp_hello")
    assert app is sys.modules["cfgapp_hello"].application


def test_load_module_attribute(on_path):
    assert load_app("cfgapp_hello:app") is sys.modules["cfgapp_hello"].app


def test_load_dotted_attribute_path(on_path):
    assert load_app("cfgapp_hello:holder.inner.app") is sys.modules["cfgapp_hello"].app


def test_load_factory_defaults(on_path):
    assert load_app("cfgapp_factory:create_app()").args == {
        "greeting": "hello",
        "status": "200 OK",
    }


def test_load_factory_positional_and_keyword_literals(on_path):
    app = load_app("cfgapp_factory:create_app('hi', status='201 Created')")
    assert app.args == {"greeting": "hi", "status": "201 Created"}


def test_load_factory_many_literal_kinds(on_path):
    app = load_app("cfgapp_factory:create_many(1, 2.5, None, True, b'x', (1, 2), k={'a': [1]})")
    assert app.args == {"items": (1, 2.5, None, True, b"x", (1, 2)), "options": {"k": {"a": [1]}}}


def test_load_factory_on_a_dotted_path(on_path):
    app = load_app("cfgapp_factory:api.make('v2')")
    assert app({}, lambda *a: None) == [b"v2"]


# --- load_app: the errors ---------------------------------------------------------------


def test_missing_module_is_named(on_path):
    error = load_error("cfgapp_does_not_exist:app")
    assert "cfgapp_does_not_exist" in str(error) and "not found" in str(error)
    assert isinstance(error.__cause__, ModuleNotFoundError)


def test_missing_dependency_inside_the_module_is_not_reported_as_missing_module(on_path):
    message = str(load_error("cfgapp_missing_dep:application"))
    assert "error importing 'cfgapp_missing_dep'" in message
    assert "cfgapp_no_such_dependency" in message
    assert "cfgapp_missing_dep.py:3" in message


def test_module_raising_at_import_gives_summary_and_location(on_path):
    message = str(load_error("cfgapp_raises"))
    assert "ValueError: settings module is misconfigured" in message
    assert "cfgapp_raises.py:3" in message


def test_syntax_error_gives_file_and_line(on_path):
    (on_path / "tmpapp_syntax.py").write_text("x = 1\ndef broken(:\n    pass\n")
    message = str(load_error("tmpapp_syntax:app"))
    assert message.startswith("syntax error in ")
    assert "tmpapp_syntax.py:2" in message


def test_missing_attribute(on_path):
    message = str(load_error("cfgapp_hello:nope"))
    assert "'cfgapp_hello' has no attribute 'nope'" in message


def test_missing_attribute_in_dotted_path_names_the_owner(on_path):
    message = str(load_error("cfgapp_hello:holder.nope.app"))
    assert "'cfgapp_hello.holder' has no attribute 'nope'" in message


def test_not_callable(on_path):
    message = str(load_error("cfgapp_hello:not_callable"))
    assert "not callable" in message and "int" in message


def test_factory_that_raises(on_path):
    error = load_error("cfgapp_factory:broken_factory()")
    assert "RuntimeError: database is unreachable" in str(error)
    assert "broken_factory" in str(error)
    assert isinstance(error.__cause__, RuntimeError)


def test_factory_called_with_wrong_arguments(on_path):
    message = str(load_error("cfgapp_factory:create_app(1, 2)"))
    assert "cannot take these arguments" in message


def test_factory_returning_none(on_path):
    assert "returned None" in str(load_error("cfgapp_factory:returns_none()"))


def test_factory_returning_non_callable(on_path):
    assert "not callable" in str(load_error("cfgapp_factory:returns_number()"))


def test_calling_a_non_callable(on_path):
    assert "cannot be used as a factory" in str(load_error("cfgapp_hello:not_callable()"))


def test_py_file_name_gets_a_hint(on_path, monkeypatch):
    monkeypatch.chdir(APPS)
    message = str(load_error("cfgapp_hello.py"))
    assert "did you mean 'cfgapp_hello:application'" in message


# --- set-up before the import -------------------------------------------------------------


def test_apply_raw_env_sets_each_pair():
    env: dict[str, str] = {"KEEP": "1"}
    apply_raw_env(["A=1", "B=x=y", "EMPTY="], env)
    assert env == {"KEEP": "1", "A": "1", "B": "x=y", "EMPTY": ""}


def test_add_pythonpath_prepends_in_order_without_duplicates(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", ["/already"])
    monkeypatch.chdir(tmp_path)
    add_pythonpath(["a", str(tmp_path / "b"), "/already"])
    assert sys.path == [str(tmp_path / "a"), str(tmp_path / "b"), "/already"]


def test_apply_chdir_changes_directory_and_makes_it_importable(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", [])
    monkeypatch.chdir(APPS)
    apply_chdir(str(tmp_path))
    assert Path.cwd() == tmp_path
    assert sys.path == [str(tmp_path)]


def test_apply_chdir_none_still_puts_cwd_on_path(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", [])
    monkeypatch.chdir(tmp_path)
    apply_chdir(None)
    assert sys.path == [str(tmp_path)]


def test_prepare_environment_then_load_from_pythonpath_relative_to_chdir(
    monkeypatch, tmp_path, on_path
):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "tmpapp_envcheck.py").write_text(
        "import os\nVALUE = os.environ['GH_TEST_PREPARE']\n"
        "def application(environ, start_response):\n    return [VALUE.encode()]\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("GH_TEST_PREPARE", "before")  # restored (removed) after the test
    monkeypatch.chdir(APPS)
    cfg = types.SimpleNamespace(
        raw_env=["GH_TEST_PREPARE=yes"], chdir=str(tmp_path), pythonpath=["lib"]
    )
    prepare_environment(cfg)
    assert os.environ["GH_TEST_PREPARE"] == "yes"
    assert load_app("tmpapp_envcheck")({}, None) == [b"yes"]
