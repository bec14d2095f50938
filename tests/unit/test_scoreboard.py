"""The scoreboard a worker writes and the master reads (heartbeat.py), through two mappings
of the same file, as after fork: what the master sees, and when."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

from greenhorn.ipc.scoreboard import (
    BYTES_OUT,
    DURATION_SUM,
    HIST_BASE,
    Scoreboard,
    WorkerTmp,
    system_tmp_dir,
    unlinked_file,
)


@pytest.fixture
def boards():
    tmp = WorkerTmp(None, slots=2)
    size = os.fstat(tmp.fileno()).st_size
    master = Scoreboard(mmap.mmap(tmp.fileno(), size, mmap.MAP_SHARED), 2)
    yield tmp.board, master
    master.close()
    tmp.close()


def test_direct_counters_are_visible_at_once(boards):
    worker, master = boards
    worker.start(0, "GET", "/a", 5.0)
    assert master.current() == [(0, 5.0, "GET /a")] and master.in_flight() == 1
    worker.finish(0, 404, 0.002, 120)
    assert master.in_flight() == 0 and master.current() == []
    assert master.requests() == 1 and master.counters[4] == 1
    assert master.counters[BYTES_OUT] == 120 and master.counters[HIST_BASE] == 1
    assert master.doubles[DURATION_SUM] == pytest.approx(0.002)


def test_buffered_counters_reach_the_master_on_flush(boards):
    worker, master = boards
    worker.buffer()
    for status in (200, 200, 500):
        worker.start(1, "POST", "/x", 7.0)
        assert master.current() == [(1, 7.0, "POST /x")]  # slots stay live
        worker.finish(1, status, 0.02, 10)
        assert master.in_flight() == 0
    assert master.requests() == 0  # not yet
    worker.flush()
    assert master.requests() == 3
    assert (master.counters[2], master.counters[5], master.counters[BYTES_OUT]) == (2, 1, 30)
    assert master.counters[HIST_BASE + 2] == 3  # 0.02 s: the <= 0.025 bucket
    assert master.doubles[DURATION_SUM] == pytest.approx(0.06)
    worker.flush()  # nothing new: nothing added twice
    assert master.requests() == 3
    worker.finish(1, 204, 0.001, 0)
    worker.flush()
    assert master.requests() == 4


def test_slot_line_changes_with_the_request(boards):
    worker, master = boards
    worker.start(0, "GET", "/a-much-longer-path?with=query", 1.0)
    worker.finish(0, 200, 0.001, 1)
    worker.start(0, "GET", "/a", 2.0)  # shorter: the old line must not show through
    assert master.current() == [(0, 2.0, "GET /a")]
    worker.finish(0, 200, 0.001, 1)
    worker.start(0, "GET", "/a", 3.0)  # the same line again: only the start time changes
    assert master.oldest_request() == (3.0, "GET /a")
    worker.start(1, "PUT", "/b", 2.5)
    assert master.oldest_request() == (2.5, "PUT /b")


# -- the heartbeat file itself (heartbeat.unlinked_file) -------------------------------------


def _check_private_unlinked(fd: int, directory: str) -> None:
    try:
        st = os.fstat(fd)
        assert st.st_nlink == 0, "the file must have no name left"
        assert st.st_mode & 0o777 == 0o600
        assert not [n for n in os.listdir(directory) if n.startswith("greenhorn-")]
        os.utime(fd)  # the heartbeat: touching it by descriptor works without a name
    finally:
        os.close(fd)


def test_the_heartbeat_file_is_private_and_nameless(tmp_path):
    _check_private_unlinked(unlinked_file(str(tmp_path)), str(tmp_path))


def test_without_o_tmpfile_a_random_name_is_created_and_removed(tmp_path, monkeypatch):
    real_open = os.open
    opened = []

    def no_tmpfile(path, flags, mode=0o777):
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "not here")
        opened.append(path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_tmpfile)
    _check_private_unlinked(unlinked_file(str(tmp_path)), str(tmp_path))
    assert len(opened) == 1 and os.path.basename(opened[0]).startswith("greenhorn-")


def test_a_missing_tmp_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        unlinked_file(str(tmp_path / "absent"))


def test_the_system_tmp_dir_follows_tmpdir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert system_tmp_dir() == str(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "absent"))
    monkeypatch.delenv("TEMP", raising=False)
    monkeypatch.delenv("TMP", raising=False)
    assert system_tmp_dir() == "/tmp"  # the next candidate, as tempfile.gettempdir()
