"""The scoreboard a worker writes and the master reads (heartbeat.py), through two mappings
of the same file, as after fork: what the master sees, and when."""

from __future__ import annotations

import mmap
import os

import pytest

from greenhorn.heartbeat import BYTES_OUT, DURATION_SUM, HIST_BASE, Scoreboard, WorkerTmp


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
