"""How many workers to run, and when to replace one: ``-w auto``, autoscaling between
``--workers-min`` and ``--workers-max``, and memory/lifetime recycling.

Why a module of its own: these are the master's slow-moving decisions (seconds, not
requests). The decisions themselves are pure functions in ``policy.py``; the ``Scaler`` here
owns the number of workers the master aims for (``target``, gunicorn's ``num_workers``: TTIN,
TTOU, ``greenhorn ctl add/remove``, HUP and autoscaling all change it here) and the little
state the decisions need between loop iterations (autoscale hysteresis, the one recycle in
progress, the measured per-worker memory); it applies them through the worker table
(``kill``, ``retire``).

Recycling never lowers capacity below N-1: a worker over its soft memory limit or past its
lifetime gets a replacement first (one extra worker, the *surge*), and is told to finish its
current request and exit only once the replacement has booted. Only one recycle runs at a
time. The hard memory limit kills at once.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from greenhorn.master import policy, sizing

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.master.worker_table import WorkerTable
    from greenhorn.observe.logger import Logger

__all__ = ["Scaler"]

MIB = 1024 * 1024


class Scaler:
    """The worker target and the scaling state for one master; ``step`` runs once per loop.

    ``on_change(new, old)`` is called whenever the target changes (the arbiter calls the
    ``nworkers_changed`` hook there).
    """

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        table: WorkerTable,
        on_change: Callable[[int, int | None], None],
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.table = table
        self.on_change = on_change
        self.target = 1  # num_workers: what the current generation should have
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

    # -- the target ------------------------------------------------------------------------

    def set_target(self, count: int) -> None:
        """Aim for ``count`` workers (``on_change`` hears of a change)."""
        old, self.target = self.target, count
        if old != count:
            self.on_change(count, old)

    @property
    def wanted(self) -> int:
        """Workers the current generation should have now: the target, plus the surge of
        replacements started for workers being recycled."""
        return self.target + self.surge

    def reconfigure(self, cfg: Config) -> None:
        """After HUP: a fixed ``workers`` count in the new settings becomes the target.
        (The scaling and recycling settings keep their start-up values, as they always
        have: only ``workers`` changes on a reload.) ``on_change`` hears of it even when
        the count stays, as gunicorn calls ``nworkers_changed`` on every reload."""
        old = self.target
        if cfg.workers != "auto" and not (cfg.workers_min or cfg.workers_max):
            self.target = max(1, int(cfg.workers))
        self.on_change(self.target, old)

    # -- sizing ------------------------------------------------------------------------------

    def start(self) -> None:
        """Set the first target (``on_change(target, None)``, as gunicorn calls
        ``nworkers_changed`` at boot). ``auto`` without ``--worker-memory`` starts one
        worker and sizes the rest once its memory is known (``measured``)."""
        self.target = self._initial()
        self.on_change(self.target, None)

    def _initial(self) -> int:
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

    def measured(self, views: list[policy.WorkerView]) -> None:
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
        self.set_target(count)

    def memory_cap(self) -> int | None:
        if self.memory_budget and self.per_worker:
            return max(1, self.memory_budget // self.per_worker)
        return None

    # -- per loop ----------------------------------------------------------------------------

    def step(self, views: list[policy.WorkerView], backlog: int, generation: int) -> None:
        self.measured(views)
        self.autoscale(views, backlog, generation)
        self.recycle(views, generation)

    def autoscale(self, views: list[policy.WorkerView], backlog: int, generation: int) -> None:
        cfg = self.cfg
        if not cfg.workers_max and not cfg.workers_min:
            return
        low = cfg.workers_min or 1
        high = cfg.workers_max or max(low, self.target)
        cap = self.memory_cap()
        if cap is not None:
            high = max(low, min(high, cap))
        current = [v for v in views if v.generation == generation]
        target, self.state, why = policy.autoscale(
            current, self.target, low, high, backlog, time.monotonic(), self.state
        )
        if target != self.target:
            self.log.info("Autoscaling: %d -> %d workers: %s", self.target, target, why)
            self.set_target(target)

    def recycle(self, views: list[policy.WorkerView], generation: int) -> None:
        cfg = self.cfg
        if self.recycling is not None and self._finish_recycle(generation):
            return  # ``views`` predates that retirement: decide again next loop
        soft = cfg.max_worker_memory * MIB if cfg.max_worker_memory else None
        hard = cfg.max_worker_memory_hard * MIB if cfg.max_worker_memory_hard else None
        if not soft and not hard and not cfg.max_worker_lifetime:
            return
        now = time.monotonic()
        for decision in policy.recycles(views, soft, hard, now, self.recycling is not None):
            worker = self.table.get(decision.pid)
            if worker is None:
                continue
            if decision.now:
                self.log.warning("Killing worker (pid:%s): %s", decision.pid, decision.reason)
                worker.exit_reason = "memory-hard"
                self.table.kill(decision.pid, signal.SIGKILL)
            else:
                self.log.info(
                    "Recycling worker (pid:%s): %s; starting its replacement first",
                    decision.pid,
                    decision.reason,
                )
                worker.recycle_reason = "memory" if "memory" in decision.reason else "lifetime"
                self.recycling = decision.pid
                self.surge += 1

    def _finish_recycle(self, generation: int) -> bool:
        """Retire the recycled worker once its replacement is up; True when done."""
        pid = self.recycling
        worker = self.table.get(pid) if pid is not None else None
        if worker is None:  # it died on its own meanwhile
            self.recycling = None
            self.surge = max(0, self.surge - 1)
            return True
        current = [w for w in self.table.of_generation(generation) if w.retire_reason is None]
        if len(current) < self.wanted or not self.table.all_booted(current):
            return False
        self.recycling = None
        self.surge = max(0, self.surge - 1)
        self.table.retire(worker, worker.recycle_reason or "recycle")
        return True

    def lifetime_for(self) -> float:
        """A new worker's lifetime: ``max_worker_lifetime`` plus up to 10% jitter, so
        workers started together do not all retire together."""
        base = float(self.cfg.max_worker_lifetime or 0)
        return base + random.uniform(0, base * 0.1) if base > 0 else 0.0
