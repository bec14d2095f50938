"""greenhorn.master.handover (USR2 side): when a new master may call itself promoted, and the
pid file it then takes over from an old master that exited without removing it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from greenhorn.ipc.signals import is_alive, running
from greenhorn.master.handover import MASTER_PID_ENV, HandOver
from greenhorn.master.pidfile import Pidfile, read_pid


def zombie() -> subprocess.Popen[bytes]:
    """A child that has exited but is not reaped yet (what an old master is to its parent
    between its exit and the wait)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while running(child.pid):
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    return child


def test_no_old_master_no_promotion() -> None:
    assert HandOver([], "/", environ={}).promoted() == 0
    assert not HandOver([], "/", environ={MASTER_PID_ENV: "garbage"}).upgrading


def test_not_promoted_while_the_old_master_runs_even_if_it_is_not_our_parent() -> None:
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        handover = HandOver([], "/", environ={MASTER_PID_ENV: str(old.pid)})
        assert handover.upgrading and os.getppid() != old.pid
        assert handover.promoted() == 0, "its parent pid differs, but the old master runs"
        assert handover.upgrading
    finally:
        old.kill()
        old.wait(10)
    assert handover.promoted() == old.pid
    assert handover.promoted() == 0 and not handover.upgrading, "only once"


def test_an_exited_old_master_counts_as_gone_before_it_is_reaped(tmp_path: Path) -> None:
    old = zombie()
    try:
        assert is_alive(old.pid) and not running(old.pid)
        handover = HandOver([], "/", environ={MASTER_PID_ENV: str(old.pid)})
        assert handover.promoted() == old.pid
        # the old master was killed before it could remove app.pid: take it over anyway
        main = tmp_path / "app.pid"
        main.write_text(f"{old.pid}\n")
        new_master = Pidfile(str(main) + ".2")
        new_master.create(os.getpid())
        new_master.rename(str(main), replacing=old.pid)
        assert read_pid(str(main)) == os.getpid() and not (tmp_path / "app.pid.2").exists()
    finally:
        old.wait(10)


def test_clear_environment_hides_the_old_master_from_workers() -> None:
    environ = {MASTER_PID_ENV: "123", "OTHER": "x"}
    handover = HandOver([], "/", environ=environ)
    handover.clear_environment(environ)
    assert environ == {"OTHER": "x"} and handover.parent_pid == 123
