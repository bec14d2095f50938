"""--reload end to end: an edited module is served by a new generation of workers, a syntax
error is logged and changes nothing, the fix reloads; --reload-extra-file reloads too.

Each test writes its own application into tmp_path (the server's working directory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_until

APP = """\
import os

TEXT = {text!r}


def app(environ, start_response):
    body = (TEXT + " " + str(os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

EXTRA_APP = """\
import os

with open(os.path.join(os.path.dirname(__file__), "greeting.txt")) as f:
    TEXT = f.read().strip()


def app(environ, start_response):
    body = TEXT.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def text(server: Any) -> str:
    r = server.get("/", timeout=5)
    assert r.status_code == 200
    return r.text


def served(server: Any, expected: str, timeout: float = 20.0) -> str:
    def check() -> str | None:
        body = text(server)
        return body if body.startswith(expected + " ") or body == expected else None

    return wait_until(check, timeout, every=0.1, what=f"{expected!r} served\n{server.log[-2000:]}")  # type: ignore[return-value]


@pytest.mark.parametrize("engine", ["poll", "inotify"])
def test_reload_on_change_keeps_serving_through_a_syntax_error(greenhorn, tmp_path, engine):
    module = tmp_path / "reloadme.py"
    module.write_text(APP.format(text="first"))
    s = greenhorn(
        "--pythonpath", str(tmp_path), "--reload", "--reload-engine", engine, "-w", "1",
        "reloadme:app",
    )  # fmt: skip
    first = served(s, "first")
    old_pid = int(first.rsplit(" ", 1)[1])
    assert s.worker_pids() == [old_pid]

    module.write_text(APP.format(text="second version"))
    second = served(s, "second version")
    new_pid = int(second.rsplit(" ", 1)[1])
    assert new_pid != old_pid
    s.wait_for_log(rf"Worker reloading: {re.escape(str(module))} modified")
    s.wait_workers(1, exclude={old_pid})

    module.write_text(APP.format(text="broken") + "\ndef oops(:\n")
    line = s.wait_for_log(rf"\[ERROR\] Syntax error in {re.escape(str(module))}:(\d+): ")
    assert int(line[0]) == APP.count("\n") + 2
    assert text(s) == f"second version {new_pid}"
    assert s.worker_pids() == [new_pid]

    module.write_text(APP.format(text="third"))
    third = served(s, "third")
    assert int(third.rsplit(" ", 1)[1]) not in (old_pid, new_pid)
    assert "Traceback" not in s.log
    assert s.stop() == 0


@pytest.mark.parametrize("worker_class", ["gevent", "eventlet"])
def test_reload_under_green_workers(greenhorn, tmp_path, worker_class):
    """The watcher is a greenlet there: it must not block the hub, and must still see."""
    pytest.importorskip(worker_class)
    module = tmp_path / "greenreload.py"
    module.write_text(APP.format(text="before"))
    s = greenhorn(
        "--pythonpath", str(tmp_path), "--reload", "--reload-engine", "inotify", "-w", "1",
        "-k", worker_class, "greenreload:app",
    )  # fmt: skip
    old = served(s, "before")
    module.write_text(APP.format(text="after the change"))
    new = served(s, "after the change")
    assert new.rsplit(" ", 1)[1] != old.rsplit(" ", 1)[1]


def test_reload_extra_file(greenhorn, tmp_path):
    (tmp_path / "extraapp.py").write_text(EXTRA_APP)
    greeting = tmp_path / "greeting.txt"
    greeting.write_text("hello\n")
    s = greenhorn(
        "--pythonpath", str(tmp_path), "--reload", "--reload-extra-file", str(greeting),
        "-w", "1", "extraapp:app",
    )  # fmt: skip
    assert text(s) == "hello"
    pids = set(s.worker_pids())
    greeting.write_text("bonjour tout le monde\n")
    served(s, "bonjour tout le monde")
    s.wait_for_log(rf"Worker reloading: {re.escape(str(greeting))} modified")
    assert not pids & set(s.worker_pids())


def test_reload_engine_inotify_unavailable_is_a_clear_error(greenhorn, tmp_path: Path):
    """Where inotify cannot be set up the worker fails to boot with the reason logged."""
    (tmp_path / "extraapp.py").write_text(EXTRA_APP)
    (tmp_path / "greeting.txt").write_text("hi\n")
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes\n"
        "def _no_libc(*a, **k):\n"
        "    raise OSError('libc hidden by the test')\n"
        "ctypes.CDLL = _no_libc\n"
    )
    s = greenhorn(
        "--pythonpath", str(tmp_path), "--reload", "--reload-engine", "inotify",
        "extraapp:app", wait=False, env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert s.proc.wait(30) != 0
    assert (
        "[ERROR] Cannot watch for code changes (--reload): inotify is not available on this "
        "platform: libc hidden by the test" in s.log
    )
    assert "Traceback" not in s.log
