"""greenhorn against gunicorn under wrk: same app, same machine, same run, interleaved.

Why this script: absolute figures move by half between two machines of the same kind, and
other work on a shared machine moves them within a run. What holds is a ratio between two
servers measured side by side. So each scenario runs greenhorn, then gunicorn, then greenhorn
again... (A B A B, ``--rounds`` times each), every run on a freshly started server, and the
report gives each server's median over its rounds and the ratio greenhorn/gunicorn.

Per run: wrk's req/s and latency p50/p99; server CPU per request (utime+stime of the master
and all its descendants from /proc, before and after the run, divided by the requests wrk
completed); PSS per worker after the run; how the CPU split between the workers (a worker
that hoards the listening socket shows up here).

Scenarios (2 workers each; see README.md):

- ``hello_close``: hello world, sync worker, ``Connection: close`` (a connection per request);
- ``hello_ceiling``: the same requests, but wrk (one thread) has a CPU of its own and the
  server the other CPUs (one sync worker per CPU): does the server keep up with everything
  the load generator can send? The floor server's req/s is that ceiling; the report gives
  greenhorn's req/s as a fraction of it and how busy the server's CPUs were (needs 2 CPUs);
- ``hello_keepalive``: hello world, ``-k gthread --threads 4``, keep-alive;
- ``big_64k``: a 64 KiB response, sync worker, a connection per request;
- ``post_1m``: a 1 MiB POST echoed back, sync worker, a connection per request;
- ``stream_chunked``: a 64 KiB response streamed as 32 items without a length
  (chunked), ``-k gthread --threads 4``, keep-alive;
- ``asgi_keepalive``, ``asgi_close``: an ASGI hello (``apps/asgiapp.py``) under
  ``greenhorn -k asgi``, ``gunicorn -k asgi`` (both ``--asgi-loop asyncio``) and uvicorn's
  default install (``--loop asyncio --http h11``), keep-alive and a connection per request;
- ``asgi_keepalive_uvloop``, ``asgi_close_uvloop``: the same with uvloop on every side and
  uvicorn's httptools parser.

It installs nothing. It needs wrk (``apt-get install wrk``) and, for the comparison, a Python
that can import gunicorn (auto-detected; ``--gunicorn-python``), and for the ASGI scenarios
one with ``uvicorn[standard]`` (the gunicorn one is tried first; ``--uvicorn-python``)::

    python benchmarks/run.py                       # everything, 2 rounds, 5 s per run
    python benchmarks/run.py --scenarios hello_close --rounds 4 --duration 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from detect import (  # noqa: E402
    HOW_TO_GET_GUNICORN,
    HOW_TO_GET_UVICORN,
    HOW_TO_GET_WRK,
    find_gunicorn_python,
    find_uvicorn_python,
    find_wrk,
    import_path,
)
from loadgen import LoadSpec, run_wrk  # noqa: E402
from procstat import cpu_busy, cpu_seconds, cpu_ticks, pss_kib  # noqa: E402
from servers import Probe, Server, ServerFailed, ServerKind  # noqa: E402

APPS_DIR = os.path.join(HERE, "apps")
RESULTS_DIR = os.path.join(HERE, "results")
MIB = 1024 * 1024
GTHREAD = ("-k", "gthread", "--threads", "4")
SYNC = ("-k", "sync")
ASGI = ("-k", "asgi")
FLOOR_SCENARIOS = ("hello_close", "hello_ceiling")  # the floor only answers hello, closing


@dataclass(frozen=True)
class Scenario:
    """One workload: the app, the worker flags, what wrk sends and the readiness probe."""

    name: str
    title: str
    app: str
    worker: tuple[str, ...]
    load: LoadSpec = field(default_factory=LoadSpec)
    probe: Probe = field(default_factory=Probe)
    pinned: bool = False  # wrk on one CPU, the server on the others (one worker per CPU)
    apps: str = "benchapp"  # the module in apps/ that holds ``app``
    uvicorn: tuple[str, ...] | None = None  # uvicorn's flags; None: uvicorn does not run it


SCENARIOS = (
    Scenario(
        "hello_close",
        "hello, new connection per request (sync)",
        "hello",
        SYNC,
        LoadSpec(close=True),
        Probe(expect_length=14),
    ),
    Scenario(
        "hello_ceiling",
        "hello, new connection per request, wrk on a CPU of its own (sync)",
        "hello",
        SYNC,
        LoadSpec(close=True, threads=1),
        Probe(expect_length=14),
        pinned=True,
    ),
    Scenario(
        "hello_keepalive",
        "hello, keep-alive (gthread, 4 threads)",
        "hello",
        GTHREAD,
        LoadSpec(),
        Probe(expect_length=14),
    ),
    Scenario(
        "big_64k",
        "64 KiB response (sync)",
        "big",
        SYNC,
        LoadSpec(close=True),
        Probe(expect_length=65536),
    ),
    Scenario(
        "post_1m",
        "1 MiB POST echo (sync)",
        "echo",
        SYNC,
        LoadSpec(close=True, method="POST", body_size=MIB),
        Probe(method="POST", body=b"a" * MIB, expect_length=MIB),
    ),
    Scenario(
        "stream_chunked",
        "64 KiB chunked stream, 32 items (gthread, keep-alive)",
        "stream",
        GTHREAD,
        LoadSpec(),
        Probe(expect_length=65536),
    ),
    # ASGI (issue 23): greenhorn -k asgi, gunicorn -k asgi and uvicorn on the same hello app.
    # asyncio everywhere, uvicorn as its default install (h11); then uvloop on every side,
    # uvicorn with httptools.
    Scenario(
        "asgi_keepalive",
        "ASGI hello, keep-alive (asyncio; uvicorn h11)",
        "hello",
        (*ASGI, "--asgi-loop", "asyncio"),
        LoadSpec(),
        Probe(expect_length=14),
        apps="asgiapp",
        uvicorn=("--loop", "asyncio", "--http", "h11"),
    ),
    Scenario(
        "asgi_keepalive_uvloop",
        "ASGI hello, keep-alive (uvloop; uvicorn httptools)",
        "hello",
        (*ASGI, "--asgi-loop", "uvloop"),
        LoadSpec(),
        Probe(expect_length=14),
        apps="asgiapp",
        uvicorn=("--loop", "uvloop", "--http", "httptools"),
    ),
    Scenario(
        "asgi_close",
        "ASGI hello, new connection per request (asyncio; uvicorn h11)",
        "hello",
        (*ASGI, "--asgi-loop", "asyncio"),
        LoadSpec(close=True),
        Probe(expect_length=14),
        apps="asgiapp",
        uvicorn=("--loop", "asyncio", "--http", "h11"),
    ),
    Scenario(
        "asgi_close_uvloop",
        "ASGI hello, new connection per request (uvloop; uvicorn httptools)",
        "hello",
        (*ASGI, "--asgi-loop", "uvloop"),
        LoadSpec(close=True),
        Probe(expect_length=14),
        apps="asgiapp",
        uvicorn=("--loop", "uvloop", "--http", "httptools"),
    ),
)
ASGI_SCENARIOS = tuple(s.name for s in SCENARIOS if s.uvicorn is not None)


FIGURES = (
    "rps",
    "mib_per_s",
    "p50_ms",
    "p99_ms",
    "cpu_us_per_req",
    "pss_kib_per_worker",
    "pss_rest_kib_per_worker",
    "server_cpu_busy",
)
REST_SECONDS = 2.0  # PSS is read right after the load, then again after this long idle


def run_once(
    kind: ServerKind, scenario: Scenario, wrk: str, load: LoadSpec, workers: int, warmup: float
) -> dict[str, Any]:
    """Start ``kind`` for ``scenario``, warm up, measure one wrk run, stop. Never raises."""
    record: dict[str, Any] = {"server": kind.name, "scenario": scenario.name}
    server_cpus: set[int] = set()
    if scenario.pinned:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            record.update(available=False, reason="needs 2 CPUs: one for wrk, one for the server")
            return record
        load = replace(load, threads=1, cpus=(cpus[0],))
        server_cpus = set(cpus[1:])
        workers = len(server_cpus)
    flags = ["-w", str(workers), *scenario.worker]
    if kind.cli == "uvicorn":
        flags = ["-w", str(workers), *(scenario.uvicorn or ())]
    app = f"{scenario.apps}:{scenario.app}"
    server = Server(kind, app, APPS_DIR, flags, cpus=server_cpus)
    try:
        server.start(scenario.probe)
        url = f"http://127.0.0.1:{server.port}/"
        if warmup > 0:
            run_wrk(wrk, url, replace(load, duration=warmup))
        cpu_before, per_worker_before = cpu_seconds(server.pid)
        ticks_before = cpu_ticks(server_cpus)
        result = run_wrk(wrk, url, load)
        busy = cpu_busy(ticks_before, cpu_ticks(server_cpus))
        cpu_after, per_worker_after = cpu_seconds(server.pid)
        worker_pids = server.worker_pids()
        pss = [p for p in (pss_kib(pid) for pid in worker_pids) if p is not None]
        time.sleep(REST_SECONDS)  # idle workers may give memory back (greenhorn: heap.py)
        pss_rest = [p for p in (pss_kib(pid) for pid in worker_pids) if p is not None]
        requests = result["requests"]
        cpu = cpu_after - cpu_before
        shares = [
            per_worker_after[pid] - per_worker_before[pid]
            for pid in worker_pids
            if pid in per_worker_before and pid in per_worker_after
        ]
        total_share = sum(shares) or 1.0
        master_cpu = cpu - (sum(per_worker_after.values()) - sum(per_worker_before.values()))
        record.update(
            available=True,
            requests=requests,
            duration_s=result["duration_us"] / 1e6,
            rps=requests / (result["duration_us"] / 1e6),
            mib_per_s=result["bytes"] / MIB / (result["duration_us"] / 1e6),
            p50_ms=result["p50_us"] / 1000.0,
            p99_ms=result["p99_us"] / 1000.0,
            errors=result["errors"],
            errors_total=result["errors_total"],
            cpu_s=cpu,
            cpu_us_per_req=cpu / requests * 1e6 if requests else None,
            master_cpu_us_per_req=master_cpu / requests * 1e6 if requests else None,
            pss_kib_per_worker=statistics.mean(pss) if pss else None,
            pss_kib_workers=pss,
            pss_rest_kib_per_worker=statistics.mean(pss_rest) if pss_rest else None,
            pss_kib_master=pss_kib(server.pid),
            worker_cpu_share=sorted((round(s / total_share, 3) for s in shares), reverse=True),
            server_cpu_busy=busy,
        )
    except ServerFailed as exc:
        record.update(available=False, reason=str(exc))
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        record.update(available=False, reason=f"measurement failed: {exc}")
    finally:
        server.stop()
    return record


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the rounds of one server in one scenario."""
    ok = [r for r in runs if r.get("available")]
    if not ok:
        reason = runs[0].get("reason", "not run") if runs else "not run"
        return {"available": False, "reason": reason}
    out: dict[str, Any] = {"available": True, "rounds": len(ok)}
    for key in FIGURES:
        values = [r[key] for r in ok if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["errors_total"] = sum(r["errors_total"] for r in ok)
    out["requests"] = sum(r["requests"] for r in ok)
    out["worker_cpu_share"] = ok[-1]["worker_cpu_share"]
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(gh: dict[str, Any], gu: dict[str, Any]) -> dict[str, float | None]:
    """greenhorn / gunicorn for every figure (for CPU, latency and PSS lower is better)."""
    if not gh.get("available") or not gu.get("available"):
        return {}
    return {k: _ratio(gh.get(k), gu.get(k)) for k in FIGURES}


def paired_cpu_ratios(
    runs: list[dict[str, Any]], scenario: str, other: str = "gunicorn"
) -> list[float]:
    """CPU per request greenhorn/``other`` within each round (how much the ratio moved)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["scenario"] == scenario and r.get("available") and r.get("cpu_us_per_req"):
            by_round.setdefault(r["round"], {})[r["server"]] = r["cpu_us_per_req"]
    return [
        v["greenhorn"] / v[other]
        for _, v in sorted(by_round.items())
        if "greenhorn" in v and other in v
    ]


def _fmt_rps(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _fmt_x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def markdown(summary: dict[str, Any]) -> str:
    """The report table: each server's medians, then the ratio row greenhorn/gunicorn."""
    head = (
        "| scenario | server | req/s | MiB/s | p50 ms | p99 ms | CPU us/req "
        "| PSS MiB/worker (after / at rest) | worker CPU split | errors |"
    )
    rows = [head, "|" + "---|" * 10]
    for entry in summary.values():
        title = entry["title"]
        for server in ("greenhorn", "gunicorn", "uvicorn", "floor"):
            agg = entry.get(server)
            if agg is None:
                continue
            if not agg["available"]:
                reason = agg["reason"][:120].replace("|", "/")
                rows.append(f"| {title} | {server} | not available: {reason} |||||||| ")
                title = ""
                continue
            pss = f"{_mib(agg['pss_kib_per_worker'])} / {_mib(agg['pss_rest_kib_per_worker'])}"
            split = "/".join(f"{s * 100:.0f}" for s in agg["worker_cpu_share"])
            rps = _fmt_rps(agg["rps"])
            if agg.get("server_cpu_busy") is not None:
                rps += f" (server CPU {agg['server_cpu_busy'] * 100:.0f}% busy)"
            rows.append(
                f"| {title} | {server} | {rps} | {_fmt(agg['mib_per_s'])} "
                f"| {_fmt(agg['p50_ms'], 2)} | {_fmt(agg['p99_ms'], 2)} "
                f"| {_fmt(agg['cpu_us_per_req'], 0)} | {pss} "
                f"| {split or '-'} | {agg['errors_total']} |"
            )
            title = ""
        r = entry.get("ratio") or {}
        if r:
            cpu = r.get("cpu_us_per_req")
            cheaper = f" ({1 / cpu:.1f}x cheaper" if cpu else " ("
            spread = entry.get("cpu_ratio_rounds") or []
            if len(spread) > 1:
                cheaper += f"; rounds {min(spread):.2f}-{max(spread):.2f}"
            cheaper = cheaper + ")" if cheaper != " (" else ""
            rows.append(
                f"| | **greenhorn/gunicorn** | **{_fmt_x(r['rps'])}** | {_fmt_x(r['mib_per_s'])} "
                f"| {_fmt_x(r['p50_ms'])} | {_fmt_x(r['p99_ms'])} "
                f"| **{_fmt_x(cpu)}**{cheaper} "
                f"| {_fmt_x(r['pss_kib_per_worker'])} / {_fmt_x(r['pss_rest_kib_per_worker'])} | | |"
            )
        f = entry.get("floor_ratio") or {}
        if f:
            rows.append(
                f"| | greenhorn/floor | {_fmt_x(f['rps'])} | | | | {_fmt_x(f['cpu_us_per_req'])} "
                "| | | |"
            )
        u = entry.get("uvicorn_ratio") or {}
        if u:
            cpu = u.get("cpu_us_per_req")
            spread = entry.get("cpu_ratio_rounds_uvicorn") or []
            note = f" ({1 / cpu:.1f}x cheaper" if cpu else ""
            if note and len(spread) > 1:
                note += f"; rounds {min(spread):.2f}-{max(spread):.2f}"
            note += ")" if note else ""
            rows.append(
                f"| | **greenhorn/uvicorn** | **{_fmt_x(u['rps'])}** | | {_fmt_x(u['p50_ms'])} "
                f"| {_fmt_x(u['p99_ms'])} | **{_fmt_x(cpu)}**{note} "
                f"| {_fmt_x(u['pss_kib_per_worker'])} / {_fmt_x(u['pss_rest_kib_per_worker'])} | | |"
            )
    return "\n".join(rows)


REFERENCE_GUNICORN_SYNC_US = 119.0  # gunicorn sync hello on the machine the targets were set on
CEILING_SHARE = 0.9  # "at the load generator's ceiling": this share of the floor's req/s...
CEILING_BUSY = 0.95  # ...while the server's CPU still has room (it is not the limit)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def target_lines(summary: dict[str, Any]) -> list[str]:
    """The issues' targets, judged on ratios measured in this run."""
    out = []

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    for name, entry in summary.items():
        f = entry.get("floor_ratio") or {}
        if name == "hello_ceiling" and f.get("rps"):
            busy = entry["greenhorn"].get("server_cpu_busy")
            floor_busy = entry["floor"].get("server_cpu_busy")
            unsaturated = busy is not None and busy < CEILING_BUSY
            out.append(
                f"- sync hello req/s at the load generator's ceiling (wrk alone on a CPU, the "
                f"floor's req/s is its ceiling): {f['rps']:.2f}x the floor's, "
                f"{verdict(f['rps'] >= CEILING_SHARE and unsaturated)} (server CPU "
                f"{_pct(busy)} busy, the floor's {_pct(floor_busy)}; needs >= "
                f"{CEILING_SHARE:g}x with the server's CPU not saturated)"
            )
        r = entry.get("ratio") or {}
        if not r:
            continue
        if name == "hello_close" and r.get("cpu_us_per_req"):
            cpu = r["cpu_us_per_req"]
            scaled = cpu * REFERENCE_GUNICORN_SYNC_US
            out.append(
                f"- sync hello CPU/request >= 4.5x cheaper than gunicorn: {1 / cpu:.1f}x, "
                f"{verdict(cpu <= 1 / 4.5)} (= {scaled:.0f} us at gunicorn's "
                f"{REFERENCE_GUNICORN_SYNC_US:g} us on the reference machine; target <= 25 us)"
            )
        elif name in ASGI_SCENARIOS and r.get("cpu_us_per_req"):
            out.extend(_asgi_targets(name, entry))
            continue
        elif name == "hello_keepalive" and r.get("rps"):
            out.append(
                f"- gthread keep-alive req/s >= 3x gunicorn gthread: {r['rps']:.2f}x, "
                f"{verdict(r['rps'] >= 3.0)}"
            )
        elif r.get("rps"):
            out.append(
                f"- {name} throughput >= gunicorn's: {r['rps']:.2f}x, {verdict(r['rps'] >= 1.0)}"
            )
        if r.get("pss_kib_per_worker"):
            pss, rest = r["pss_kib_per_worker"], r.get("pss_rest_kib_per_worker")
            line = f"  {name} PSS per worker <= gunicorn's: right after the load {pss:.2f}x, "
            line += verdict(pss <= 1.0)
            if rest:
                line += f"; at rest ({REST_SECONDS:g} s later) {rest:.2f}x, {verdict(rest <= 1.0)}"
            out.append(line)
    return out


def _asgi_targets(name: str, entry: dict[str, Any]) -> list[str]:
    """Issue 23: >= 1.5x cheaper than gunicorn -k asgi and >= 2.5x cheaper than uvicorn's
    default install (asyncio); with uvloop on both sides, at least as cheap as uvicorn with
    httptools (CPU per request)."""
    gu = entry["ratio"]["cpu_us_per_req"]
    out = [
        f"- {name}: CPU/request >= 1.5x cheaper than gunicorn -k asgi: {1 / gu:.2f}x, "
        f"{'meets' if gu <= 1 / 1.5 else 'MISSES'}"
    ]
    uv = (entry.get("uvicorn_ratio") or {}).get("cpu_us_per_req")
    if uv:
        want = 1.0 if name.endswith("_uvloop") else 2.5
        what = "uvicorn httptools+uvloop" if want == 1.0 else "uvicorn's default install"
        out.append(
            f"  {name}: CPU/request >= {want:g}x cheaper than {what}: {1 / uv:.2f}x, "
            f"{'meets' if uv <= 1 / want else 'MISSES'}"
        )
    return out


def machine_info(wrk: str) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0:1],
        "loadavg_before": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    names = [s.name for s in SCENARIOS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(names), help=f"comma list of {names}")
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds per scenario (default 2)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    ap.add_argument(
        "--servers",
        default="greenhorn,gunicorn,uvicorn",
        help="comma list of greenhorn, gunicorn, uvicorn (ASGI scenarios only), floor (the "
        "pure-Python floor, hello_close only)",
    )
    ap.add_argument("--gunicorn-python", help="a Python that can import gunicorn")
    ap.add_argument("--uvicorn-python", help="a Python with uvicorn[standard] (ASGI scenarios)")
    ap.add_argument("--wrk", help="path to wrk (default: from PATH)")
    ap.add_argument("--out", help="JSON file (default benchmarks/results/<timestamp>.json)")
    args = ap.parse_args(argv)

    wanted = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        ap.error(f"unknown scenarios {unknown}; choose from {names}")
    scenarios = [s for s in SCENARIOS if s.name in wanted]
    wrk = find_wrk(args.wrk)
    if wrk is None:
        print(f"wrk not found: {HOW_TO_GET_WRK}.", file=sys.stderr)
        return 2
    import greenhorn

    kinds = {
        "greenhorn": ServerKind(
            "greenhorn",
            sys.executable,
            ("-m", "greenhorn"),
            greenhorn.__version__,
            import_path(sys.executable),
        ),
        "floor": ServerKind(
            "floor",
            sys.executable,
            (os.path.join(HERE, "floor_server.py"),),
            "-",
            import_path(sys.executable),
        ),
    }
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if "gunicorn" in servers:
        found = find_gunicorn_python(args.gunicorn_python)
        if found is None:
            print(
                f"gunicorn not found: running greenhorn alone. To compare, {HOW_TO_GET_GUNICORN}."
            )
        else:
            kinds["gunicorn"] = ServerKind(
                "gunicorn", found[0], ("-m", "gunicorn"), found[1], import_path(found[0])
            )
    if "uvicorn" in servers and any(s.uvicorn is not None for s in scenarios):
        gunicorn_python = kinds["gunicorn"].python if "gunicorn" in kinds else None
        found = find_uvicorn_python(args.uvicorn_python, gunicorn_python)
        if found is None:
            print(f"uvicorn not found: the ASGI scenarios run without it. {HOW_TO_GET_UVICORN}.")
        else:
            kinds["uvicorn"] = ServerKind(
                "uvicorn", found[0], ("-m", "uvicorn"), found[1], import_path(found[0]), "uvicorn"
            )
    kinds = {k: v for k, v in kinds.items() if k in servers}

    started = time.strftime("%Y%m%dT%H%M%S")
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine_info(wrk),
        "versions": {k: v.version for k, v in kinds.items()},
        "settings": vars(args),
        "runs": [],
    }
    runs: list[dict[str, Any]] = report["runs"]
    for rnd in range(args.rounds):
        for scenario in scenarios:
            load = replace(
                scenario.load,
                duration=args.duration,
                connections=args.connections,
                threads=args.wrk_threads,
            )
            for kind in kinds.values():  # A B, then A B again next round
                if kind.name == "floor" and scenario.name not in FLOOR_SCENARIOS:
                    continue
                if kind.cli == "uvicorn" and scenario.uvicorn is None:
                    continue
                record = run_once(kind, scenario, wrk, load, args.workers, args.warmup)
                record["round"] = rnd
                runs.append(record)
                _progress(record)

    summary: dict[str, Any] = {}
    for scenario in scenarios:
        entry: dict[str, Any] = {"title": scenario.title}
        for name in kinds:
            mine = [r for r in runs if r["scenario"] == scenario.name and r["server"] == name]
            if mine:
                entry[name] = aggregate(mine)
        if "greenhorn" in entry and "gunicorn" in entry:
            entry["ratio"] = ratios(entry["greenhorn"], entry["gunicorn"])
            entry["cpu_ratio_rounds"] = paired_cpu_ratios(runs, scenario.name)
        if "greenhorn" in entry and "floor" in entry:
            entry["floor_ratio"] = ratios(entry["greenhorn"], entry["floor"])
        if "greenhorn" in entry and "uvicorn" in entry:
            entry["uvicorn_ratio"] = ratios(entry["greenhorn"], entry["uvicorn"])
            entry["cpu_ratio_rounds_uvicorn"] = paired_cpu_ratios(runs, scenario.name, "uvicorn")
        summary[scenario.name] = entry
    report["summary"] = summary
    report["machine"]["loadavg_after"] = os.getloadavg()

    out = args.out or os.path.join(RESULTS_DIR, f"{started}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    print()
    load = report["machine"]["loadavg_before"][0], report["machine"]["loadavg_after"][0]
    print(
        f"{versions}; {args.workers} workers; wrk -t{args.wrk_threads} -c{args.connections} "
        f"-d{args.duration:g}s; median of {args.rounds} interleaved rounds; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} before, {load[1]:.1f} after"
    )
    print()
    print(markdown(summary))
    print()
    lines = target_lines(summary)
    if lines:
        print("Targets (issues 5, 7, 11, 23), judged on ratios from this run:")
        print("\n".join(lines))
        print()
    print(f"results: {out}")
    return 0


def _progress(record: dict[str, Any]) -> None:
    label = f"[round {record['round']}] {record['scenario']:<16} {record['server']:<10}"
    if not record["available"]:
        print(f"{label} not available: {record['reason'][:200]}", flush=True)
        return
    cpu = record["cpu_us_per_req"]
    print(
        f"{label} {record['rps']:9.0f} req/s  p50 {record['p50_ms']:6.2f} ms  "
        f"p99 {record['p99_ms']:7.2f} ms  cpu {cpu if cpu is None else round(cpu)} us/req "
        f"(master {max(0.0, record['master_cpu_us_per_req'] or 0.0):.0f})  "
        f"errors {record['errors_total']}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
