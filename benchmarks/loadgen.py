"""Drive wrk and read its results as numbers, not as text meant for people.

Why a module of its own: every scenario needs the same wrk run (threads, connections,
duration, ``--latency``, optional ``Connection: close``) plus its own request (a 1 MiB POST
body for the echo), and the figures must come back exactly: wrk allows one Lua script, so
the script built here sets the request *and* prints the summary as one JSON line from wrk's
``done()`` hook (requests, bytes, errors by kind, latency percentiles in microseconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = ["LoadSpec", "run_wrk"]

MARK = "BENCH_JSON "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n%s{"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\\n',
    "MARK", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
""".replace("MARK", MARK)


@dataclass(frozen=True)
class LoadSpec:
    """What wrk sends, and how hard."""

    connections: int = 32
    threads: int = 2
    duration: float = 5.0
    close: bool = False  # send "Connection: close": one connection per request
    method: str = "GET"
    body_size: int = 0  # bytes of request body (sent with Content-Length)
    cpus: tuple[int, ...] = ()  # run wrk on these CPUs only (empty: anywhere)


def lua_script(spec: LoadSpec) -> str:
    """The wrk script for ``spec``: the request, then the JSON reporter."""
    lines = []
    if spec.method != "GET":
        lines.append(f'wrk.method = "{spec.method}"')
    if spec.body_size:
        lines.append(f'wrk.body = string.rep("a", {spec.body_size})')
        lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
    return "\n".join(lines) + _DONE


def run_wrk(wrk: str, url: str, spec: LoadSpec, timeout_margin: float = 30.0) -> dict[str, Any]:
    """Run wrk once against ``url``; return the parsed summary (see ``_DONE``)."""
    fd, path = tempfile.mkstemp(prefix="bench-", suffix=".lua")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(lua_script(spec))
        duration = max(1, round(spec.duration))
        cmd = [wrk, "-t", str(spec.threads), "-c", str(spec.connections), "-d", f"{duration}s"]
        cmd += ["--latency", "--timeout", "10s", "-s", path]
        if spec.close:
            cmd += ["-H", "Connection: close"]
        cmd.append(url)
        cpus = set(spec.cpus)
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=duration + timeout_margin,
            check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    finally:
        os.unlink(path)
    for line in out.stdout.splitlines():
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            result["errors_total"] = sum(result["errors"].values())
            return result
    raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout[-300:]}")
