"""What the master knows about its workers, gathered once a loop and shown as plain data.

Why a module of its own: the arbiter's verbs (spawn, kill, reap) should not be buried under
bookkeeping. This module reads the facts — heartbeat mtimes, the shared-memory scoreboards,
RSS from /proc, the kernel's accept-queue length — and turns them into

- ``WorkerView`` snapshots for the pure decisions in ``policy.py``;
- the ``status()`` dict served by ``/metrics`` and ``greenhorn ctl``.

Counters of workers that have exited are folded into running totals when they are reaped,
so the totals never go backwards while workers come and go.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import time
from collections import Counter
from typing import Any

from greenhorn import __version__
from greenhorn.ipc.exits import EXIT_FAILURE
from greenhorn.ipc.scoreboard import (
    BOOTED,
    BUCKETS,
    BYTES_OUT,
    DURATION_SUM,
    HIST_BASE,
    REJECTED,
    Scoreboard,
)
from greenhorn.master.policy import WorkerView

__all__ = ["Observer", "accept_queue"]

_TCP_INFO_UNACKED = 24  # struct tcp_info: for a LISTEN socket, tcpi_unacked = accept queue length


def accept_queue(sock: socket.socket) -> int | None:
    """Connections waiting in the kernel's accept queue of a listening TCP socket."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, _TCP_INFO_UNACKED)[0]
    except (OSError, struct.error):
        return None


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


