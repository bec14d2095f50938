"""How big is this machine, really? CPU and memory limits for ``--workers auto``.

Why a module of its own: in a container ``os.cpu_count()`` reports the host's CPUs, not the
cgroup quota, and gunicorn's ``2 * cpus + 1`` then starts far too many workers that get
throttled or OOM-killed. The limits live in files (cgroup v2 ``cpu.max``/``memory.max``,
cgroup v1 ``cpu.cfs_quota_us``/``memory.limit_in_bytes``), so every reader here is a pure
function of a root path: tests build fake trees in tmp_path.

Rules:
- Never raise: a missing, unreadable or garbled file means "no limit found here".
- The cgroup comes from ``<proc_root>/self/cgroup``; its files are looked up under
  ``<cgroup_root>``, at that path and at each ancestor up to the root (a parent's limit
  applies to its children; the smallest wins). Inside a container with a cgroup namespace
  the path is ``/`` and the root files are the container's own.
- Each reader also says where the number came from, so the arbiter can log one line such
  as ``cpus=1.5 (cgroup v2 cpu.max) memory=1024 MiB (cgroup v2 memory.max) per-worker=256
  MiB -> 4 workers``.

References: cgroups(7); https://docs.kernel.org/admin-guide/cgroup-v2.html (cpu.max,
memory.max); https://docs.kernel.org/scheduler/sched-bwc.html (v1 CFS quota);
sched_getaffinity(2); proc_meminfo(5).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_ROOT = "/proc"
MIB = 1024 * 1024
# cgroup v1 says "no limit" with a huge page-rounded number (9223372036854771712 on x86-64).
_V1_UNLIMITED = 1 << 60


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096).strip()
    except (OSError, ValueError):
        return None


def _own_cgroups(proc_root: str) -> tuple[str | None, dict[str, tuple[str, str]]]:
    """This process's cgroup: (v2 path or None, {v1 controller: (mount dir, path)}).

    Without a readable ``self/cgroup`` the root (``/``) is assumed for both versions.
    """
    text = _read(os.path.join(proc_root, "self", "cgroup"))
    if text is None:
        return "/", {}
    v2: str | None = None
    v1: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif controllers:
            for controller in controllers.split(","):
                v1[controller] = (controllers, path)
    return v2, v1


def _levels(root: str, path: str) -> Iterator[str]:
    """``root/path`` and each ancestor directory up to ``root`` itself."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:  # never leave the cgroup tree
        parts = []
    for depth in range(len(parts), -1, -1):
        yield os.path.join(root, *parts[:depth])


