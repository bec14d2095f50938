"""greenhorn.ctl: where the socket lives, the control server (driven by a select loop like the
master's) and the `greenhorn ctl` client against a fake master served from a thread."""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenhorn import cli, ctl
from greenhorn.master import endpoints
from greenhorn.master.control import ControlServer, answer, default_socket_path
from greenhorn.master.listeners import BindError


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory (UNIX socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ghctl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, sockdir: Path, tmp_path: Path) -> Path:
    """Default locations point into ``sockdir``: nothing outside the test is found or made.
    (``tmp_path`` first: pytest picks its base directory from tempfile once, before TMPDIR
    changes.)"""
    runtime = sockdir / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("TMPDIR", str(sockdir / "tmp"))
    (sockdir / "tmp").mkdir()
    return runtime


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


# -- default_socket_path --------------------------------------------------------------------


def test_default_path_prefers_a_writable_xdg_runtime_dir(isolated: Path) -> None:
    assert default_socket_path(1234) == str(isolated / "greenhorn-1234.ctl")


@pytest.mark.parametrize("xdg", [None, "", "relative/dir", "/nonexistent/dir"])
def test_default_path_falls_back_to_a_private_tmp_dir(
    monkeypatch: pytest.MonkeyPatch, sockdir: Path, xdg: str | None
) -> None:
    if xdg is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    monkeypatch.setenv("TMPDIR", str(sockdir))
    directory = sockdir / f"greenhorn-{os.geteuid()}"
    assert default_socket_path(77, create=False) == str(directory / "greenhorn-77.ctl")
    assert not directory.exists()
    assert default_socket_path(77) == str(directory / "greenhorn-77.ctl")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_fallback_dir_is_made_private_or_refused(
    monkeypatch: pytest.MonkeyPatch, sockdir: Path
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(sockdir))
    directory = sockdir / f"greenhorn-{os.geteuid()}"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o777)
    default_socket_path(5)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    directory.rmdir()
    (sockdir / "elsewhere").mkdir()
    directory.symlink_to(sockdir / "elsewhere")
    with pytest.raises(PermissionError):
        default_socket_path(5)


# -- answer (the protocol, pure) -------------------------------------------------------------


