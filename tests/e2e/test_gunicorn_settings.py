"""Config files and settings that run under gunicorn 27 run under greenhorn (issue 21): the
real ``greenhorn`` executable, given what a gunicorn deployment gives gunicorn.

Most checks need no server: ``--print-config`` shows every effective value with its source
and ``--check-config`` imports the application. A server is started only where the setting
acts on serving (one per scenario). gunicorn 27.0.1 itself (a dev dependency) runs the same
command line where the test compares the two.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, base_env, wait_until

pytestmark = pytest.mark.e2e

EXAMPLE_CONFIG = APPS / "gunicorn_example" / "example_config.py"
CFG_APPS = APPS / "cfg"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, module: str = "greenhorn"):
    """``python -m greenhorn ARGS`` (or gunicorn) in ``cwd``; the completed process."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=base_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def printed(stdout: str) -> dict[str, tuple[str, str]]:
    """``--print-config`` output -> {setting: (value as printed, source)}."""
    out = {}
    for line in stdout.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" = ")
            value, _, source = rest.rpartition("  # ")
            out[name.strip()] = (value, source)
    return out


def warnings_of(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    assert all(line.startswith("greenhorn: warning: ") for line in lines), stderr
    return lines


# --- None values and imports -----------------------------------------------------------------


def test_gunicorns_example_config_runs_unchanged(greenhorn, tmp_path):
    """gunicorn's own examples/example_config.py (user = None, group = None, pidfile = None,
    proc_name = None, hooks ...) passes --check-config with no warning, and serves."""
    config = str(shutil.copy(EXAMPLE_CONFIG, tmp_path / "example_config.py"))
    proc = run(
        tmp_path, "-c", config, "--check-config", "--chdir", str(CFG_APPS), "cfgapp_hello:app"
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    shown = printed(run(tmp_path, "-c", config, "--print-config", "x:app").stdout)
    assert shown["user"][0] == str(os.geteuid()) and shown["group"][0] == str(os.getegid())
    assert shown["raw_env"][0] == "['DJANGO_SECRET_KEY=something', 'SPAM=eggs']"
    server = greenhorn("-c", config, "hello:app")  # the fixture's -b 127.0.0.1:0 wins
    server.wait_for_log(r"Server is ready\. Spawning workers")
    server.wait_for_log(r"Worker spawned \(pid: \d+\)")
    assert server.get("/").text == "Hello, world!\n"


def test_none_in_a_config_file_means_the_default(tmp_path):
    (tmp_path / "g.conf.py").write_text(
        "user = None\ngroup = None\nsendfile = None\nerrorlog = None\nloglevel = None\n"
        "workers = None\nbind = None\n"
    )
    proc = run(tmp_path, "-c", "g.conf.py", "--print-config", "x:app")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    shown = printed(proc.stdout)
    assert shown["user"] == (str(os.geteuid()), "default")
    assert shown["group"] == (str(os.getegid()), "default")
    assert shown["sendfile"] == ("True", "default")
    assert shown["errorlog"] == ("'-'", "default")
    assert shown["loglevel"] == ("'info'", "default")
    assert shown["bind"] == ("['127.0.0.1:8000']", "default")
    # None leaves what the layer below says: here SENDFILE from the environment, as gunicorn
    shown = printed(
        run(tmp_path, "-c", "g.conf.py", "--print-config", "x:app", env={"SENDFILE": "0"}).stdout
    )
    assert shown["sendfile"] == ("False", "env SENDFILE")


def test_a_config_file_imports_modules_from_the_start_directory(tmp_path):
    """As under gunicorn. Run as the installed ``greenhorn`` script, as users do: under
    ``python -m`` the start directory is on sys.path anyway."""
    (tmp_path / "deploy_settings.py").write_text("WORKERS = 3\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "g.conf.py").write_text(
        "import deploy_settings\nworkers = deploy_settings.WORKERS\n"
    )
    script = Path(sys.executable).parent / "greenhorn"
    proc = subprocess.run(
        [str(script), "-c", "conf/g.conf.py", "--print-config", "x:app"],
        cwd=tmp_path,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert printed(proc.stdout)["workers"] == ("3", "config file conf/g.conf.py")


# --- values gunicorn accepts -----------------------------------------------------------------


def test_values_gunicorn_accepts_load_with_one_warning_each(tmp_path):
    proc = run(
        tmp_path,
        "--print-config",
        *("-w", "0", "--threads", "0", "--backlog", "0", "--limit-request-fields", "40000"),
        *("--log-level", "verbose", "--worker-connections", "0", "--ssl-version", "TLSv1_2"),
        *("--http-parser", "fast", "-t", "0x1e", "--graceful-timeout", "0o17"),
        "x:app",
    )
    assert proc.returncode == 0, proc.stderr
    warned = warnings_of(proc.stderr)
    for flag in ("-w/--workers", "--threads", "--limit-request-fields", "--log-level",
                 "--worker-connections", "--ssl-version", "--http-parser"):  # fmt: skip
        assert sum(f"argument {flag}:" in line for line in warned) == 1, (flag, warned)
    assert len(warned) == 7, warned
    shown = {name: value for name, (value, _) in printed(proc.stdout).items()}
    assert (shown["workers"], shown["threads"], shown["backlog"]) == ("1", "1", "0")
    assert (shown["limit_request_fields"], shown["loglevel"]) == ("32768", "'info'")
    assert (shown["worker_connections"], shown["timeout"], shown["graceful_timeout"]) == (
        "1000", "30", "15",
    )  # fmt: skip


def test_loglevel_warn_means_warning(greenhorn, tmp_path):
    (tmp_path / "g.conf.py").write_text('loglevel = "warn"\n')
    proc = run(tmp_path, "-c", "g.conf.py", "--print-config", "x:app")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert printed(proc.stdout)["loglevel"][0] == "'warning'"
    # served: no INFO line is written (so the readiness check goes through a unix socket)
    path = tmp_path / "s.sock"
    server = greenhorn(
        "-c", str(tmp_path / "g.conf.py"), "-b", f"unix:{path}", "hello:app", wait=False
    )
    wait_until(lambda: _answers_on(path), 20, what=f"an answer on {path}\n{server.log}")
    assert server.proc.poll() is None
    assert "[INFO]" not in server.log and "Traceback" not in server.log, server.log


def _answers_on(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


def test_zero_workers_and_threads_serve_with_one_single_threaded_worker(greenhorn):
    """-w 0 --threads 0 --backlog 0, which gunicorn accepts: one worker serves, and with one
    worker process ``wsgi.multiprocess`` is False (gunicorn: ``workers > 1``)."""
    server = greenhorn("-w", "0", "--threads", "0", "--backlog", "0", "compat:app")
    assert "argument -w/--workers: '0': no worker would serve" in server.log
    info = server.get("/").json()
    assert (info["multiprocess"], info["multithread"]) == (False, False)
    assert len(server.wait_workers(1)) == 1


# --- PasteDeploy -----------------------------------------------------------------------------

PASTE_INI = """\
[app:main]
use = call:compat:paste_factory
greeting = hello from main

[app:admin]
use = call:compat:paste_factory
greeting = hello from admin

[loggers]
keys = root, error

[handlers]
keys = stderr

[formatters]
keys = tagged

[logger_root]
level = INFO
handlers = stderr

[logger_error]
level = INFO
handlers = stderr
propagate = 0
qualname = gunicorn.error

[handler_stderr]
class = StreamHandler
args = (sys.stderr,)
formatter = tagged

[formatter_tagged]
format = PASTE-LOG %(message)s
"""


def test_paste_serves_the_ini_files_application(greenhorn, tmp_path):
    """``--paste app.ini`` (gunicorn's spelling ``--paster`` too) serves [app:main] with the
    ``--paste-global`` values; ``app.ini#admin`` another section; the file's [loggers]
    configure logging, as under gunicorn."""
    (tmp_path / "app.ini").write_text(PASTE_INI)
    check = run(tmp_path, "--check-config", "--pythonpath", str(APPS), "--paste", "app.ini#admin")
    assert (check.returncode, check.stderr) == (0, "")
    shown = printed(run(tmp_path, "--print-config", "--paste", "app.ini").stdout)
    assert shown["logconfig"][0] == repr(str(tmp_path / "app.ini"))
    assert shown["default_proc_name"][0] == repr(str(tmp_path / "app.ini"))
    server = greenhorn("--paster", "app.ini", "--paste-global", "FOO=bar", cwd=tmp_path)
    assert server.get("/").text == "hello from main bar\n"
    assert "PASTE-LOG Booting worker" in server.log
    missing = run(tmp_path, "nope:app", "--paste", "nope.ini")  # --paste wins, as in gunicorn
    assert missing.returncode == 2 and "argument --paste/--paster" in missing.stderr
    assert missing.stderr.strip().endswith("nope.ini': no such file"), missing.stderr


# --- classes ---------------------------------------------------------------------------------


CLASSES_CONFIG = """
from greenhorn.observe.logger import Logger
from greenhorn.workers.sync import SyncWorker


class ConfigWorker(SyncWorker):
    def run(self):
        self.log.info("ConfigWorker %s serving", self.pid)
        super().run()


class ConfigLogger(Logger):
    def info(self, msg, *args, **kwargs):
        super().info("[config logger] " + msg, *args, **kwargs)


worker_class = ConfigWorker
logger_class = ConfigLogger
"""


def test_worker_and_logger_classes_defined_in_the_config_file(greenhorn, tmp_path):
    (tmp_path / "g.conf.py").write_text(CLASSES_CONFIG)
    proc = run(tmp_path, "-c", "g.conf.py", "--print-config", "x:app")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    shown = printed(proc.stdout)
    assert shown["worker_class"][0] == "'__config__.ConfigWorker'"
    assert shown["logger_class"][0] == "'__config__.ConfigLogger'"
    server = greenhorn("-c", str(tmp_path / "g.conf.py"), "hello:app")
    server.wait_for_log(r"\[config logger\] ConfigWorker \d+ serving")
    assert server.get("/").text == "Hello, world!\n"


def test_worker_class_in_module_colon_class_form(greenhorn):
    """``-k pkg.mod:Class`` as gunicorn reads it (and the dotted form); with two workers
    ``wsgi.multiprocess`` is True."""
    server = greenhorn("-k", "compat:TaggedWorker", "-w", "2", "compat:app")
    server.wait_for_log(r"TaggedWorker \d+ serving", count=2)
    assert server.get("/").json()["multiprocess"] is True


# --- flags that did nothing ------------------------------------------------------------------


def test_spew_traces_every_line_as_gunicorn_does(greenhorn):
    server = greenhorn("--spew", "hello:app", timeout=60)
    assert server.get("/").text == "Hello, world!\n"
    server.stop()
    lines = server.out.splitlines()
    assert all(re.fullmatch(r"[\w.<>\[\] -]+:\d+: .*", line) for line in lines[:1000]), lines[:5]
    assert any(line.startswith("greenhorn.master.arbiter:") for line in lines)
    assert any(line.startswith("greenhorn.workers.sync:") for line in lines)  # a worker
    assert any(re.match(r"hello:\d+: +return \[b\"Hello, world!\\n\"\]", line) for line in lines)


def test_strip_header_spaces_lets_space_before_the_colon_through(greenhorn):
    request = b"GET / HTTP/1.1\r\nHost: x\r\nFoo : bar\r\nConnection: close\r\n\r\n"
    server = greenhorn("--strip-header-spaces", "compat:app")
    reply = server.raw(request)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["headers"]["HTTP_FOO"] == "bar"


@pytest.mark.parametrize("strip", [False, True])
def test_strip_header_spaces_covers_trailers_too(greenhorn, strip):
    """gunicorn parses trailers with its header rules: a space before a trailer's colon is
    refused (400), or stripped with --strip-header-spaces."""
    server = greenhorn(*(["--strip-header-spaces"] if strip else []), "echo:app")
    reply = server.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\n3\r\nabc\r\n0\r\nX-Sum : 1\r\n\r\n"
    )
    if strip:
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1].split(b"\n", 1)[0])["body_len"] == 3
    else:
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]


