"""What the master knows about its workers, gathered once a loop and shown as plain data.

Why a module of its own: the arbiter's verbs (spawn, kill, reap) should not be buried under
bookkeeping. The ``Observer`` reads the facts (heartbeat mtimes, the shared-memory
scoreboards, RSS from /proc) and turns them into

- ``WorkerView`` snapshots for the pure decisions in ``policy.py``;
- the ``status()`` dict served by ``/metrics`` (``metrics.py``) and ``greenhorn ctl``
  (``control.py``), both answered from the master's own endpoints (``endpoints.py``).

Counters of workers that have exited are folded into running totals when they are reaped,
so the totals never go backwards while workers come and go.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from greenhorn import __version__
from greenhorn.ipc.scoreboard import (
    BOOTED,
    BUCKETS,
    DURATION_SUM,
    STATUS_CLASSES,
    BoardSnapshot,
    Scoreboard,
)
from greenhorn.master.endpoints import StreamEndpoint
from greenhorn.master.policy import WorkerView

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.master.control import Dispatch
    from greenhorn.master.metrics import StatusFn
    from greenhorn.master.worker_table import WorkerTable
    from greenhorn.observe.logger import Logger
    from greenhorn.workers.base import Worker

__all__ = ["Endpoints", "MasterFacts", "Observer", "rss_bytes"]


def _read_kb_fields(path: str, names: tuple[str, ...]) -> dict[str, int] | None:
    """``Name:   123 kB`` lines from a /proc file, in bytes; None if unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in lines:
        key, sep, rest = line.partition(":")
        if sep and key in names:
            fields = rest.split()
            if fields and fields[0].isdigit():
                found[key] = int(fields[0]) * 1024
    return found


def rss_bytes(pid: int, proc_root: str = "/proc") -> int | None:
    """Resident set size (VmRSS from /proc/<pid>/status); None if unknown."""
    fields = _read_kb_fields(f"{proc_root}/{pid}/status", ("VmRSS",))
    return None if not fields else fields.get("VmRSS")


@dataclass(frozen=True, slots=True)
class MasterFacts:
    """What ``status()`` reports about the master itself (the arbiter's state, read now)."""

    state: str  # starting, running, stopping
    ready: bool  # the current generation has booted and the master is not stopping
    workers_target: int
    generation: int
    worker_class: str
    listeners: list[str]
    backlog: dict[str, int | None]  # accept queue per listener


@dataclass(slots=True)
class Totals:
    """Request counters added up over workers (``/metrics`` and ``greenhorn ctl stats``)."""

    requests: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    rejected: int = 0
    bytes_out: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    duration_sum: float = 0.0
    websockets_open: int = 0
    websockets_total: int = 0

    def add(self, snap: BoardSnapshot, live: bool = True) -> None:
        """Count one worker's scoreboard in (``live``: its open WebSockets too; an exited
        worker has none)."""
        self.requests += snap["requests"]
        for k, v in snap["status"].items():
            self.status[k] += v
        self.rejected += snap["rejected"]
        self.bytes_out += snap["bytes_out"]
        for i, v in enumerate(snap["histogram"]):
            self.histogram[i] += v
        self.duration_sum += snap["duration_sum"]
        self.websockets_total += snap["websockets_total"]
        if live:
            self.websockets_open += snap["websockets_open"]

    def copy(self) -> Totals:
        return Totals(
            self.requests,
            dict(self.status),
            self.rejected,
            self.bytes_out,
            list(self.histogram),
            self.duration_sum,
            self.websockets_open,
            self.websockets_total,
        )