def _v1_dirs(root: str, controller: str, v1: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """(hierarchy dir, cgroup path) pairs to try for a v1 controller; existing dirs only.

    The hierarchy is mounted under the joined controller list ("cpu,cpuacct"); distros
    add symlinks named after each controller, tried too.
    """
    joined, path = v1.get(controller, (controller, "/"))
    names = [joined, controller]
    if controller == "cpu":
        names += ["cpu,cpuacct", "cpuacct,cpu"]
    dirs: list[str] = []
    for name in names:
        candidate = os.path.join(root, name)
        if candidate not in dirs and os.path.isdir(candidate):
            dirs.append(candidate)
    return [(d, path) for d in dirs]


def _parse_cpu_max(text: str) -> float | None:
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _smallest(values: list[float]) -> float | None:
    return min(values) if values else None


def _level_limits(
    levels: Iterator[str], filename: str, parse: Callable[[str], Any]
) -> list[Any] | None:
    """The limits ``filename`` sets at each cgroup level (unlimited levels left out), or
    None when no level has the file at all."""
    found, limits = False, []
    for level in levels:
        text = _read(os.path.join(level, filename))
        if text is not None:
            found = True
            value = parse(text)
            if value is not None:
                limits.append(value)
    return limits if found else None


def read_cpu_limit(
    cgroup_root: str = CGROUP_ROOT, proc_root: str = PROC_ROOT
) -> tuple[float | None, str]:
    """(CPUs allowed by the cgroup quota, source); (None, source or "") when unlimited.

    v2 ``cpu.max`` ("150000 100000" -> 1.5, "max 100000" -> None); else v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 -> None).
    """
    v2, v1 = _own_cgroups(proc_root)
    if v2 is not None:
        limits = _level_limits(_levels(cgroup_root, v2), "cpu.max", _parse_cpu_max)
        if limits is not None:
            return _smallest(limits), "cgroup v2 cpu.max"
    for mount, path in _v1_dirs(cgroup_root, "cpu", v1):
        found, limits = False, []
        for level in _levels(mount, path):
            quota = _read(os.path.join(level, "cpu.cfs_quota_us"))
            period = _read(os.path.join(level, "cpu.cfs_period_us"))
            if quota is None or period is None:
                continue
            found = True
            try:
                q, p = int(quota), int(period)
            except ValueError:
                continue
            if q > 0 and p > 0:
                limits.append(q / p)
        if found:
            return _smallest(limits), "cgroup v1 cpu.cfs_quota_us"
    return None, ""


def detect_cpus(
    cgroup_root: str = CGROUP_ROOT,
    proc_root: str = PROC_ROOT,
    affinity: set[int] | None = None,
    host_count: int | None = None,
) -> tuple[float, str]:
    """(usable CPUs, source): the smaller of the cgroup quota and the affinity mask, else
    ``os.cpu_count()``, else 1.

    ``affinity`` and ``host_count`` default to ``os.sched_getaffinity(0)`` and
    ``os.cpu_count()``; pass them (an empty set means "unknown") to test.
    """
    if affinity is None and hasattr(os, "sched_getaffinity"):
        try:
            affinity = os.sched_getaffinity(0)
        except OSError:
            affinity = None
    if host_count is None:
        host_count = os.cpu_count()
    limit, source = read_cpu_limit(cgroup_root, proc_root)
    pinned = float(len(affinity)) if affinity else None
    if limit is not None and (pinned is None or limit <= pinned):
        return limit, source
    if pinned is not None:
        return pinned, "sched_getaffinity"
    if host_count:
        return float(host_count), "os.cpu_count"
    return 1.0, "default"


def _parse_bytes(text: str, unlimited_from: int | None = None) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None  # "max", "-1", garbage
    value = int(text)
    if value <= 0 or (unlimited_from is not None and value >= unlimited_from):
        return None
    return value


def read_memory_limit(
    cgroup_root: str = CGROUP_ROOT, proc_root: str = PROC_ROOT
) -> tuple[int | None, str]:
    """(bytes allowed by the cgroup, source); (None, source or "") when unlimited.

    v2 ``memory.max`` ("max" -> None); else v1 ``memory.limit_in_bytes`` (values near
    2**63, v1's "no limit", -> None).
    """
    v2, v1 = _own_cgroups(proc_root)
    if v2 is not None:
        limits = _level_limits(_levels(cgroup_root, v2), "memory.max", _parse_bytes)
        if limits is not None:
            return (min(limits) if limits else None), "cgroup v2 memory.max"
    for mount, path in _v1_dirs(cgroup_root, "memory", v1):
        limits = _level_limits(
            _levels(mount, path),
            "memory.limit_in_bytes",
            lambda text: _parse_bytes(text, _V1_UNLIMITED),
        )
        if limits is not None:
            return (min(limits) if limits else None), "cgroup v1 memory.limit_in_bytes"
    return None, ""


def host_memory(proc_root: str = PROC_ROOT) -> int | None:
    """MemTotal from ``<proc_root>/meminfo`` in bytes; None if unreadable."""
    text = _read(os.path.join(proc_root, "meminfo"))
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if key == "MemTotal" and fields and fields[0].isdigit():
            return int(fields[0]) * 1024
    return None


def detect_memory(
    cgroup_root: str = CGROUP_ROOT, proc_root: str = PROC_ROOT
) -> tuple[int | None, str]:
    """(memory budget in bytes, source): the cgroup limit, else the host's MemTotal.

    The smaller of the two when both are known (a cgroup limit above RAM means nothing).
    """
    limit, source = read_memory_limit(cgroup_root, proc_root)
    total = host_memory(proc_root)
    if limit is not None and (total is None or limit <= total):
        return limit, source
    if total is not None:
        return total, "/proc/meminfo MemTotal"
    return None, ""


def auto_workers(
    cpus: float,
    memory_budget: int | None,
    per_worker: int | None,
    cpu_source: str = "",
    memory_source: str = "",
) -> tuple[int, str]:
    """(worker count, one-line explanation) for ``--workers auto``.

    ``int(2 * cpus) + 1`` (gunicorn's advice, fractional quotas included: 0.5 CPU -> 2),
    capped at ``memory_budget // per_worker`` when both are known, never below 1.
    """
    by_cpu = int(2 * max(cpus, 0.0)) + 1 if math.isfinite(cpus) else 1
    parts = [f"cpus={cpus:g}" + (f" ({cpu_source})" if cpu_source else "")]
    count, bound = by_cpu, "cpu"
    if memory_budget is not None and per_worker is not None and per_worker > 0:
        by_memory = memory_budget // per_worker
        parts.append(
            f"memory={memory_budget // MIB} MiB" + (f" ({memory_source})" if memory_source else "")
        )
        parts.append(f"per-worker={per_worker // MIB} MiB")
        if by_memory < count:
            count, bound = by_memory, "memory"
    count = max(1, count)
    parts.append(f"-> {count} worker{'' if count == 1 else 's'} ({bound}-bound)")
    return count, " ".join(parts)


def plan_workers(
    per_worker: int | None = None,
    cgroup_root: str = CGROUP_ROOT,
    proc_root: str = PROC_ROOT,
    affinity: set[int] | None = None,
    host_count: int | None = None,
) -> tuple[int, str]:
    """Read the CPU and memory limits and return ``auto_workers``' (count, explanation)."""
    cpus, cpu_source = detect_cpus(cgroup_root, proc_root, affinity, host_count)
    memory, memory_source = detect_memory(cgroup_root, proc_root)
    return auto_workers(cpus, memory, per_worker, cpu_source, memory_source)
