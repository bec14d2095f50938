"""The real `python -m greenhorn` executable, on every path that exits before the arbiter
starts: --version, -h, --print-config, --check-config, and the usage errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from greenhorn import __version__

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parents[1] / "apps" / "cfg"
# Variables that would change the result if inherited from the test runner's environment.
CLEARED = (
    "GREENHORN_CMD_ARGS", "GUNICORN_CMD_ARGS", "PORT", "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS", "SENDFILE", "GH_E2E_NEEDED",
)  # fmt: skip


def greenhorn(cwd: Path, *args: str, env: dict[str, str] | None = None):
    """Run `python -m greenhorn ARGS` in `cwd` with a controlled environment."""
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "greenhorn", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_of(stdout: str) -> dict[str, tuple[str, str]]:
    """--print-config output → {name: (value, source)}."""
    out = {}
    for line in stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" = ")
        value, _, source = rest.rpartition("  # ")
        out[name.strip()] = (value, source)
    return out


def assert_one_line_error(proc, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("greenhorn: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_version(tmp_path):
    proc = greenhorn(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"greenhorn (version {__version__})"


def test_help_lists_options_by_section(tmp_path):
    proc = greenhorn(tmp_path, "-h")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: greenhorn [OPTIONS] [APP_MODULE]")
    for text in ("Worker Processes:", "-w INT, --workers INT", "Server Socket:", "--bind ADDRESS"):
        assert text in proc.stdout


def test_print_config_shows_values_and_their_sources(tmp_path):
    (tmp_path / "greenhorn.conf.py").write_text("workers = 3\ntimeout = 5\nkeepalive = 4\n")
    proc = greenhorn(
        tmp_path,
        "--print-config",
        "--keep-alive",
        "6",
        "app:app",
        env={"GREENHORN_CMD_ARGS": "--timeout 9 --keep-alive 5", "WEB_CONCURRENCY": "7"},
    )
    assert proc.returncode == 0 and proc.stderr == ""
    seen = settings_of(proc.stdout)
    assert seen["workers"] == ("3", f"config file {tmp_path / 'greenhorn.conf.py'}")
    assert seen["timeout"] == ("9", "env GREENHORN_CMD_ARGS")
    assert seen["keepalive"] == ("6", "command line")
    assert seen["backlog"] == ("2048", "default")
    assert seen["wsgi_app"] == ("'app:app'", "command line")
    assert seen["on_starting"] == ("<default>", "default")


def test_print_config_does_not_need_an_application(tmp_path):
    proc = greenhorn(tmp_path, "--print-config")
    assert proc.returncode == 0 and settings_of(proc.stdout)["wsgi_app"] == ("None", "default")


def test_print_config_reports_unknown_config_names_on_stderr(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("worker = 2\n")
    proc = greenhorn(tmp_path, "--print-config")
    assert proc.returncode == 0
    assert proc.stderr.startswith("greenhorn: warning: ")
    assert "did you mean 'workers'?" in proc.stderr


def test_greenhorn_cmd_args_lose_to_the_command_line(tmp_path):
    env = {"GREENHORN_CMD_ARGS": "-w 3 --threads 2", "GUNICORN_CMD_ARGS": "--threads 8"}
    proc = greenhorn(tmp_path, "--print-config", "-w", "5", env=env)
    seen = settings_of(proc.stdout)
    assert seen["workers"] == ("5", "command line")
    assert seen["threads"] == ("2", "env GREENHORN_CMD_ARGS")


def test_gunicorn_cmd_args_apply_when_greenhorn_cmd_args_is_unset(tmp_path):
    proc = greenhorn(tmp_path, "--print-config", env={"GUNICORN_CMD_ARGS": "--threads 8"})
    assert settings_of(proc.stdout)["threads"] == ("8", "env GUNICORN_CMD_ARGS")


def test_port_sets_the_default_bind(tmp_path):
    seen = settings_of(greenhorn(tmp_path, "--print-config", env={"PORT": "5555"}).stdout)
    assert seen["bind"] == ("['0.0.0.0:5555']", "env PORT")
    given = greenhorn(tmp_path, "--print-config", "-b", "127.0.0.1:7", env={"PORT": "5555"})
    assert settings_of(given.stdout)["bind"] == ("['127.0.0.1:7']", "command line")


def test_check_config_ok(tmp_path):
    proc = greenhorn(tmp_path, "--check-config", "--chdir", str(APPS), "cfgapp_hello:app")
    assert (proc.returncode, proc.stderr) == (0, "")


def test_check_config_honours_raw_env_and_pythonpath(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "tmpapp_needs_env.py").write_text(
        "import os\nNEEDED = os.environ['GH_E2E_NEEDED']\n"
        "def application(environ, start_response):\n    return []\n"
    )
    args = ("--check-config", "--pythonpath", "lib", "tmpapp_needs_env")
    proc = greenhorn(tmp_path, *args, "-e", "GH_E2E_NEEDED=1")
    assert (proc.returncode, proc.stderr) == (0, "")
    without = greenhorn(tmp_path, *args)
    assert_one_line_error(without, 1, "KeyError: 'GH_E2E_NEEDED'")


@pytest.mark.parametrize(
    ("app", "needle"),
    [
        ("cfgapp_hello:nope", "has no attribute 'nope'"),
        ("cfgapp_raises", "ValueError: settings module is misconfigured"),
        ("cfgapp_missing:app", "module 'cfgapp_missing' not found"),
        ("cfgapp_factory:broken_factory()", "RuntimeError: database is unreachable"),
    ],
)
def test_check_config_bad_application(tmp_path, app, needle):
    proc = greenhorn(tmp_path, "--check-config", "--chdir", str(APPS), app)
    assert_one_line_error(proc, 1, needle)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["-w", "abc", "a:app"], ["-w/--workers", "'abc'"]),
        (["-b", ":99999", "a:app"], ["-b/--bind", "99999"]),
        (["--timeout", "-1", "a:app"], ["-t/--timeout", "'-1'"]),
        (["-k", "tornado", "a:app"], ["-k/--worker-class", "'tornado'"]),
        (["--log-syslog-facility", "local9", "a:app"], ["--log-syslog-facility", "'local9'"]),
        (["--limit-request-line", "-1", "a:app"], ["--limit-request-line", ">= 0"]),
        (["-c", "missing.py", "a:app"], ["cannot read config file 'missing.py'"]),
        (["--no-such-flag", "a:app"], ["unrecognized arguments: --no-such-flag"]),
        (["-u", "greenhorn-no-such-user", "a:app"], ["-u/--user", "no such user"]),
        (["--chdir", "/nonexistent", "a:app"], ["--chdir", "'/nonexistent': no such directory"]),
        (["--chdir", "/etc/hostname", "a:app"], ["--chdir", "'/etc/hostname': not a directory"]),
        (["a:create(x)"], ["APP_MODULE"]),
        ([], ["No application module specified."]),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path, args, needles):
    assert_one_line_error(greenhorn(tmp_path, *args), 2, *needles)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("argv", "fd://\u0663"),  # ARABIC-INDIC DIGIT THREE: str.isdigit() says yes
        ("file", "unix:a\x00b"),  # no socket path holds a NUL
        ("argv", "h\u00e9llo:8000"),  # not a host name or an IP address
    ],
)
def test_addresses_the_master_cannot_bind_are_usage_errors(tmp_path, where, value):
    """One grammar for --bind (config/addresses.py): what the settings accept, the master
    can bind. These used to pass the settings and fail at bind time (exit 1)."""
    if where == "argv":
        proc = greenhorn(tmp_path, "-b", value, "a:app")
    else:
        (tmp_path / "greenhorn.conf.py").write_text(f"bind = [{value!r}]\n")
        proc = greenhorn(tmp_path, "a:app")
    assert_one_line_error(proc, 2, "bind", "invalid bind address")


def test_config_file_that_raises_or_does_not_parse(tmp_path):
    (tmp_path / "raises.py").write_text("workers = 2\nraise RuntimeError('no database')\n")
    proc = greenhorn(tmp_path, "-c", "raises.py", "a:app")
    assert_one_line_error(proc, 2, "raises.py", "RuntimeError: no database", "line 2")
    (tmp_path / "broken.py").write_text("workers = (\n")
    proc = greenhorn(tmp_path, "-c", "broken.py", "a:app")
    assert_one_line_error(proc, 2, "broken.py", "line 1")
    (tmp_path / "badvalue.py").write_text("workers = 'many'\n")
    proc = greenhorn(tmp_path, "-c", "badvalue.py", "a:app")
    assert_one_line_error(proc, 2, "badvalue.py", "setting workers", "'many'")


def test_bad_value_in_greenhorn_cmd_args_names_the_variable(tmp_path):
    proc = greenhorn(tmp_path, "a:app", env={"GREENHORN_CMD_ARGS": "--threads none"})
    assert_one_line_error(proc, 2, "GREENHORN_CMD_ARGS: argument --threads")


def test_missing_app_may_be_supplied_by_the_config_file(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(
        f"wsgi_app = 'cfgapp_hello:app'\nchdir = {str(APPS)!r}\n"
    )
    proc = greenhorn(tmp_path, "--check-config")
    assert (proc.returncode, proc.stderr) == (0, "")


# --- the -h text ------------------------------------------------------------------------


def help_entries(text: str) -> dict[str, str]:
    """``greenhorn -h`` -> {the option's spellings as shown: its help text, lines joined}."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            spelled, _, rest = line[2:].partition("  ")
            current = spelled.strip()
            entries[current] = rest.strip()
        elif current is not None and line.startswith(" " * 10) and line.strip():
            entries[current] = f"{entries[current]} {line.strip()}".strip()
        else:
            current = None
    return entries


def split_default(entry: str) -> tuple[str, str | None]:
    m = re.fullmatch(r"(.*?)(?: \[([^\[\]]*)\])?", entry)
    assert m is not None
    return m.group(1), m.group(2)


def test_every_help_entry_is_whole(tmp_path):
    """Each -h entry is a whole sentence (not cut inside `code`, parentheses or at an
    ellipsis) and reads the way the option acts (--no-sendfile says what it turns off)."""
    entries = help_entries(greenhorn(tmp_path, "-h", env={"COLUMNS": "100"}).stdout)
    assert len(entries) > 90, entries
    for option, entry in entries.items():
        text, _ = split_default(entry)
        assert text.endswith((".", ")")) and not text.endswith(".."), (option, entry)
        assert text.count("`") % 2 == 0, (option, entry)
        assert text.count("(") == text.count(")"), (option, entry)
        assert text.count('"') % 2 == 0, (option, entry)
    assert entries["--defer-accept SECONDS"] == (
        "Hand a TCP connection to a worker only once its first bytes have arrived, or after "
        "this many seconds of silence (TCP_DEFER_ACCEPT, Linux). [1]"
    )
    assert entries["--no-sendfile"].startswith("Do not use sendfile()")


def test_help_defaults_read_as_typed(tmp_path):
    """A default in -h is what a user would type after the option: typed back, it gives
    the same value as leaving the option out (so no Python list or repr, no [384] for
    0o600). Values the environment may give are named after ", or"."""
    entries = help_entries(greenhorn(tmp_path, "-h", env={"COLUMNS": "100"}).stdout)
    args: list[str] = []
    for option, entry in entries.items():
        _, default = split_default(entry)
        if default is None:
            continue
        long_form = option.split(", ")[-1]
        flag, _, metavar = long_form.partition(" ")
        assert metavar, f"{option}: a default shown for a flag that takes no value"
        for python_only in ("['", "None", "True", "False", "os."):
            assert python_only not in default, (option, default)
        args += [flag, default.split(", or ")[0]]
    assert len(args) > 70, args
    assert "0o600" in args and "127.0.0.1:8000" in args
    typed = greenhorn(tmp_path, "--print-config", *args, "x:app")
    assert typed.returncode == 0 and typed.stderr == "", typed.stderr
    plain = settings_of(greenhorn(tmp_path, "--print-config", "x:app").stdout)
    for name, (value, _source) in settings_of(typed.stdout).items():
        assert value == plain[name][0], (name, value, plain[name][0])