class Observer:
    """Running totals, restart reasons and per-worker samples for one master."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.retired = Totals()  # the counters of workers that have exited
        self.restarts: Counter[str] = Counter()
        self.rss: dict[int, int | None] = {}
        self._busy_sample: dict[int, tuple[float, float]] = {}  # pid -> (duration_sum, when)
        self.busy: dict[int, float] = {}  # pid -> fraction of capacity busy at the last sample

    # -- sampling (once a master loop) -------------------------------------------------------

    def sample(self, table: WorkerTable, read_rss: bool) -> None:
        """Refresh RSS (when asked: memory limits or metrics are on) and utilisation."""
        now = time.monotonic()
        for pid, worker in table.workers.items():
            board: Scoreboard = worker.tmp.board
            total = board.doubles[DURATION_SUM]
            capacity = max(1, board.slots)
            in_flight = board.in_flight()
            previous = self._busy_sample.get(pid)
            rate = 0.0
            if previous is not None and now > previous[1]:
                rate = (total - previous[0]) / (now - previous[1])
            self._busy_sample[pid] = (total, now)
            self.busy[pid] = min(1.0, max(rate, in_flight) / capacity)
            if read_rss:
                self.rss[pid] = rss_bytes(pid)

    def forget(self, worker: Worker, reason: str) -> None:
        """A worker exited: keep its counters in the totals and count the restart reason."""
        self.retired.add(worker.tmp.board.snapshot(), live=False)
        self.restarts[reason] += 1
        pid = int(worker.pid)
        self.rss.pop(pid, None)
        self._busy_sample.pop(pid, None)
        self.busy.pop(pid, None)

    # -- outputs -----------------------------------------------------------------------------

    def views(self, table: WorkerTable) -> list[WorkerView]:
        """What the policy needs to know about each live worker, now."""
        out = []
        killed = table.killed
        for pid, w in table.workers.items():
            board = w.tmp.board
            oldest = board.oldest_request()
            try:
                last_beat = w.tmp.last_update()
            except OSError:
                last_beat = time.time()
            out.append(
                WorkerView(
                    pid=pid,
                    age=w.age,
                    generation=w.generation,
                    booted=bool(board.counters[BOOTED]),
                    retiring=w.retire_reason is not None,
                    last_beat=last_beat,
                    oldest_request=oldest[0] if oldest else None,
                    aborted_at=w.aborted_at,
                    killed=pid in killed,
                    rss=self.rss.get(pid),
                    busy=self.busy.get(pid, 0.0),
                    spawned_at=w.spawned_at,
                    lifetime=w.lifetime,
                    slot_holds_loop=w.slot_holds_loop,
                )
            )
        return out

    def status(self, table: WorkerTable, master: MasterFacts) -> dict[str, Any]:
        """The snapshot ``/metrics`` and ``greenhorn ctl`` show (see metrics.py)."""
        now = time.monotonic()
        totals = self.retired.copy()
        workers = []
        for pid, w in sorted(table.workers.items()):
            board = w.tmp.board
            snap = board.snapshot()
            in_flight = snap["in_flight"]
            totals.add(snap)
            workers.append(
                {
                    "pid": pid,
                    "age": w.age,
                    "generation": w.generation,
                    "state": _state(w, snap, in_flight),
                    "booted": bool(snap["booted"]),
                    "requests": snap["requests"],
                    "in_flight": in_flight,
                    "rss": self.rss.get(pid) if pid in self.rss else rss_bytes(pid),
                    "uptime": now - w.spawned_at,
                    "current": [
                        {"request": line, "seconds": round(now - started, 3)}
                        for _, started, line in sorted(board.current(), key=lambda c: c[1])
                    ],
                    "status": snap["status"],
                    "rejected": snap["rejected"],
                    "bytes_out": snap["bytes_out"],
                }
            )
        return {
            "master": {
                "pid": os.getpid(),
                "version": __version__,
                "uptime": now - self.started,
                "state": master.state,
                "ready": master.ready,
                "workers_target": master.workers_target,
                "generation": master.generation,
                "worker_class": master.worker_class,
                "listeners": master.listeners,
            },
            "workers": workers,
            "totals": dataclasses.asdict(totals),
            "buckets": list(BUCKETS),
            "restarts": dict(self.restarts),
            "backlog": master.backlog,
        }


def _state(worker: Worker, snap: BoardSnapshot, in_flight: int) -> str:
    if worker.aborted_at is not None:
        return "aborting"
    if worker.retire_reason is not None:
        return "retiring"
    if not snap["booted"]:
        return "booting"
    return "busy" if in_flight else "idle"


class Endpoints:
    """The master's own listeners, served from its loop without ever blocking on them:
    Prometheus metrics (``--metrics-bind``) and the ``greenhorn ctl`` control socket."""

    def __init__(self) -> None:
        self.servers: list[StreamEndpoint] = []
        self.deferred: tuple[str, StatusFn] | None = None  # metrics the old master still holds

    def open(
        self,
        cfg: Config,
        log: Logger,
        *,
        pid: int,
        takeover: bool,
        status: StatusFn,
        dispatch: Dispatch,
    ) -> bool:
        """Open them: metrics (asked for: a failure is logged and False returned) and the
        control socket (on by default: a failure is only a warning). ``takeover``: a USR2
        child takes the control socket over from its parent (same explicit path), and binds
        a metrics port the old master still holds once that one is gone (``take_over``)."""
        if cfg.metrics_bind and not self.open_metrics(cfg.metrics_bind, status, log, takeover):
            return False
        if not cfg.control_socket_disable:
            try:
                from greenhorn.master import control

                path = cfg.control_socket or control.default_socket_path(pid)
                server = control.ControlServer(
                    path, dispatch, cfg.control_socket_mode, takeover=takeover
                )
                self.servers.append(server)
                log.debug("Control socket at: %s", path)
            except (ImportError, OSError, ValueError) as exc:
                log.warning("Control socket disabled: %s", exc)
        return True

    def open_metrics(self, bind: str, status: StatusFn, log: Logger, takeover: bool) -> bool:
        from greenhorn.master.metrics import MetricsServer

        try:
            metrics = MetricsServer(bind, status)
        except (OSError, ValueError) as exc:
            if takeover and isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                log.warning("Metrics at %s: still the old master's; bound once it exits", bind)
                self.deferred = (bind, status)
                return True
            log.error("%s", exc)
            return False
        self.servers.append(metrics)
        log.info("Metrics at: %s", metrics.name)
        return True

    def take_over(self, log: Logger) -> None:
        """The old master is gone: bind the metrics port it held (a failure is logged)."""
        deferred, self.deferred = self.deferred, None
        if deferred is not None:
            self.open_metrics(*deferred, log, takeover=False)

    def wait(self, fd: int, seconds: float, log: Logger) -> list[int]:
        """Sleep until ``fd`` (the signal pipe) is readable (it is then in the result) or
        ``seconds`` pass, answering every endpoint's clients meanwhile."""
        owners = {f: server for server in self.servers for f in server.fds()}
        writers = {f: server for server in self.servers for f in server.wfds()}
        try:
            ready, writable, _ = select.select([fd, *owners], list(writers), [], seconds)
        except (InterruptedError, ValueError, OSError):
            return []
        owners.update(writers)
        now = time.monotonic()
        for server in self.servers:
            for ready_fd in {*ready, *writable}:
                if owners.get(ready_fd) is server:
                    try:
                        server.handle(ready_fd)
                    except Exception:
                        log.exception("Error serving the %s socket", server.name)
            server.expire(now)
        return ready

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def close_in_child(self) -> None:
        """In a new worker: close the fds, touch no file (the master keeps serving)."""
        for server in self.servers:
            server.close_in_child()
