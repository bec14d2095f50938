"""How many workers to run, and when to replace one: ``-w auto``, autoscaling between
``--workers-min`` and ``--workers-max``, and memory/lifetime recycling.

Why a module of its own: these are the master's slow-moving decisions (seconds, not
requests). The decisions themselves are pure functions in ``policy.py``; the ``Scaler`` here
keeps the little state they need between loop iterations (autoscale hysteresis, the one
recycle in progress, the measured per-worker memory) and applies them to the arbiter through
its verbs (``set_num_workers``, ``kill_worker``, ``retire``).

Recycling never lowers capacity below N-1: a worker over its soft memory limit or past its
lifetime gets a replacement first (one extra worker, the *surge*), and is told to finish its
current request and exit only once the replacement has booted. Only one recycle runs at a
time. The hard memory limit kills at once.
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any

from greenhorn.ipc.scoreboard import BOOTED
from greenhorn.master import policy, sizing

__all__ = ["Scaler"]

MIB = 1024 * 1024


class Scaler:
    """Scaling state for one master; ``step`` is called once per loop."""

    def __init__(self, cfg: Any, log: Any) -> None:
        self.cfg = cfg
        self.log = log
        self.state = policy.ScaleState()
        self.recycling: int | None = None  # pid being replaced
        self.surge = 0  # extra workers spawned to replace a recycled one
        self.per_worker: int | None = cfg.worker_memory * MIB if cfg.worker_memory else None
        self.memory_budget: int | None = None
        self.auto_pending = False  # -w auto waiting for the first worker's RSS

    @property
    def watches_memory(self) -> bool:
        cfg = self.cfg
        return bool(
            cfg.max_worker_memory
            or cfg.max_worker_memory_hard
            or self.auto_pending
            or (cfg.workers_max and self.per_worker is None)
            or cfg.metrics_bind
        )

    # -- sizing ------------------------------------------------------------------------------

    def initial_workers(self) -> int:
        """The first worker count. ``auto`` without ``--worker-memory`` starts one worker and
        sizes the rest once its memory is known (``measured``)."""
        cfg = self.cfg
        _, self.memory_budget = self._budget()
        if cfg.workers != "auto":
            count = max(1, int(cfg.workers))
        elif self.per_worker is None:
            self.auto_pending = True
            count = 1
        else:
            count, why = sizing.plan_workers(per_worker=self.per_worker)
            self.log.info("Auto-sizing workers: %s", why)
        if cfg.workers_min:
            count = max(count, cfg.workers_min)
        if cfg.workers_max:
            count = min(count, cfg.workers_max)
        return count

    def _budget(self) -> tuple[str, int | None]:
        memory, source = sizing.detect_memory()
        return source, memory

    def measured(self, arbiter: Any, views: list[policy.WorkerView]) -> None:
        """``-w auto``: once the first worker has booted, size from its RSS."""
        if not self.auto_pending:
            return
        booted = [v for v in views if v.booted and v.rss]
        if not booted:
            return
        self.auto_pending = False
        self.per_worker = max(v.rss or 0 for v in booted)
        count, why = sizing.plan_workers(per_worker=self.per_worker)
        self.log.info("Auto-sizing workers: %s (measured from the first worker)", why)
        if self.cfg.workers_min:
            count = max(count, self.cfg.workers_min)
        if self.cfg.workers_max:
            count = min(count, self.cfg.workers_max)
        arbiter.set_num_workers(count)

    def memory_cap(self) -> int | None:
        if self.memory_budget and self.per_worker:
            return max(1, self.memory_budget // self.per_worker)
        return None

    # -- per loop ----------------------------------------------------------------------------

    def step(self, arbiter: Any, views: list[policy.WorkerView], backlog: int) -> None:
        self.measured(arbiter, views)
        self.autoscale(arbiter, views, backlog)
        self.recycle(arbiter, views)

    def autoscale(self, arbiter: Any, views: list[policy.WorkerView], backlog: int) -> None:
        cfg = self.cfg
        if not cfg.workers_max and not cfg.workers_min:
            return
        low = cfg.workers_min or 1
        high = cfg.workers_max or max(low, arbiter.num_workers)
        cap = self.memory_cap()
        if cap is not None:
            high = max(low, min(high, cap))
        current = [v for v in views if v.generation == arbiter.generation]
        target, self.state, why = policy.autoscale(
            current, arbiter.num_workers, low, high, backlog, time.monotonic(), self.state
        )
        if target != arbiter.num_workers:
            self.log.info("Autoscaling: %d -> %d workers: %s", arbiter.num_workers, target, why)
            arbiter.set_num_workers(target)

    def recycle(self, arbiter: Any, views: list[policy.WorkerView]) -> None:
        cfg = self.cfg
        if self.recycling is not None and self._finish_recycle(arbiter):
            return  # ``views`` predates that retirement: decide again next loop
        soft = cfg.max_worker_memory * MIB if cfg.max_worker_memory else None
        hard = cfg.max_worker_memory_hard * MIB if cfg.max_worker_memory_hard else None
        if not soft and not hard and not cfg.max_worker_lifetime:
            return
        now = time.monotonic()
        for decision in policy.recycles(views, soft, hard, now, self.recycling is not None):
            worker = arbiter.WORKERS.get(decision.pid)
            if worker is None:
                continue
            if decision.now:
                self.log.warning("Killing worker (pid:%s): %s", decision.pid, decision.reason)
                worker.exit_reason = "memory-hard"
                arbiter.kill_worker(decision.pid, signal.SIGKILL)
            else:
                self.log.info(
                    "Recycling worker (pid:%s): %s; starting its replacement first",
                    decision.pid,
                    decision.reason,
                )
                worker.recycle_reason = "memory" if "memory" in decision.reason else "lifetime"
                self.recycling = decision.pid
                self.surge += 1

    def _finish_recycle(self, arbiter: Any) -> bool:
        """Retire the recycled worker once its replacement is up; True when done."""
        pid = self.recycling
        worker = arbiter.WORKERS.get(pid) if pid is not None else None
        if worker is None:  # it died on its own meanwhile
            self.recycling = None
            self.surge = max(0, self.surge - 1)
            return True
        current = [
            w
            for w in arbiter.WORKERS.values()
            if w.generation == arbiter.generation and w.retire_reason is None
        ]
        if len(current) < arbiter.num_workers + self.surge:
            return False
        if not all(w.tmp.board.counters[BOOTED] for w in current):
            return False
        self.recycling = None
        self.surge = max(0, self.surge - 1)
        arbiter.retire(worker, worker.recycle_reason or "recycle")
        return True

    def lifetime_for(self) -> float:
        """A new worker's lifetime: ``max_worker_lifetime`` plus up to 10% jitter, so
        workers started together do not all retire together."""
        base = float(self.cfg.max_worker_lifetime or 0)
        return base + random.uniform(0, base * 0.1) if base > 0 else 0.0
