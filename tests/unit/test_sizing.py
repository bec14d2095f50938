"""greenhorn.master.sizing: cgroup v1/v2 CPU and memory limits read from fake trees in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenhorn.master import sizing
from greenhorn.master.sizing import MIB

GIB = 1024 * MIB
V1_NO_LIMIT = "9223372036854771712"


def make_tree(
    tmp_path: Path,
    cgroup: str | None,
    files: dict[str, str] | None = None,
    meminfo: str | None = None,
) -> tuple[str, str]:
    """Build <tmp>/cgroup (files relative to it) and <tmp>/proc (self/cgroup, meminfo);
    returns (cgroup_root, proc_root)."""
    cg_root, proc_root = tmp_path / "cgroup", tmp_path / "proc"
    cg_root.mkdir()
    (proc_root / "self").mkdir(parents=True)
    if cgroup is not None:
        (proc_root / "self" / "cgroup").write_text(cgroup)
    if meminfo is not None:
        (proc_root / "meminfo").write_text(meminfo)
    for rel, content in (files or {}).items():
        path = cg_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
    return str(cg_root), str(proc_root)


# -- CPU -------------------------------------------------------------------------------


def test_v2_limited(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path, "0::/app.slice/web.service\n", {"app.slice/web.service/cpu.max": "150000 100000"}
    )
    assert sizing.read_cpu_limit(*roots) == (1.5, "cgroup v2 cpu.max")
    assert sizing.read_cpu_limit(*roots)[0] == 1.5
    assert sizing.detect_cpus(*roots, affinity={0, 1, 2, 3})[0] == 1.5


def test_v2_max_is_unlimited(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/web\n", {"web/cpu.max": "max 100000"})
    assert sizing.read_cpu_limit(*roots) == (None, "cgroup v2 cpu.max")
    assert sizing.detect_cpus(*roots, affinity={0, 1, 2, 3}) == (4.0, "sched_getaffinity")


def test_v2_fractional_quota_gives_two_workers(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/\n", {"cpu.max": "50000 100000"})
    cpus, source = sizing.detect_cpus(*roots, affinity={0, 1})
    assert (cpus, source) == (0.5, "cgroup v2 cpu.max")
    assert sizing.auto_workers(cpus, None, None, source)[0] == 2


def test_v2_parent_limit_applies(tmp_path: Path) -> None:
    files = {"app.slice/cpu.max": "100000 100000", "app.slice/web/cpu.max": "400000 100000"}
    roots = make_tree(tmp_path, "0::/app.slice/web\n", files)
    assert sizing.read_cpu_limit(*roots)[0] == 1.0


def test_v2_falls_back_to_root_files_when_path_missing(tmp_path: Path) -> None:
    # a container whose /proc/self/cgroup shows the host path, mounted at the root
    roots = make_tree(tmp_path, "0::/docker/abc123\n", {"cpu.max": "200000 100000"})
    assert sizing.read_cpu_limit(*roots)[0] == 2.0


def test_missing_self_cgroup_reads_the_root(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, None, {"cpu.max": "300000 100000", "memory.max": str(GIB)})
    assert sizing.read_cpu_limit(*roots)[0] == 3.0
    assert sizing.read_memory_limit(*roots)[0] == GIB


def test_v1_quota_and_period(tmp_path: Path) -> None:
    files = {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
    }
    roots = make_tree(tmp_path, "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", files)
    assert sizing.read_cpu_limit(*roots) == (2.5, "cgroup v1 cpu.cfs_quota_us")


def test_v1_separate_cpu_hierarchy_in_hybrid_mode(tmp_path: Path) -> None:
    cgroup = "2:cpuacct:/\n1:cpu:/job\n0::/\n"  # hybrid: a v2 line without controllers
    files = {"cpu/job/cpu.cfs_quota_us": "50000", "cpu/job/cpu.cfs_period_us": "100000"}
    roots = make_tree(tmp_path, cgroup, files)
    assert sizing.read_cpu_limit(*roots) == (0.5, "cgroup v1 cpu.cfs_quota_us")


def test_v1_unlimited(tmp_path: Path) -> None:
    files = {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}
    roots = make_tree(tmp_path, "3:cpu,cpuacct:/\n", files)
    assert sizing.read_cpu_limit(*roots) == (None, "cgroup v1 cpu.cfs_quota_us")
    assert sizing.detect_cpus(*roots, affinity={0, 1, 2}, host_count=64) == (
        3.0,
        "sched_getaffinity",
    )


def test_affinity_smaller_than_quota_wins(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/\n", {"cpu.max": "800000 100000"})
    assert sizing.detect_cpus(*roots, affinity={3}) == (1.0, "sched_getaffinity")


def test_nothing_known_falls_back_to_cpu_count(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, None)
    assert sizing.read_cpu_limit(*roots) == (None, "")
    assert sizing.detect_cpus(*roots, affinity=set(), host_count=6) == (6.0, "os.cpu_count")
    assert sizing.detect_cpus(*roots, affinity=set(), host_count=0) == (1.0, "default")


@pytest.mark.parametrize(
    ("cgroup", "files"),
    [
        ("0::/\n", {"cpu.max": "lots of cpu"}),
        ("0::/\n", {"cpu.max": ""}),
        ("0::/\n", {"cpu.max": "-5 100000"}),
        ("0::/\n", {"cpu.max": "100000 0"}),
        ("3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "abc", "cpu/cpu.cfs_period_us": "100000"}),
        ("3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "50000"}),  # period missing
        ("garbage\n:::\n", {}),
        ("0::/../../etc\n", {}),
    ],
)
def test_garbage_is_ignored(tmp_path: Path, cgroup: str, files: dict[str, str]) -> None:
    roots = make_tree(tmp_path, cgroup, files)
    assert sizing.read_cpu_limit(*roots)[0] is None
    assert sizing.detect_cpus(*roots, affinity={0, 1})[0] == 2.0


def test_unreadable_file_is_ignored(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/\n")
    (Path(roots[0]) / "cpu.max").mkdir()  # a directory where a file is expected
    assert sizing.read_cpu_limit(*roots)[0] is None


# -- memory ----------------------------------------------------------------------------

MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000 kB\n"


def test_v2_memory_limit(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/web\n", {"web/memory.max": str(GIB)}, MEMINFO)
    assert sizing.read_memory_limit(*roots) == (GIB, "cgroup v2 memory.max")
    assert sizing.detect_memory(*roots) == (GIB, "cgroup v2 memory.max")


def test_v2_memory_max_is_unlimited(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/web\n", {"web/memory.max": "max"}, MEMINFO)
    assert sizing.read_memory_limit(*roots) == (None, "cgroup v2 memory.max")
    assert sizing.detect_memory(*roots) == (16384000 * 1024, "/proc/meminfo MemTotal")


def test_v2_memory_parent_limit(tmp_path: Path) -> None:
    files = {"a/memory.max": str(512 * MIB), "a/b/memory.max": "max"}
    roots = make_tree(tmp_path, "0::/a/b\n", files)
    assert sizing.read_memory_limit(*roots)[0] == 512 * MIB


def test_v1_memory_limit(tmp_path: Path) -> None:
    files = {"memory/docker/abc/memory.limit_in_bytes": str(512 * MIB)}
    roots = make_tree(tmp_path, "4:memory:/docker/abc\n", files)
    assert sizing.read_memory_limit(*roots) == (512 * MIB, "cgroup v1 memory.limit_in_bytes")


def test_v1_memory_unlimited(tmp_path: Path) -> None:
    files = {"memory/memory.limit_in_bytes": V1_NO_LIMIT}
    roots = make_tree(tmp_path, "4:memory:/\n", files, MEMINFO)
    assert sizing.read_memory_limit(*roots)[0] is None
    assert sizing.detect_memory(*roots)[1] == "/proc/meminfo MemTotal"


def test_limit_above_ram_means_ram(tmp_path: Path) -> None:
    roots = make_tree(tmp_path, "0::/\n", {"memory.max": str(64 * GIB)}, MEMINFO)
    assert sizing.detect_memory(*roots) == (16384000 * 1024, "/proc/meminfo MemTotal")


@pytest.mark.parametrize("content", ["unknown", "", "-1", "12.5"])
def test_memory_garbage_is_ignored(tmp_path: Path, content: str) -> None:
    roots = make_tree(tmp_path, "0::/\n", {"memory.max": content})
    assert sizing.read_memory_limit(*roots)[0] is None


def test_host_memory(tmp_path: Path) -> None:
    assert sizing.host_memory(make_tree(tmp_path, None, meminfo=MEMINFO)[1]) == 16384000 * 1024
    (tmp_path / "proc" / "meminfo").write_text("MemTotal: lots\n")
    assert sizing.host_memory(str(tmp_path / "proc")) is None
    assert sizing.host_memory(str(tmp_path / "nowhere")) is None
    assert sizing.detect_memory(str(tmp_path / "x"), str(tmp_path / "nowhere")) == (None, "")


# -- worker count ----------------------------------------------------------------------


def test_auto_workers_explains_its_inputs() -> None:
    count, why = sizing.auto_workers(
        1.5, GIB, 256 * MIB, "cgroup v2 cpu.max", "cgroup v2 memory.max"
    )
    assert count == 4
    assert why == (
        "cpus=1.5 (cgroup v2 cpu.max) memory=1024 MiB (cgroup v2 memory.max) "
        "per-worker=256 MiB -> 4 workers (cpu-bound)"
    )


def test_auto_workers_memory_bound() -> None:
    assert sizing.auto_workers(8, GIB, 512 * MIB) == (
        2,
        "cpus=8 memory=1024 MiB per-worker=512 MiB -> 2 workers (memory-bound)",
    )


def test_auto_workers_at_least_one() -> None:
    assert sizing.auto_workers(4, 100 * MIB, 512 * MIB)[0] == 1
    assert sizing.auto_workers(0, None, None) == (1, "cpus=0 -> 1 worker (cpu-bound)")


@pytest.mark.parametrize(("cpus", "workers"), [(0.5, 2), (1, 3), (1.5, 4), (2, 5), (2.7, 6)])
def test_auto_workers_cpu_formula(cpus: float, workers: int) -> None:
    assert sizing.auto_workers(cpus, None, 256 * MIB)[0] == workers


def test_plan_workers_from_a_tree(tmp_path: Path) -> None:
    files = {"cpu.max": "200000 100000", "memory.max": str(GIB)}
    roots = make_tree(tmp_path, "0::/\n", files, MEMINFO)
    count, why = sizing.plan_workers(300 * MIB, *roots, affinity={0, 1, 2, 3})
    assert count == 3
    assert why == (
        "cpus=2 (cgroup v2 cpu.max) memory=1024 MiB (cgroup v2 memory.max) "
        "per-worker=300 MiB -> 3 workers (memory-bound)"
    )


def test_plan_workers_on_this_machine_never_raises() -> None:
    count, why = sizing.plan_workers(256 * MIB)
    assert count >= 1 and why.startswith("cpus=")
