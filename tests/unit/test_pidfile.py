"""greenhorn.master.pidfile: atomic create, refusal on a live pid, USR2 rename, unlink-if-ours."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenhorn.master.pidfile import Pidfile, PidfileError, read_pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a live process that is not us (a sleeping child), stopped afterwards."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait(timeout=10)


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    return child.pid


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name not in keep)


def test_create_writes_pid_atomically(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    pidfile = Pidfile(str(path))
    pidfile.create(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert pidfile.pid == os.getpid()
    assert _leftovers(tmp_path, {"app.pid"}) == []  # no temp file left behind


def test_create_replaces_stale_file(tmp_path: Path, dead_pid: int) -> None:
    path = tmp_path / "app.pid"
    path.write_text(f"{dead_pid}\n")
    pidfile = Pidfile(str(path))
    pidfile.create(os.getpid())
    assert read_pid(str(path)) == os.getpid()


@pytest.mark.parametrize("content", ["", "garbage\n", "-5\n", "0\n", "12 34\n"])
def test_create_replaces_garbage(tmp_path: Path, content: str) -> None:
    path = tmp_path / "app.pid"
    path.write_text(content)
    Pidfile(str(path)).create(os.getpid())
    assert read_pid(str(path)) == os.getpid()


def test_create_refuses_when_another_live_process_holds_it(tmp_path: Path, live_pid: int) -> None:
    path = tmp_path / "app.pid"
    path.write_text(f"{live_pid}\n")
    pidfile = Pidfile(str(path))
    with pytest.raises(PidfileError) as info:
        pidfile.create(os.getpid())
    assert str(info.value) == f"Already running on PID {live_pid} (or pid file '{path}' is stale)"
    assert path.read_text() == f"{live_pid}\n"
    assert _leftovers(tmp_path, {"app.pid"}) == []


def test_create_over_our_own_pid(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    path.write_text(f"{os.getpid()}\n")
    Pidfile(str(path)).create(os.getpid())
    assert read_pid(str(path)) == os.getpid()


def test_create_in_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "app.pid"
    with pytest.raises(PidfileError) as info:
        Pidfile(str(path)).create(os.getpid())
    assert str(info.value) == f"{path.parent} doesn't exist. Can't create pidfile."


def test_relative_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    pidfile = Pidfile("rel.pid")
    pidfile.create(os.getpid())
    assert read_pid(str(tmp_path / "rel.pid")) == os.getpid()
    assert pidfile.unlink() is True


def test_unlink_only_if_ours(tmp_path: Path, live_pid: int) -> None:
    path = tmp_path / "app.pid"
    pidfile = Pidfile(str(path))
    assert pidfile.unlink() is False  # nothing created yet
    pidfile.create(os.getpid())
    path.write_text(f"{live_pid}\n")  # another master took the file over
    assert pidfile.unlink() is False
    assert path.read_text() == f"{live_pid}\n"
    path.write_text(f"{os.getpid()}\n")
    assert pidfile.unlink() is True
    assert not path.exists()
    assert pidfile.unlink() is False  # already gone: no error


def test_usr2_rename_dot2_to_main(tmp_path: Path, dead_pid: int) -> None:
    main = tmp_path / "app.pid"
    main.write_text(f"{dead_pid}\n")  # the old master's file, left behind after it exited
    new_master = Pidfile(str(main) + ".2")
    new_master.create(os.getpid())
    new_master.rename(str(main))
    assert new_master.path == str(main)
    assert read_pid(str(main)) == os.getpid()
    assert not (tmp_path / "app.pid.2").exists()
    assert _leftovers(tmp_path, {"app.pid"}) == []


def test_rename_refuses_to_clobber_a_live_master(tmp_path: Path, live_pid: int) -> None:
    main = tmp_path / "app.pid"
    main.write_text(f"{live_pid}\n")
    new_master = Pidfile(str(main) + ".2")
    new_master.create(os.getpid())
    with pytest.raises(PidfileError, match=f"Already running on PID {live_pid}"):
        new_master.rename(str(main))
    assert read_pid(str(main)) == live_pid
    assert read_pid(str(main) + ".2") == os.getpid()
    assert new_master.path == str(main) + ".2"


def test_rename_when_our_file_vanished(tmp_path: Path) -> None:
    pidfile = Pidfile(str(tmp_path / "a.pid"))
    pidfile.create(os.getpid())
    os.unlink(tmp_path / "a.pid")
    (tmp_path / "sub").mkdir()
    pidfile.rename(str(tmp_path / "sub" / "b.pid"))
    assert read_pid(str(tmp_path / "sub" / "b.pid")) == os.getpid()
    assert pidfile.unlink() is True


def test_read_pid_missing(tmp_path: Path) -> None:
    assert read_pid(str(tmp_path / "none")) is None
