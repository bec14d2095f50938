"""``--worker-tmp-dir`` removed under a running server: the master recreates it (or makes
the heartbeat files elsewhere) and keeps serving, with one error line, instead of dying at
its next spawn with a traceback (as it did, and as gunicorn does)."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import wait_until

pytestmark = pytest.mark.e2e


def test_a_removed_worker_tmp_dir_is_recreated_or_replaced(greenhorn, tmp_path):
    beats = tmp_path / "beats"
    beats.mkdir()
    s = greenhorn("hello:app", "-w", "2", "--worker-tmp-dir", str(beats))
    workers = set(s.wait_workers(2))

    def replace_a_worker() -> None:
        nonlocal workers
        os.kill(sorted(workers)[0], signal.SIGKILL)
        wait_until(
            lambda: len(set(s.worker_pids()) - workers) == 1 and len(s.worker_pids()) == 2,
            15,
            what=f"a worker replaced\n{s.log[-2000:]}",
        )
        workers = set(s.worker_pids())
        assert s.get("/").status_code == 200

    beats.rmdir()  # the heartbeat files are unlinked at once: the directory is empty
    replace_a_worker()
    assert beats.is_dir(), "created again"
    assert s.log.count("was removed; created it again") == 1

    beats.rmdir()
    beats.write_text("not a directory any more")
    replace_a_worker()
    replace_a_worker()
    assert s.log.count(f"worker_tmp_dir {beats} is unusable") == 1, "one line, not one per spawn"

    beats.unlink()
    beats.mkdir()
    replace_a_worker()
    assert f"worker_tmp_dir {beats} works again" in s.log
    assert s.proc.poll() is None and "Traceback" not in s.log
    assert s.stop() == 0