def decode(reply: bytes | None) -> dict[str, Any]:
    assert reply is not None and reply.endswith(b"\n") and reply.count(b"\n") == 1
    return json.loads(reply, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


def test_answer_dispatches_and_wraps_the_result() -> None:
    calls: list[tuple[str, list[str]]] = []

    def dispatch(command: str, args: list[str]) -> dict[str, Any]:
        calls.append((command, args))
        return {"workers_target": 3, "buckets": [0.5, math.inf], "nan": math.nan}

    reply = decode(answer(b'{"command": "add", "args": ["2", 3]}\n', False, dispatch))
    assert calls == [("add", ["2", "3"])]
    assert reply == {
        "ok": True,
        "data": {"workers_target": 3, "buckets": [0.5, "+Inf"], "nan": "NaN"},
    }


def test_answer_reports_errors_as_one_line() -> None:
    def dispatch(command: str, args: list[str]) -> dict[str, Any]:
        if command == "bad":
            raise ValueError("unknown command 'bad'")
        raise RuntimeError("boom\nsecond line")

    assert decode(answer(b'{"command": "bad"}\n', False, dispatch)) == {
        "ok": False,
        "error": "unknown command 'bad'",
    }
    error = decode(answer(b'{"command": "x"}\n', False, dispatch))["error"]
    assert error == "internal error: RuntimeError: boom second line"
    for bad in (b"nope\n", b"[1]\n", b'{"args": []}\n', b'{"command": "a", "args": "x"}\n',
                b'{"command": "a", "args": [{}]}\n', b'{"command": 1}\n'):  # fmt: skip
        reply = decode(answer(bad, False, dispatch))
        assert reply["ok"] is False and reply["error"].startswith("malformed request"), bad


def test_answer_waits_for_the_newline_unless_the_peer_closed() -> None:
    def dispatch(command: str, args: list[str]) -> dict[str, Any]:
        return {"c": command}

    assert answer(b'{"command": "workers"}', False, dispatch) is None
    assert answer(b"", True, dispatch) is None
    assert decode(answer(b'{"command": "workers"}', True, dispatch))["data"] == {"c": "workers"}


# -- ControlServer ----------------------------------------------------------------------------


def pump(server: Any, dispatch: Any, until: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out pumping the control server"
        r, w, _ = select.select(server.fds(), server.wfds(), [], 0.02)
        server.dispatch = dispatch
        for fd in [*r, *w]:
            server.handle(fd)
        server.expire(time.monotonic())


def echo(command: str, args: list[str]) -> dict[str, Any]:
    if command == "fail":
        raise ValueError("no such thing")
    return {"command": command, "args": args}


def raw_exchange(server: ControlServer, payload: bytes) -> bytes:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(server.path)
    client.sendall(payload)
    client.setblocking(False)
    got = bytearray()
    closed = []

    def done() -> bool:
        while not closed:
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                chunk = b""
            got.extend(chunk)
            if not chunk:
                closed.append(True)
        return True

    pump(server, echo, done)
    client.close()
    return bytes(got)


def test_control_server_answers_and_closes(sockdir: Path) -> None:
    server = ControlServer(str(sockdir / "c.sock"), echo, 0o600)
    try:
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.stat(server.path).st_mode)
        reply = raw_exchange(server, b'{"command": "status", "args": []}\n')
        assert json.loads(reply) == {"ok": True, "data": {"command": "status", "args": []}}
        reply = raw_exchange(server, b'{"command": "fail"}\n')
        assert json.loads(reply) == {"ok": False, "error": "no such thing"}
        assert server.clients == {}
    finally:
        server.close()
    assert not os.path.exists(server.path)


def test_control_socket_mode_is_applied(sockdir: Path) -> None:
    old = os.umask(0o077)
    try:
        server = ControlServer(str(sockdir / "g.sock"), echo, 0o660)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660
    server.close()
    assert os.umask(old) == old  # the umask was restored


def test_silent_and_flooding_clients_are_cut_off(sockdir: Path) -> None:
    server = ControlServer(str(sockdir / "c.sock"), echo, 0o600)
    try:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(server.path)
        pump(server, echo, lambda: len(server.clients) == 1)
        server.expire(time.monotonic() + endpoints.TIMEOUT + 0.1)
        assert server.clients == {}
        silent.settimeout(5)
        assert silent.recv(10) == b""
        silent.close()

        outcome: dict[str, Any] = {}

        def flood() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(server.path)
                try:
                    s.sendall(b"x" * (1 << 20))
                    outcome["reply"] = s.recv(65536)
                except OSError as exc:
                    outcome["error"] = exc

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        pump(server, echo, lambda: bool(outcome) or not thread.is_alive())
        thread.join(10)
        assert "error" in outcome or json.loads(outcome["reply"])["error"] == "request too large"
        assert server.clients == {}
    finally:
        server.close()


def test_stale_socket_file_is_replaced(sockdir: Path) -> None:
    path = str(sockdir / "c.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    server = ControlServer(path, echo, 0o600)
    assert json.loads(raw_exchange(server, b'{"command": "x"}\n'))["ok"] is True
    server.close()


def test_live_socket_is_not_stolen_unless_taking_over(sockdir: Path) -> None:
    path = str(sockdir / "c.sock")
    first = ControlServer(path, echo, 0o600)
    try:
        with pytest.raises(BindError, match="in use by another running master"):
            ControlServer(path, echo, 0o600)
        second = ControlServer(path, echo, 0o600, takeover=True)
        first.close()  # the name is the successor's now: first must not unlink it
        assert os.path.exists(path)
        assert json.loads(raw_exchange(second, b'{"command": "x"}\n'))["ok"] is True
        second.close()
        assert not os.path.exists(path)
    finally:
        first.close()


def test_a_regular_file_is_never_removed(sockdir: Path) -> None:
    path = sockdir / "c.sock"
    path.write_text("precious")
    with pytest.raises(BindError, match="not a socket"):
        ControlServer(str(path), echo, 0o600)
    assert path.read_text() == "precious"


def test_close_in_child_leaves_the_file(sockdir: Path) -> None:
    server = ControlServer(str(sockdir / "c.sock"), echo, 0o600)
    server.close_in_child()
    assert server.fds() == []
    assert os.path.exists(server.path)
    server.close()  # the parent's close is now a no-op for the file: it was given up
    os.unlink(server.path)


def test_unbindable_path_is_a_bind_error(sockdir: Path) -> None:
    with pytest.raises(BindError, match="Cannot open control socket"):
        ControlServer(str(sockdir / "missing-dir" / "c.sock"), echo, 0o600)
    with pytest.raises(BindError):
        ControlServer("/tmp/" + "x" * 200, echo, 0o600)


# -- the client, against a fake master in a thread --------------------------------------------


def fake_status(pids: tuple[int, ...] = (4242, 4343)) -> dict[str, Any]:
    workers = [
        {"pid": pids[0], "age": 1, "generation": 0, "state": "busy", "booted": True,
         "requests": 17, "in_flight": 2, "rss": 52428800, "uptime": 93.6,
         "current": [{"request": "GET /fast", "seconds": 0.2},
                     {"request": "POST /slow?x=1", "seconds": 12.34}],
         "status": {"1xx": 0, "2xx": 17, "3xx": 0, "4xx": 0, "5xx": 0},
         "rejected": 0, "bytes_out": 100},
        {"pid": pids[1], "age": 2, "generation": 0, "state": "idle", "booted": True,
         "requests": 3, "in_flight": 0, "rss": None, "uptime": 5.2, "current": [],
         "status": {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 0},
         "rejected": 1, "bytes_out": 10},
    ]  # fmt: skip
    return {
        "master": {"pid": 4000, "version": "0.1.0", "uptime": 100.0, "state": "running",
                   "ready": True, "workers_target": 2, "generation": 0,
                   "worker_class": "sync", "listeners": ["http://127.0.0.1:8000"]},
        "workers": workers,
        "totals": {"requests": 20, "status": {"1xx": 0, "2xx": 19, "3xx": 0, "4xx": 1, "5xx": 0},
                   "rejected": 1, "bytes_out": 110, "histogram": [10, 10] + [0] * 10,
                   "duration_sum": 0.5},
        "buckets": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf],
        "restarts": {"max-requests": 2},
        "backlog": {"http://127.0.0.1:8000": 0, "unix:/x": None},
    }  # fmt: skip


class FakeMaster:
    """A ControlServer answered from a thread, recording the commands it gets."""

    def __init__(self, path: str) -> None:
        self.server = ControlServer(path, lambda c, a: self.dispatch(c, a), 0o600)
        self.calls: list[tuple[str, list[str]]] = []
        self.target = 2
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def dispatch(self, command: str, args: list[str]) -> dict[str, Any]:
        self.calls.append((command, args))
        if command in ("workers", "status"):
            return fake_status()
        if command in ("add", "remove"):
            self.target += int(args[0]) * (1 if command == "add" else -1)
            return {"workers_target": self.target}
        if command in ("reload", "reopen"):
            return {}
        raise ValueError(f"unknown command {command!r}")

    def run(self) -> None:
        while not self.stop.is_set():
            r, w, _ = select.select(self.server.fds(), self.server.wfds(), [], 0.02)
            for fd in [*r, *w]:
                self.server.handle(fd)
            self.server.expire(time.monotonic())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def master(isolated: Path) -> Iterator[FakeMaster]:
    """A fake master whose socket is at the default path for this process's pid."""
    fake = FakeMaster(default_socket_path(os.getpid()))
    yield fake
    fake.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ctl.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_workers_table(master: FakeMaster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--control-socket", master.server.path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("master 4000: running, ready; greenhorn 0.1.0, sync workers")
    header = lines[1].split()
    assert header[:5] == ["PID", "STATE", "REQUESTS", "RSS", "(MiB)"]
    assert "CURRENT REQUEST" in lines[1]
    busy, idle = lines[2].split(), lines[3].split()
    assert busy[:5] == ["4242", "busy", "17", "50.0", "94"]
    assert lines[2].endswith("POST /slow?x=1 (12.3s) +1 more")
    assert idle == ["4343", "idle", "3", "-", "5", "-"]
    assert master.calls == [("workers", [])]
    # columns line up
    assert lines[1].index("REQUESTS") + len("REQUESTS") == lines[2].index("17") + 2


def test_pid_file_locates_the_default_socket(
    master: FakeMaster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    code, out, _ = run(capsys, "--pid", str(pidfile), "workers")
    assert code == 0 and "4242" in out and "4343" in out
    code, out, _ = run(capsys, "-p", str(os.getpid()))  # a bare pid works too
    assert code == 0 and "4242" in out


def test_only_live_master_is_discovered(
    master: FakeMaster, capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(isolated / f"greenhorn-{dead_pid()}.ctl"))
    stale.close()
    code, out, err = run(capsys)
    assert (code, err) == (0, "") and "4242" in out


def test_json_prints_the_raw_data(master: FakeMaster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-s", master.server.path, "--json", "stats")
    assert code == 0
    data = json.loads(out)
    assert data["workers"][0]["pid"] == 4242
    assert data["buckets"][-1] == "+Inf"
    assert master.calls == [("status", [])]


def test_stats(master: FakeMaster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-s", master.server.path, "stats")
    assert code == 0
    rows = {line.split("  ")[0]: line.split("  ")[-1].strip() for line in out.splitlines()}
    assert rows["requests"] == "20"
    assert rows["by status"] == "1xx 0, 2xx 19, 3xx 0, 4xx 1, 5xx 0"
    assert rows["mean time"] == "25.0 ms"
    assert rows["in flight"] == "2"
    assert rows["workers"] == "2 of 2, busy 1, idle 1"
    assert rows["restarts"] == "max-requests 2"
    assert rows["accept queue"] == "http://127.0.0.1:8000 0, unix:/x ?"


def test_gunicornc_phrases() -> None:
    assert ctl.parse_words([]) == ("workers", [])
    assert ctl.parse_words(["show", "workers"]) == ("workers", [])
    assert ctl.parse_words(["Show", "Stats"]) == ("status", [])
    assert ctl.parse_words(["worker", "add"]) == ("add", ["1"])
    assert ctl.parse_words(["worker", "remove", "3"]) == ("remove", ["3"])
    assert ctl.parse_words(["show", "config"]) == ("config", [])
    assert ctl.parse_words(["show", "listeners"]) == ("listeners", [])
    assert ctl.parse_words(["worker", "kill", "123"]) == ("kill", ["123"])
    assert ctl.parse_words(["shutdown"]) == ("shutdown", ["graceful"])
    assert ctl.parse_words(["shutdown", "quick"]) == ("shutdown", ["quick"])


def test_add_remove_reload_reopen(master: FakeMaster, capsys: pytest.CaptureFixture[str]) -> None:
    path = master.server.path
    assert run(capsys, "-s", path, "add", "2")[:2] == (0, "add: ok, workers target is now 4\n")
    assert run(capsys, "-s", path, "remove")[:2] == (0, "remove: ok, workers target is now 3\n")
    assert run(capsys, "-s", path, "reload")[:2] == (0, "reload: ok\n")
    assert run(capsys, "-s", path, "reopen")[:2] == (0, "reopen: ok\n")
    assert master.calls == [("add", ["2"]), ("remove", ["1"]), ("reload", []), ("reopen", [])]


def test_refused_command_is_one_line_and_exit_1(
    master: FakeMaster, capsys: pytest.CaptureFixture[str]
) -> None:
    master.target = 1
    original = master.dispatch

    def refuse(command: str, args: list[str]) -> dict[str, Any]:
        raise ValueError("remove: cannot go below 1 worker")

    master.dispatch = refuse  # type: ignore[method-assign]
    try:
        code, out, err = run(capsys, "-s", master.server.path, "remove")
    finally:
        master.dispatch = original  # type: ignore[method-assign]
    assert (code, out) == (1, "")
    assert err == "greenhorn ctl: error: remove: cannot go below 1 worker\n"


def one_error_line(code: int, out: str, err: str, *needles: str) -> str:
    assert (code, out) == (1, ""), (code, out, err)
    assert err.count("\n") == 1 and err.startswith("greenhorn ctl: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_no_master_running_cases(
    isolated: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pid"
    one_error_line(*run(capsys, "--pid", str(missing)), "no master running", "not found")
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("hello\n")
    one_error_line(*run(capsys, "--pid", str(garbage)), "no master running", "holds no pid")
    dead = tmp_path / "dead.pid"
    dead.write_text(f"{dead_pid()}\n")
    one_error_line(*run(capsys, "--pid", str(dead)), "no master running", "is not running")
    alive = tmp_path / "alive.pid"
    alive.write_text(f"{os.getpid()}\n")  # alive, but nothing listens for it
    one_error_line(*run(capsys, "--pid", str(alive)), "has no control socket")
    one_error_line(*run(capsys, "-s", str(isolated / "nope.ctl")), "no master running")
    one_error_line(*run(capsys), "no master running")
    stale = isolated / "stale.ctl"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    one_error_line(*run(capsys, "-s", str(stale)), "no master running", "refused")


def test_a_master_that_never_answers_times_out(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(isolated / "mute.ctl")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(1)  # the kernel accepts the connection; nobody ever answers
    try:
        t0 = time.monotonic()
        one_error_line(*run(capsys, "-s", path, "--timeout", "0.3"), "did not answer")
        assert time.monotonic() - t0 < 5
    finally:
        mute.close()


def test_several_masters_must_be_chosen(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    fakes = [
        FakeMaster(default_socket_path(os.getpid())),
        FakeMaster(default_socket_path(child.pid)),
    ]
    try:
        one_error_line(*run(capsys), "several masters running", str(child.pid))
    finally:
        for fake in fakes:
            fake.close()
        child.kill()
        child.wait(10)


@pytest.mark.parametrize("argv", [
    ["add", "0"], ["add", "x"], ["remove", "-1"], ["reload", "3"], ["workers", "1"],
    ["frobnicate"], ["--pid", "a", "--control-socket", "b"], ["--timeout", "0"],
    ["show"], ["show", "nothing"], ["show", "config", "x"], ["worker", "kill"],
    ["worker", "kill", "x"], ["worker", "kill", "1", "2"], ["shutdown", "now"],
])  # fmt: skip
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and "usage: greenhorn ctl" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "usage: greenhorn ctl" in out


def test_cli_dispatches_ctl(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ctl", "-s", str(isolated / "nope.ctl")]) == 1
    assert capsys.readouterr().err.startswith("greenhorn ctl: error: no master running")
