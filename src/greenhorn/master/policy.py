"""Pure decisions over a snapshot of the worker table: whom to spawn, retire or kill.

Why: the arbiter's loop is easy to read only if its decisions are not tangled with fork,
kill and logging. Every function here takes plain values (a list of ``WorkerView`` and a
clock reading) and returns plain values, so the policy is unit-tested without processes.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from greenhorn.ipc.scoreboard import BEAT_SLACK

__all__ = [
    "Kill",
    "Plan",
    "Recycle",
    "ScaleState",
    "WorkerView",
    "autoscale",
    "kills",
    "plan",
    "recycles",
]

ABORT_GRACE = 2.0  # seconds between SIGABRT (dump stacks) and SIGKILL for a late worker
SCALE_UP_AFTER = 1.0  # seconds of sustained pressure before adding a worker
SCALE_DOWN_AFTER = 5.0  # seconds of sustained idleness before retiring one (per step)
BUSY_HIGH = 0.8  # average utilisation that counts as pressure
BUSY_LOW = 0.3  # ... and as idleness


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
    rss: int | None = None  # bytes, when memory is watched
    busy: float = 0.0  # fraction of capacity in use over the last second (0..1)
    spawned_at: float = 0.0  # monotonic
    lifetime: float = (
        0.0  # seconds this worker may live (max_worker_lifetime + jitter), 0 = forever
    )
    # A request in a slot holds the worker's loop (the sync worker; the asgi worker writes a
    # blocked loop into a slot): its start is the loop's last sign of life. False for the
    # threaded and green workers, whose loop keeps beating while requests run.
    slot_holds_loop: bool = False


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

    A worker is late when its loop has been stuck for ``timeout`` seconds (gunicorn's
    meaning), and never before:

    - a worker whose slot holds its loop (sync), with a request in flight: when that
      request has run for ``timeout`` seconds (the loop last turned when it began);
    - otherwise: when its heartbeat has been silent for ``timeout`` seconds plus
      ``BEAT_SLACK`` (how old a turning loop's last beat may be). A threaded or green
      worker's request that merely takes long keeps no worker from beating: the worker
      logs it as a warning, and it runs on.

    ``timeout`` 0 disables the check.
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
        if w.slot_holds_loop and w.oldest_request is not None:
            if now_mono - w.oldest_request > timeout:
                out.append(Kill(w.pid, signal.SIGABRT, "request"))
        elif now_wall - w.last_beat > timeout + BEAT_SLACK:
            out.append(Kill(w.pid, signal.SIGABRT, "heartbeat"))
    return out


@dataclass(frozen=True, slots=True)
class ScaleState:
    """What autoscaling remembers between samples (the arbiter keeps the latest one)."""

    pressure_since: float | None = None
    idle_since: float | None = None


def autoscale(
    workers: list[WorkerView],
    target: int,
    low: int,
    high: int,
    backlog: int,
    now: float,
    state: ScaleState,
) -> tuple[int, ScaleState, str]:
    """New worker target under load: up when every worker is busy or connections wait in
    the accept queue, for ``SCALE_UP_AFTER``; down by one after ``SCALE_DOWN_AFTER`` of
    idleness. The two thresholds and delays are the hysteresis that prevents flapping.
    ``high`` already includes the memory cap. Returns (target, state, reason)."""
    active = [w for w in workers if w.booted and not w.retiring]
    if not active:
        return target, state, ""
    busy = sum(w.busy for w in active) / len(active)
    if backlog > 0 or busy >= BUSY_HIGH:
        since = state.pressure_since if state.pressure_since is not None else now
        if now - since >= SCALE_UP_AFTER and target < high and len(active) >= target:
            why = f"backlog {backlog}" if backlog else f"{busy:.0%} busy"
            return target + 1, ScaleState(pressure_since=now), f"load ({why})"
        return target, ScaleState(pressure_since=since), ""
    if busy <= BUSY_LOW:
        since = state.idle_since if state.idle_since is not None else now
        if now - since >= SCALE_DOWN_AFTER and target > low:
            return target - 1, ScaleState(idle_since=now), f"idle ({busy:.0%} busy)"
        return target, ScaleState(idle_since=since), ""
    return target, ScaleState(), ""


@dataclass(frozen=True, slots=True)
class Recycle:
    pid: int
    now: bool  # True: kill at once (hard memory limit); False: replace, then retire
    reason: str


def recycles(
    workers: list[WorkerView],
    soft: int | None,
    hard: int | None,
    now: float,
    busy_recycling: bool,
) -> list[Recycle]:
    """Workers to recycle: every one over the hard memory limit at once; at most one other
    (over the soft limit, biggest first, else past its lifetime, oldest first) and only
    when no other recycle is in progress, so capacity never drops below N-1."""
    live = [w for w in workers if w.booted and not w.retiring and w.aborted_at is None]
    out = [
        Recycle(w.pid, True, f"memory {w.rss // 1048576} MiB over the hard limit")
        for w in live
        if hard and w.rss is not None and w.rss > hard
    ]
    if busy_recycling:
        return out
    hard_pids = {r.pid for r in out}
    over = [w for w in live if soft and w.rss is not None and w.rss > soft]
    over = [w for w in over if w.pid not in hard_pids]
    if over:
        w = max(over, key=lambda w: w.rss or 0)
        out.append(Recycle(w.pid, False, f"memory {(w.rss or 0) // 1048576} MiB over the limit"))
        return out
    old = [w for w in live if w.lifetime > 0 and now - w.spawned_at > w.lifetime]
    if old:
        w = min(old, key=lambda w: w.spawned_at)
        out.append(Recycle(w.pid, False, f"lifetime {now - w.spawned_at:.0f}s reached"))
    return out