def test_enable_backlog_metric_sends_gunicorn_backlog_with_the_prefix(greenhorn):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        port = udp.getsockname()[1]
        statsd = ("--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "svc")
        greenhorn(*statsd, "--enable-backlog-metric", "hello:app")
        seen: list[str] = []

        def backlog_sent() -> bool:
            try:
                while True:
                    seen.append(udp.recv(4096).decode())
            except TimeoutError:
                pass
            return any(re.fullmatch(r"svc\.gunicorn\.backlog:\d+\|h", m) for m in seen)

        wait_until(backlog_sent, 10, what=f"a gunicorn.backlog datagram in {seen[-10:]}")


# --- the whole gunicorn command line ---------------------------------------------------------

# A value for every gunicorn 27 flag greenhorn supports (None: a flag without a value),
# chosen to differ from the default so that the flag visibly sets its setting.
GUNICORN_ARGS: dict[str, str | None] = {
    "-b": "127.0.0.1:8001", "--backlog": "64", "-w": "3", "-k": "gthread", "--threads": "4",
    "--worker-connections": "50", "--max-requests": "7", "--max-requests-jitter": "3",
    "-t": "45", "--graceful-timeout": "12", "--keep-alive": "4",
    "--limit-request-line": "4000", "--limit-request-fields": "50",
    "--limit-request-field_size": "4000", "--reload": None, "--reload-engine": "poll",
    "--spew": None, "--check-config": None, "--preload": None, "--no-sendfile": None,
    "--reuse-port": None, "-D": None, "-e": "A=1", "-p": "x.pid", "--worker-tmp-dir": "/tmp",
    "-m": "0o22", "--initgroups": None, "--forwarded-allow-ips": "10.0.0.1,10.0.0.2",
    "--access-logfile": "-", "--disable-redirect-access-to-syslog": None,
    "--access-logformat": "%(h)s %(s)s", "--error-logfile": "err.log", "--log-level": "debug",
    "--capture-output": None, "--log-config": "log.ini", "--log-config-json": "log.json",
    "--log-syslog-to": "udp://127.0.0.1:5514", "--log-syslog": None,
    "--log-syslog-prefix": "svc", "--log-syslog-facility": "local3", "-R": None,
    "--statsd-host": "127.0.0.1:9125", "--dogstatsd-tags": "env:test", "--statsd-prefix": "svc",
    "--enable-backlog-metric": None, "-n": "svcname", "--pythonpath": "lib1,lib2",
    "--proxy-protocol": "v1", "--proxy-allow-from": "10.0.0.3", "--keyfile": "key.pem",
    "--certfile": "cert.pem", "--cert-reqs": "2", "--ca-certs": "ca.pem",
    "--suppress-ragged-eofs": None, "--do-handshake-on-connect": None,
    "--ciphers": "ECDHE+AESGCM", "--permit-obsolete-folding": None,
    "--strip-header-spaces": None, "--permit-unconventional-http-method": None,
    "--permit-unconventional-http-version": None, "--casefold-http-method": None,
    "--forwarder-headers": "SCRIPT_NAME,REMOTE_USER", "--header-map": "refuse",
    "--asgi-loop": "asyncio", "--asgi-lifespan": "off", "--asgi-disconnect-grace-period": "5",
    "--websocket-max-message-size": "1024", "--http-parser": "python", "--root-path": "/api",
    "--control-socket": "ctl.sock", "--control-socket-mode": "0o660",
    "--no-control-socket": None,
}  # fmt: skip
# Where the two print the same value differently (greenhorn prints Python literals).
SAME_MEANING = {
    "statsd_host": ("('127.0.0.1', 9125)", "'127.0.0.1:9125'"),
    "pythonpath": ("lib1,lib2", "['lib1', 'lib2']"),
}


def _as_python(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def test_a_gunicorn_command_line_means_the_same(tmp_path):
    """Every gunicorn 27 flag that greenhorn supports, on one command line: both servers'
    --print-config show each setting set from it, to the same value."""
    (tmp_path / "empty.conf.py").write_text("")
    args = ["-c", "empty.conf.py", "--chdir", str(APPS), "-u", str(os.geteuid())]
    args += ["-g", str(os.getegid()), "--reload-extra-file", str(EXAMPLE_CONFIG)]
    for flag, value in GUNICORN_ARGS.items():
        args += [flag] if value is None else [flag, value]
    ours = run(tmp_path, "--print-config", *args, "hello:app")
    assert ours.returncode == 0 and ours.stderr == "", ours.stderr
    theirs = run(tmp_path, "--print-config", *args, "hello:app", module="gunicorn")
    assert theirs.returncode == 0, theirs.stderr[-2000:]
    ours_shown, theirs_shown = printed(ours.stdout), {}
    for line in theirs.stdout.splitlines():
        name, _, value = line.partition(" = ")
        theirs_shown[name.strip()] = value
    from greenhorn.config.layers import build_parser

    actions = build_parser()._option_string_actions
    names = {actions[flag].dest for flag in (*GUNICORN_ARGS, "-c", "--chdir", "-u", "-g")}
    differ = []
    for name in sorted(names - {"check_config", "print_config"}):
        value, source = ours_shown[name]
        assert source == "command line", (name, source)
        mine, gunicorns = _as_python(value), _as_python(theirs_shown[name])
        if mine != gunicorns and SAME_MEANING.get(name) != (theirs_shown[name], value):
            differ.append(f"{name}: greenhorn {value} gunicorn {theirs_shown[name]}")
    assert not differ, differ
