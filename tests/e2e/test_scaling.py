"""Worker sizing, autoscaling and recycling through the real master (issue 10)."""

from __future__ import annotations

import os
import platform
import re
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import proc_status, wait_until


def test_workers_auto_with_worker_memory(greenhorn):
    s = greenhorn("hello:app", "-w", "auto", "--worker-memory", "64")
    line = s.wait_for_log(r"Auto-sizing workers: (.*-> (\d+) workers?.*)")[0]
    count = int(line[1])
    assert "cpus=" in line[0] and "per-worker=64 MiB" in line[0]
    assert len(s.wait_workers(count)) == count


def test_workers_auto_measures_the_first_worker(greenhorn):
    s = greenhorn("hello:app", "-w", "auto")
    line = s.wait_for_log(r"Auto-sizing workers: (.*-> (\d+) workers?.*measured.*)")[0]
    count = int(line[1])
    assert "per-worker=" in line[0]
    assert len(s.wait_workers(count)) == count


def test_autoscaling_rises_under_a_burst_and_falls_back(greenhorn, tmp_path):
    changes = tmp_path / "changes.log"
    conf = tmp_path / "scale.conf.py"
    conf.write_text(
        "def nworkers_changed(server, new, old):\n"
        f"    open({str(changes)!r}, 'a').write(f'{{old}}->{{new}}\\n')\n"
    )
    s = greenhorn(
        "slow:app",
        "-c",
        str(conf),
        "-w",
        "1",
        "--workers-min",
        "1",
        "--workers-max",
        "3",
        ready_path="/?t=0",
    )
    s.wait_workers(1)
    stop = threading.Event()

    def burst() -> None:
        while not stop.is_set():
            try:
                requests.get(s.url("/?t=0.5"), timeout=30)
            except requests.RequestException:
                pass

    threads = [threading.Thread(target=burst) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(s.worker_pids()) >= 2, 20, what="scale up")
        s.wait_for_log(r"Autoscaling: 1 -> 2 workers")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    wait_until(lambda: len(s.worker_pids()) == 1, 40, every=0.5, what="scale back down")
    s.wait_for_log(r"Autoscaling: \d -> 1 workers: idle")
    text = changes.read_text()
    assert "1->2" in text and text.strip().endswith("->1"), text


def test_soft_memory_limit_replaces_before_retiring(greenhorn):
    s = greenhorn("leak:app", "-w", "2", "--max-worker-memory", "80")
    first = set(s.wait_workers(2))
    for _ in range(6):
        assert s.get("/?mb=20").status_code == 200
    m = s.wait_for_log(r"Recycling worker \(pid:(\d+)\): memory \d+ MiB over the limit")
    victim = int(m[0])
    assert victim in first
    s.wait_for_log(rf"Worker exited \(pid: {victim}\) \[memory\]", timeout=20)
    log = s.log
    # the replacement booted before the victim was told to go
    boot = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)]
    replacement = boot[2]
    assert log.index(f"Booting worker with pid: {replacement}") < log.index(
        f"Worker exited (pid: {victim})"
    )
    assert s.get("/?mb=1").status_code == 200


def test_hard_memory_limit_kills_at_once(greenhorn):
    s = greenhorn("leak:app", "-w", "1", "--max-worker-memory-hard", "90")
    victim = s.wait_workers(1)[0]
    for _ in range(5):
        try:
            requests.get(s.url("/?mb=25"), timeout=10)
        except requests.RequestException:
            pass
        if f"Killing worker (pid:{victim})" in s.log:
            break
        time.sleep(1.2)
    s.wait_for_log(rf"Killing worker \(pid:{victim}\): memory \d+ MiB over the hard limit")
    s.wait_for_log(rf"Worker \(pid:{victim}\) was killed by SIGKILL \[memory-hard\]")
    s.wait_workers(1, exclude={victim})


def _rss_kib(pid: int) -> int:
    return proc_status(pid, "Rss", "smaps_rollup")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_idle_sync_worker_gives_large_body_memory_back(greenhorn, tmp_path):
    # An app that returns the body it read: after a few 2 MiB uploads glibc serves them from
    # the main heap and keeps the freed top resident (about the body's size); once the worker
    # has been idle for a poll period (1 s) it hands that memory back (heap.py).
    (tmp_path / "bigecho.py").write_text(
        "def app(environ, start_response):\n"
        "    body = environ['wsgi.input'].read()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )
    s = greenhorn("bigecho:app", "-w", "1", "--chdir", str(tmp_path))
    pid = s.wait_workers(1)[0]
    assert requests.post(s.url(), data=b"x" * 100, timeout=10).content == b"x" * 100
    before = _rss_kib(pid)
    body = b"y" * (2 << 20)
    for _ in range(3):
        assert requests.post(s.url(), data=body, timeout=30).content == body
    # without the release the worker stays ~2 MiB above `before` for good
    wait_until(
        lambda: _rss_kib(pid) <= before + 512,
        timeout=15,
        every=0.2,
        what=f"worker RSS back near {before} KiB (now {_rss_kib(pid)} KiB)",
    )
    assert s.worker_pids() == [pid]  # the same worker, not a replacement


def test_max_worker_lifetime_recycles_one_at_a_time(greenhorn):
    s = greenhorn("hello:app", "-w", "2", "--max-worker-lifetime", "2")
    first = set(s.wait_workers(2))

    def all_replaced() -> bool:
        return not (set(s.worker_pids()) & first)

    low = [2]

    def watch() -> bool:
        low[0] = min(low[0], len(s.worker_pids()))
        return all_replaced()

    wait_until(watch, 30, every=0.05, what="all original workers replaced")
    assert low[0] >= 1, "capacity dropped below N-1"
    s.wait_for_log(r"\[lifetime\]", count=2)  # the master logs each exit once reaped


# Loaded only when a setting needs them: each would be imported by the master and shared,
# copy-on-write, by every worker (ssl alone maps libssl and libcrypto: ~4.8 MiB of RSS;
# tempfile brings shutil and the bz2 and lzma libraries: ~0.6 MiB).
OPTIONAL_MODULES = (
    "ssl",
    "email",
    "difflib",
    "configparser",
    "logging.config",
    "logging.handlers",
    "tempfile",
    "shutil",
    "bz2",
    "lzma",
)


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_a_plain_server_does_not_load_modules_it_never_uses(greenhorn, kind):
    """Started with ``python -S`` (the packages' paths in PYTHONPATH instead), so start-up
    hooks in ``.pth`` files cannot load any of these first and hide a regression (this
    machine's interpreter imports certifi, and with it tempfile, into every process)."""
    import greenhorn as package

    paths = [str(Path(package.__file__).resolve().parents[1]), *filter(None, sys.path)]
    s = greenhorn(
        "modules:app",
        "-k",
        kind,
        "--access-logfile",
        "-",
        python_flags=("-S",),
        env={"PYTHONPATH": os.pathsep.join(paths)},
    )
    loaded = set(s.get("/").text.split("\n"))
    assert "greenhorn.workers.handler" in loaded and "site" not in loaded
    assert not loaded & set(OPTIONAL_MODULES), sorted(loaded & set(OPTIONAL_MODULES))
