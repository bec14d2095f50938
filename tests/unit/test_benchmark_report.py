"""The benchmark's own arithmetic: how busy a CPU was, and how the ceiling target is judged.

Why: ``benchmarks/run.py`` prints verdicts on issue 11's targets; a verdict that could not
say "MISSES" would be worthless. The load itself is never run here (no timing in tests).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import procstat
import run


def _ceiling_summary(share: float, busy: float | None) -> dict:
    greenhorn = {"available": True, "rps": 1000.0 * share, "server_cpu_busy": busy}
    floor = {"available": True, "rps": 1000.0, "server_cpu_busy": 0.4}
    return {
        "hello_ceiling": {
            "title": "ceiling",
            "greenhorn": greenhorn,
            "floor": floor,
            "floor_ratio": run.ratios(greenhorn, floor),
        }
    }


@pytest.mark.parametrize(
    ("share", "busy", "verdict"),
    [
        (0.97, 0.80, "meets"),
        (0.90, 0.94, "meets"),
        (0.85, 0.80, "MISSES"),  # short of the load generator's ceiling
        (0.97, 0.99, "MISSES"),  # keeps up, but only just: the server is the limit
        (0.97, None, "MISSES"),  # busy unknown: no claim
    ],
)
def test_the_ceiling_target_needs_the_floors_rate_and_a_server_cpu_with_room(
    share: float, busy: float | None, verdict: str
) -> None:
    (line,) = [x for x in run.target_lines(_ceiling_summary(share, busy)) if "ceiling" in x]
    assert f"{share:.2f}x the floor's, {verdict}" in line


def test_the_table_has_a_greenhorn_to_floor_row() -> None:
    summary = _ceiling_summary(0.95, 0.8)
    for agg in (summary["hello_ceiling"]["greenhorn"], summary["hello_ceiling"]["floor"]):
        agg.update(
            {key: 1.0 for key in run.FIGURES if key not in agg},
            errors_total=0,
            worker_cpu_share=[1.0],
        )
    table = run.markdown(summary)
    assert "| | greenhorn/floor | 0.95x |" in table
    assert "950 (server CPU 80% busy)" in table


def test_cpu_busy_sees_a_cpu_this_process_keeps_busy() -> None:
    cpu = min(os.sched_getaffinity(0))
    before_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        start = procstat.cpu_ticks({cpu})
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
        busy = procstat.cpu_busy(start, procstat.cpu_ticks({cpu}))
    finally:
        os.sched_setaffinity(0, before_affinity)
    assert busy is not None and 0.5 <= busy <= 1.0


def test_cpu_busy_without_cpus_or_time_is_unknown() -> None:
    assert procstat.cpu_ticks(set()) is None
    assert procstat.cpu_busy(None, None) is None
    assert procstat.cpu_busy((100, 50), (100, 50)) is None  # no tick elapsed
    assert procstat.cpu_busy((100, 50), (200, 75)) == 0.75
