"""What the documentation tells people to type, run (issue 19).

Every command in a shell block of docs/ and README.md (``sh``, ``bash``, ``console``) is
either run here or matched by ``NOT_HERE`` with the reason it cannot run on a test machine
and, where there is one, the test that covers it. A new documented command fails
``test_every_documented_command_is_run_or_explained`` until it is one or the other.

- ``greenhorn ...`` (serving): run with ``--check-config`` appended, in a directory laid out
  as the docs assume (``examples/``, a ``gunicorn.conf.py``, the placeholder applications
  ``app``, ``myapp`` and ``myproject.wsgi``), which parses every option and imports the
  application. A ``console`` block's shown output must be what greenhorn prints.
- ``greenhorn ctl ...``: against one running server, with its pid file and control socket
  where the docs put them.
- ``pip wheel``: builds the wheel whose file name the docs give, with its extras.

Claims in prose that a process can check are run too: the worker-signal lines of
docs/logging.md.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, base_env, children, wait_until

pytestmark = pytest.mark.e2e

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]

# Documented commands that cannot run on a test machine, by how they start: why, and what
# covers them instead.
NOT_HERE = {
    "docker ": "needs a Docker daemon; test_deploy.py runs the Dockerfile's ENTRYPOINT + CMD",
    "systemctl ": "needs systemd as PID 1; test_deploy.py runs the units' ExecStart",
    "journalctl ": "needs systemd's journal",
    "cp examples/": "installs into /srv and /etc (the systemd set-up)",
    "curl --unix-socket /run/": "needs the systemd socket in /run; test_deploy.py serves it",
    "curl http://127.0.0.1:8000/": "test_examples.py serves the hello example and asks it",
    "kill ": "test_signals.py sends every signal to a real master",
    "gunicorn ": "gunicorn itself, the 'before' of a migration",
    "python3 -m venv": "makes a virtualenv; CI runs in its own",
    ". .venv/bin/activate": "activates that virtualenv",
    "python3 -m pip install": "installs greenhorn: .ci/run runs the README's install commands",
    "/srv/greenhorn/venv/bin/pip install": "installs into /srv (the systemd set-up)",
    "pip install flask": "flask is a dev dependency: test_examples.py serves the Flask example",
    "pip install django": "django is a dev dependency: test_examples.py serves the Django example",
    "pip install '.[gevent]'": "installs; the wheel test checks the extras it names",
    "pip install './dist/greenhorn-": "installs; the wheel test builds this very file",
    "python3 -m pytest": "the test suite itself",
    "python3 -m ruff": "lint; .ci/run's pytest runs the same checks through the suite",
    "python3 -m mkdocs build --strict": "test_docs.py::test_mkdocs_build_strict runs it",
    "python3 -m mkdocs serve": "a server for a person with a browser",
    "python benchmarks/run.py": "a benchmark run (minutes); tests/unit/test_benchmark_report.py",
    "python examples/embedded.py": "test_python_api.py runs it, reloads and stops it",
    "python -m greenhorn.app.wsgiapp": "test_python_api.py serves through it",
}
PLACEHOLDER_APPS = {
    "app.py": "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'']\n",
    "myapp.py": "async def app(scope, receive, send):\n    pass\n",
    "myproject/__init__.py": "",
    "myproject/wsgi.py": "def application(environ, start_response):\n    return []\n",
    "myproject/asgi.py": "async def app(scope, receive, send):\n    pass\n",
    "myproject/web.py": "from aiohttp import web\n\napp = web.Application()\n",
    # custom-classes.md: classes written against gunicorn's (gunicorn is a dev dependency)
    "myco/__init__.py": "",
    "myco/workers.py": "from gunicorn.workers.sync import SyncWorker\n\n\n"
    "class AuditedSyncWorker(SyncWorker):\n    pass\n",
    "myco/logs.py": "from gunicorn.glogging import Logger\n\n\n"
    "class JsonLogger(Logger):\n    pass\n",
}


def documented() -> list[tuple[Path, str, list[str]]]:
    """(page, command, the output a console block shows after it)."""
    found = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
            if lang not in ("sh", "bash", "console"):
                continue
            lines = body.replace("\\\n", " ").splitlines()
            for i, line in enumerate(lines):
                text = line.strip()
                if lang == "console":
                    if not text.startswith("$ "):
                        continue
                    text = text[2:]
                    output = []
                    for after in lines[i + 1 :]:
                        if after.startswith("$ "):
                            break
                        output.append(after)
                else:
                    output = []
                text = re.sub(r"\s+#.*$", "", text).strip()
                if not text or text.startswith("#"):
                    continue
                for part in re.split(r"\s*&&\s*", text):
                    found.append((page, part.removesuffix("&").strip(), output))
    return found


def kind(command: str) -> str:
    if command.startswith("greenhorn ctl"):
        return "ctl"
    if command.startswith("greenhorn "):
        return "serve"
    if command.startswith("pip wheel "):
        return "wheel"
    for prefix in NOT_HERE:
        if command.startswith(prefix):
            return "not here"
    return "unexplained"


def test_every_documented_command_is_run_or_explained():
    unexplained = [f"{p.name}: {c}" for p, c, _ in documented() if kind(c) == "unexplained"]
    assert not unexplained, f"run these here or say in NOT_HERE why not: {unexplained}"
    used = {prefix for _, c, _ in documented() for prefix in NOT_HERE if c.startswith(prefix)}
    assert used == set(NOT_HERE), f"NOT_HERE entries no page needs: {set(NOT_HERE) - used}"


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """A directory laid out as the docs assume: examples/, gunicorn.conf.py, the
    placeholder applications."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "gunicorn.conf.py").write_text("")
    for name, text in PLACEHOLDER_APPS.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def greenhorn(cwd: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "greenhorn", *args],
        cwd=cwd,
        env=base_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_documented_greenhorn_commands_load(docs_dir):
    """Each ``greenhorn ...`` command in the docs, with --check-config: its options parse,
    its application imports, and it prints nothing else (or what the page shows)."""
    ran = 0
    for page, command, output in documented():
        if kind(command) != "serve":
            continue
        words = shlex.split(command)[1:]
        proc = greenhorn(docs_dir, *words, "--check-config")
        shown = [line for line in output if line.strip()]
        assert proc.returncode == 0, f"{page.name}: {command}: {proc.stderr}"
        assert proc.stderr.splitlines() == shown, f"{page.name}: {command}: {proc.stderr}"
        ran += 1
    assert ran >= 12, ran


