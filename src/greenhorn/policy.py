"""Pure decisions over a snapshot of the worker table: whom to spawn, retire or kill.

Why: the arbiter's loop is easy to read only if its decisions are not tangled with fork,
kill and logging. Every function here takes plain values (a list of ``WorkerView`` and a
clock reading) and returns plain values, so the policy is unit-tested without processes.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = ["Kill", "Plan", "WorkerView", "kills", "plan"]

ABORT_GRACE = 2.0  # seconds between SIGABRT (dump stacks) and SIGKILL for a late worker


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the policy needs to know about one worker."""

    pid: int
    age: int  # spawn order: lower is older
    generation: int  # bumped on every reload (HUP)
    booted: bool
    retiring: bool  # already told to stop
    last_beat: float  # wall-clock time of the last heartbeat (file mtime)
    oldest_request: float | None  # monotonic start of the longest request in flight
    aborted_at: float | None = None  # monotonic time SIGABRT was sent
    killed: bool = False  # SIGKILL already sent


@dataclass(frozen=True, slots=True)
class Plan:
    spawn: int
    retire: tuple[int, ...]  # pids to stop gracefully, oldest first
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Kill:
    pid: int
    signal: int
    reason: str  # "heartbeat" (loop silent) or "request" (one request over the timeout)


def plan(workers: list[WorkerView], target: int, generation: int) -> Plan:
    """Bring the current generation to ``target`` workers; retire older generations once
    the current one is fully booted (so capacity never drops during a reload)."""
    current = [w for w in workers if w.generation == generation and not w.retiring]
    older = [w for w in workers if w.generation != generation and not w.retiring]
    spawn = max(0, target - len(current))
    retire: list[int] = []
    if len(current) > target:
        extra = sorted(current, key=lambda w: w.age)[: len(current) - target]
        retire.extend(w.pid for w in extra)
    if older and spawn == 0 and all(w.booted for w in current):
        retire.extend(w.pid for w in sorted(older, key=lambda w: w.age))
    return Plan(spawn, tuple(retire), "reload" if older else "scale down")


def kills(
    workers: list[WorkerView], now_wall: float, now_mono: float, timeout: float
) -> list[Kill]:
    """Late workers and what to send them: SIGABRT first, SIGKILL after ``ABORT_GRACE``.

    A worker is late when its loop has not beaten for ``timeout`` seconds, or when one of
    its requests has run for ``timeout`` seconds (threaded workers keep beating while a
    request hangs). ``timeout`` 0 disables the check.
    """
    if timeout <= 0:
        return []
    out: list[Kill] = []
    for w in workers:
        if w.killed:
            continue
        if w.aborted_at is not None:
            if now_mono - w.aborted_at >= ABORT_GRACE:
                out.append(Kill(w.pid, signal.SIGKILL, "abort grace expired"))
            continue
        if now_wall - w.last_beat > timeout:
            out.append(Kill(w.pid, signal.SIGABRT, "heartbeat"))
        elif w.oldest_request is not None and now_mono - w.oldest_request > timeout:
            out.append(Kill(w.pid, signal.SIGABRT, "request"))
    return out