class Observer:
    """Running totals, restart reasons and per-worker samples for one master."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.retired = {
            "requests": 0,
            "status": dict.fromkeys(("1xx", "2xx", "3xx", "4xx", "5xx"), 0),
            "rejected": 0,
            "bytes_out": 0,
            "histogram": [0] * len(BUCKETS),
            "duration_sum": 0.0,
        }
        self.restarts: Counter[str] = Counter()
        self.rss: dict[int, int | None] = {}
        self._busy_sample: dict[int, tuple[float, float]] = {}  # pid -> (duration_sum, when)
        self.busy: dict[int, float] = {}  # pid -> fraction of capacity busy at the last sample

    # -- sampling (once a master loop) -------------------------------------------------------

    def sample(self, workers: dict[int, Any], read_rss: bool) -> None:
        """Refresh RSS (when asked: memory limits or metrics are on) and utilisation."""
        now = time.monotonic()
        for pid, worker in workers.items():
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

    def forget(self, worker: Any, reason: str) -> None:
        """A worker exited: keep its counters in the totals and count the restart reason."""
        board: Scoreboard = worker.tmp.board
        c = board.counters
        r = self.retired
        r["requests"] += board.requests()
        for k in range(1, 6):
            r["status"][f"{k}xx"] += c[k]
        r["rejected"] += c[REJECTED]
        r["bytes_out"] += c[BYTES_OUT]
        for i in range(len(BUCKETS)):
            r["histogram"][i] += c[HIST_BASE + i]
        r["duration_sum"] += board.doubles[DURATION_SUM]
        self.restarts[reason] += 1
        for table in (self.rss, self._busy_sample, self.busy):
            table.pop(worker.pid, None)

    # -- outputs -----------------------------------------------------------------------------

    def views(self, workers: dict[int, Any], killed: set[int]) -> list[WorkerView]:
        out = []
        for pid, w in workers.items():
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
                    lifetime=getattr(w, "lifetime", 0.0),
                )
            )
        return out

    def status(self, arbiter: Any) -> dict[str, Any]:
        """The snapshot ``/metrics`` and ``greenhorn ctl`` show (see metrics.py)."""
        now = time.monotonic()
        totals = {
            "requests": self.retired["requests"],
            "status": dict(self.retired["status"]),
            "rejected": self.retired["rejected"],
            "bytes_out": self.retired["bytes_out"],
            "histogram": list(self.retired["histogram"]),
            "duration_sum": self.retired["duration_sum"],
        }
        workers = []
        for pid, w in sorted(arbiter.WORKERS.items()):
            board = w.tmp.board
            snap = board.snapshot()
            in_flight = int(snap["in_flight"])  # type: ignore[call-overload]
            totals["requests"] += snap["requests"]
            for k, v in snap["status"].items():  # type: ignore[attr-defined]
                totals["status"][k] += v
            totals["rejected"] += snap["rejected"]
            totals["bytes_out"] += snap["bytes_out"]
            for i, v in enumerate(snap["histogram"]):  # type: ignore[arg-type]
                totals["histogram"][i] += v
            totals["duration_sum"] += snap["duration_sum"]
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
                "state": arbiter.state,
                "ready": arbiter.ready_sent and not arbiter.stopping,
                "workers_target": arbiter.num_workers,
                "generation": arbiter.generation,
                "worker_class": str(arbiter.cfg.worker_class),
                "listeners": [listener.name for listener in arbiter.LISTENERS],
            },
            "workers": workers,
            "totals": totals,
            "buckets": list(BUCKETS),
            "restarts": dict(self.restarts),
            "backlog": {
                listener.name: accept_queue(listener.sock) for listener in arbiter.LISTENERS
            },
        }


def _state(worker: Any, snap: dict[str, Any], in_flight: int) -> str:
    if worker.aborted_at is not None:
        return "aborting"
    if worker.retire_reason is not None:
        return "retiring"
    if not snap["booted"]:
        return "booting"
    return "busy" if in_flight else "idle"


# -- the master's endpoints: open, wait on, serve ----------------------------------------------


def open_servers(arbiter: Any) -> int | None:
    """The master's own listeners: Prometheus metrics (asked for: failure is fatal) and
    the control socket (on by default: failure is only a warning)."""
    cfg = arbiter.cfg
    if cfg.metrics_bind:
        from greenhorn.master.metrics import MetricsServer

        try:
            server = MetricsServer(cfg.metrics_bind)
        except (OSError, ValueError) as exc:
            arbiter.log.error("%s", exc)
            return EXIT_FAILURE
        arbiter.servers.append(("metrics", server))
        arbiter.log.info("Metrics at: %s", server.name)
    if not cfg.control_socket_disable:
        try:
            from greenhorn.master import control

            path = cfg.control_socket or control.default_socket_path(arbiter.pid)
            # a USR2 child takes the socket over from its parent (same explicit path)
            server = control.ControlServer(
                path, cfg.control_socket_mode, takeover=bool(arbiter.master_pid)
            )
            arbiter.servers.append(("control", server))
            arbiter.log.debug("Control socket at: %s", path)
        except (ImportError, OSError, ValueError) as exc:
            arbiter.log.warning("Control socket disabled: %s", exc)
    return None


def wait(arbiter: Any, fd: int, seconds: float) -> list[int]:
    """Sleep until a signal arrives (its fd is in the result) or ``seconds`` pass, while
    answering /metrics, /readyz and control commands (never blocking on a client)."""
    owners = {f: server for _, server in arbiter.servers for f in server.fds()}
    writers = {f: server for _, server in arbiter.servers for f in server.wfds()}
    try:
        ready, writable, _ = select.select([fd, *owners], list(writers), [], seconds)
    except (InterruptedError, ValueError, OSError):
        return []
    serve_master_sockets(arbiter, [*ready, *writable], {**owners, **writers})
    return ready


def serve_master_sockets(arbiter: Any, ready: list[int], owners: dict[int, Any]) -> None:
    """Answer /metrics, /livez, /readyz and control-socket commands (never blocks)."""
    now = time.monotonic()
    for name, server in arbiter.servers:
        for fd in set(ready):
            if owners.get(fd) is server:
                try:
                    if name == "metrics":
                        server.handle(fd, arbiter.status)
                    else:
                        server.handle(fd, arbiter.control)
                except Exception:
                    arbiter.log.exception("Error serving the %s socket", name)
        server.expire(now)


def backlog(arbiter: Any) -> int:
    """Connections waiting in the kernels' accept queues, all listeners together."""
    total = 0
    for listener in arbiter.LISTENERS:
        total += accept_queue(listener.sock) or 0
    return total


def control(arbiter: Any, command: str, args: list[str]) -> dict[str, Any]:
    """A command from ``greenhorn ctl`` (ValueError for a bad one)."""
    if command in ("workers", "status", "stats"):
        return arbiter.status()
    if command in ("add", "remove"):
        try:
            n = int(args[0]) if args else 1
        except ValueError:
            raise ValueError(f"{command}: expected a number, got {args[0]!r}") from None
        if n < 1:
            raise ValueError(f"{command}: expected a positive number")
        delta = n if command == "add" else -n
        arbiter.set_num_workers(max(1, arbiter.num_workers + delta))
        arbiter.manage_workers()
        return {"workers_target": arbiter.num_workers}
    if command == "reload":
        arbiter.reload()
        return {"generation": arbiter.generation}
    if command == "reopen":
        arbiter.log.reopen_files()
        arbiter.kill_workers(signal.SIGUSR1)
        return {}
    raise ValueError(f"unknown command {command!r}")