def test_documented_ctl_commands_answer(greenhorn_server, tmp_path):
    """The ``greenhorn ctl`` lines of signals.md and systemd.md against a running master,
    with the pid file and control socket at the documented paths' stand-ins."""
    from greenhorn.master.control import default_socket_path

    pidfile = tmp_path / "greenhorn.pid"
    server = greenhorn_server("-p", str(pidfile), "hello:app")
    sock = default_socket_path(server.pid, create=False)  # systemd.md sets it in the unit
    ran = 0
    commands = [(page, c) for page, c, _ in documented() if kind(c) == "ctl"]
    # ``shutdown`` stops the server: run last; ``worker kill 4242``: a worker of this one
    commands.sort(key=lambda item: " shutdown" in item[1])
    for page, command in commands:
        command = command.replace("/run/greenhorn.pid", str(pidfile))
        command = command.replace("/run/greenhorn/control.sock", sock)
        command = command.replace("...", f"-p {pidfile}")
        if " worker kill " in command:
            worker = server.wait_workers(1)[0]
            command = re.sub(r"worker kill \d+", f"worker kill {worker}", command)
        proc = greenhorn(tmp_path, *shlex.split(command)[1:])
        assert proc.returncode == 0, f"{page.name}: {command}: {proc.stdout}{proc.stderr}"
        ran += 1
        if " shutdown" in command:
            assert server.proc.wait(30) == 0
            break
    assert ran >= 12, ran
    assert server.proc.poll() == 0, "the documented shutdown stopped the server"


@pytest.fixture
def greenhorn_server(greenhorn):
    return greenhorn


def test_documented_wheel_has_the_documented_name_and_extras(tmp_path):
    """docs/workers.md: ``pip wheel --no-deps -w dist .`` in a checkout gives the file it
    then installs with ``[gevent]``, and the wheel declares that extra."""
    text = (ROOT / "docs" / "workers.md").read_text()
    (wheel_name,) = re.findall(r"dist/(greenhorn-[^\[']+\.whl)\[gevent\]", text)
    tree = tmp_path / "greenhorn"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    (command,) = [c for _, c, _ in documented() if kind(c) == "wheel"]
    proc = subprocess.run(
        [sys.executable, "-m", *shlex.split(command)],
        cwd=tree,
        env=base_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel = tree / "dist" / wheel_name
    assert wheel.is_file(), sorted(os.listdir(tree / "dist"))
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
    for extra in ("gevent", "eventlet", "uvloop"):
        assert f"Provides-Extra: {extra}" in metadata


def test_logging_page_worker_signal_lines(greenhorn):
    """docs/logging.md: a worker that dies of a signal is reported ``was sent SIG...!``,
    and one sent SIGTERM or SIGINT directly stops gracefully ("Worker exited")."""
    page = (ROOT / "docs" / "logging.md").read_text()
    assert "`WARNING Worker (pid:N) was sent SIGSEGV!`" in page
    assert "was sent SIGTERM!" not in page
    server = greenhorn("-w", "3", "hello:app")
    term, intr, segv = server.wait_workers(3)
    os.kill(term, signal.SIGTERM)
    os.kill(intr, signal.SIGINT)
    os.kill(segv, signal.SIGSEGV)
    server.wait_for_log(rf"Worker \(pid:{segv}\) was sent SIGSEGV!")
    server.wait_for_log(rf"Worker exited \(pid: {term}\)")
    server.wait_for_log(rf"Worker exited \(pid: {intr}\)")
    wait_until(
        lambda: len([p for p in children(server.pid) if p not in (term, intr, segv)]) == 3, 15
    )
    assert "was sent SIGTERM" not in server.log and "was sent SIGINT" not in server.log
