"""The master's table of live workers: who they are, what was sent to them, how they booted.

Why a module of its own: every part of the master asks the same questions about its
workers (which belong to the current generation, have they all booted, whom did we send
SIGKILL), and each answer must be given in one place so that spawning, reaping, scaling and
the hand-over never disagree. The arbiter's ``WORKERS`` (gunicorn's name, read by hooks) is
this table's dict.

Rules:
- A worker enters when it is forked (``add``) and leaves when it is reaped (``remove``);
  nothing else removes one, except a ``kill`` that finds the process already gone.
- What was sent to a worker is recorded here (``killed``: SIGKILL from us), so an exit by
  SIGKILL that we did not send can be told apart ("Perhaps out of memory?").
- ``booted`` remembers every worker whose scoreboard said it had booted, also after the
  flag is gone: how a worker that exits with a boot-error status after it booted is told
  apart from one that never booted is decided from here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from greenhorn.ipc.scoreboard import BOOTED, DRAIN, DRAIN_FINAL, RELOAD

if TYPE_CHECKING:
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.base import Worker

__all__ = ["WorkerTable"]


class WorkerTable:
    """Live workers by pid, and the master's record of them."""

    def __init__(self) -> None:
        self.workers: dict[int, Worker] = {}
        self.killed: set[int] = set()  # pids we sent SIGKILL
        self.booted: set[int] = set()  # pids whose scoreboard said "booted"
        self.spawned = 0  # workers forked so far: the next one's age
        self._counted = -1  # the last worker count sent to statsd

    def __len__(self) -> int:
        return len(self.workers)

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self.workers.values()))

    def __contains__(self, pid: object) -> bool:
        return pid in self.workers

    def get(self, pid: int) -> Worker | None:
        return self.workers.get(pid)

    # -- coming and going --------------------------------------------------------------------

    def next_age(self) -> int:
        """The age of the worker about to be forked (spawn order: lower is older)."""
        self.spawned += 1
        return self.spawned

    def add(self, worker: Worker) -> None:
        """A worker was forked (``worker.pid`` is its pid)."""
        self.workers[int(worker.pid)] = worker

    def remove(self, pid: int) -> Worker | None:
        """A child was reaped: its worker, if it was one; the table forgets it."""
        worker = self.workers.pop(pid, None)
        if worker is not None:
            self.killed.discard(pid)
            self.booted.discard(pid)
        return worker

    # -- what the master sends ---------------------------------------------------------------

    def kill(self, pid: int, sig: int) -> None:
        """Send ``sig`` to one worker (recording a SIGKILL); forget it if it is gone."""
        try:
            os.kill(pid, sig)
            if sig == signal.SIGKILL:
                self.killed.add(pid)
        except ProcessLookupError:
            self.workers.pop(pid, None)

    def kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            self.kill(pid, sig)

    def retire(self, worker: Worker, reason: str) -> None:
        """Ask a worker to finish its in-flight requests and exit."""
        worker.retire_reason = reason
        self.kill(int(worker.pid), signal.SIGTERM)

    def drain(self, final: bool) -> None:
        """Before a full stop: each worker accepts what the kernel queued, then closes.
        ``final``: no other master shares the sockets, so the workers also stop the port
        from taking new connections before their last accept (``Worker.close_listeners``)."""
        for worker in self.workers.values():
            worker.tmp.board.counters[DRAIN] = DRAIN_FINAL if final else 1

    # -- questions ---------------------------------------------------------------------------

    def of_generation(self, generation: int) -> list[Worker]:
        return [w for w in self.workers.values() if w.generation == generation]

    def note_boots(self) -> None:
        """Remember which workers have said (on their scoreboard) that they booted."""
        for pid, worker in self.workers.items():
            if pid not in self.booted and worker.tmp.board.counters[BOOTED]:
                self.booted.add(pid)

    def has_booted(self, pid: int) -> bool:
        """Had worker ``pid`` finished booting? Asked when it is reaped, before ``remove``:
        its scoreboard is still mapped, so a worker that booted and exited within one
        loop of the master (before ``note_boots`` saw it) counts as booted too."""
        if pid in self.booted:
            return True
        worker = self.workers.get(pid)
        return worker is not None and bool(worker.tmp.board.counters[BOOTED])

    def all_booted(self, workers: list[Worker]) -> bool:
        return all(w.tmp.board.counters[BOOTED] for w in workers)

    def take_reload_requests(self) -> list[Worker]:
        """Workers whose ``--reload`` watcher asked for a reload; the requests are cleared."""
        asked = [w for w in self.workers.values() if w.tmp.board.counters[RELOAD]]
        for worker in asked:
            worker.tmp.board.counters[RELOAD] = 0
        return asked

    def report_count(self, log: Logger) -> None:
        """The ``gunicorn.workers`` gauge, sent when the count changed."""
        alive = len(self.workers)
        if alive != self._counted:
            self._counted = alive
            log.gauge("gunicorn.workers", alive)
