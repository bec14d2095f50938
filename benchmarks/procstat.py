"""Server cost from /proc: CPU time of a process tree and PSS per process.

Why from /proc: a server's cost per request is the CPU its master and workers burn, whatever
the load generator's view of throughput (on a 2-core machine, wrk competes with the server
for the same cores, so req/s alone mostly measures wrk). Reading utime+stime of the master
and every descendant before and after a run, divided by the requests served, is stable
across machines of one kind; ratios between two servers measured in one run are stable
across kinds.

Accounting rules:
- CPU of a process tree = the master's utime+stime+cutime+cstime (a worker that exits and is
  reaped during the run moves its time into the master's c-fields: nothing is lost) plus
  utime+stime of every live descendant (each process's figure covers all its threads).
- Descendants are found through ``/proc/<pid>/task/<tid>/children`` of every thread.
- PSS (proportional set size, ``/proc/<pid>/smaps_rollup``) splits shared pages between the
  processes sharing them, so pre-fork workers that share the master's pages are not charged
  twice: it is the fair memory figure per worker.
"""

from __future__ import annotations

import os

__all__ = [
    "CLK_TCK",
    "children",
    "cpu_busy",
    "cpu_seconds",
    "cpu_ticks",
    "descendants",
    "process_cpu",
    "pss_kib",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ")"
    return data[data.rindex(")") + 2 :].split()


def process_cpu(pid: int, with_children: bool = False) -> int:
    """Clock ticks of ``pid`` (utime+stime, plus reaped children's when asked); 0 if gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17 in proc(5)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (of any of its threads)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, depth first."""
    out: list[int] = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        out.append(child)
        stack += children(child)
    return out


def cpu_seconds(master: int) -> tuple[float, dict[int, float]]:
    """(CPU seconds of the whole tree, {descendant pid: its own CPU seconds})."""
    ticks = process_cpu(master, with_children=True)
    per_pid: dict[int, float] = {}
    for pid in descendants(master):
        t = process_cpu(pid)
        ticks += t
        per_pid[pid] = t / CLK_TCK
    return ticks / CLK_TCK, per_pid


def pss_kib(pid: int) -> int | None:
    """Proportional set size of ``pid`` in KiB, or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(all ticks, idle+iowait ticks) summed over ``cpus`` from /proc/stat; None without
    CPUs. Two readings give ``cpu_busy``."""
    if not cpus:
        return None
    total = idle = 0
    with open("/proc/stat") as f:
        for line in f:
            name, _, rest = line.partition(" ")
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(x) for x in rest.split()]
                total += sum(ticks[:8])  # guest time is already inside user time
                idle += ticks[3] + ticks[4]
    return total, idle


def cpu_busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The busy fraction (0-1) of the CPUs between two ``cpu_ticks`` readings, or None (no
    CPUs, or no tick elapsed)."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return 1.0 - (after[1] - before[1]) / (after[0] - before[0])
