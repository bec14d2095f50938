"""The master's own sockets: Prometheus metrics and the ``greenhorn ctl`` control socket.

Why a module of its own: these are the only things the master serves itself. They are
non-blocking state machines (``metrics.py``, ``ctl.py``) woven into the master's ``select``
so that a slow client can never stall worker supervision; this module opens them, waits on
them next to the signal pipe, and answers control commands with the arbiter's verbs.
"""

from __future__ import annotations

import select
import signal
import time
from typing import Any

from greenhorn import process

__all__ = ["backlog", "control", "open_servers", "serve_master_sockets", "wait"]


def open_servers(arbiter: Any) -> int | None:
    """The master's own listeners: Prometheus metrics (asked for: failure is fatal) and
    the control socket (on by default: failure is only a warning)."""
    cfg = arbiter.cfg
    if cfg.metrics_bind:
        from greenhorn.metrics import MetricsServer

        try:
            server = MetricsServer(cfg.metrics_bind)
        except (OSError, ValueError) as exc:
            arbiter.log.error("%s", exc)
            return process.EXIT_FAILURE
        arbiter.servers.append(("metrics", server))
        arbiter.log.info("Metrics at: %s", server.name)
    if not cfg.control_socket_disable:
        try:
            from greenhorn import ctl

            path = cfg.control_socket or ctl.default_socket_path(arbiter.pid)
            # a USR2 child takes the socket over from its parent (same explicit path)
            server = ctl.ControlServer(
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
    from greenhorn.status import accept_queue

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
