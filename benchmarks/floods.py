"""Hostile clients against greenhorn and gunicorn, same attacks, same run (issue 20).

Why this script: the tests of issue 20 assert generous bounds; this measures the figures,
side by side with gunicorn, on this machine. Two parts:

- **Floods** (``-w 2``; sync, ``gthread --threads 4``, gevent): 1000 idle connections,
  1000 slowloris connections (a request line and one header byte every 0.5 s), 200 RUDY
  uploads (10 bytes/s; half declare 20 kB, half 10 MB), and 4 drippers against ``-t 5``.
  Once the flood is open, a normal client sends ``GET /`` every quarter second for
  ``--seconds`` seconds (long enough to cover the moment the kernel hands idle connections
  to the workers); the report gives the worst and the median time to its whole answer. A
  probe that waits more than ``--probe-timeout`` seconds counts as that long.
- **Memory** (``-w 1``, an app that calls ``wsgi.input.read()``): a head declaring
  ``Content-Length: 1073741824`` followed by 70 kB of body, three at once; and chunked bodies
  of 1,000,000 and 3,000,000 one-byte chunks. The figure is the growth of the worker's peak
  RSS (``VmHWM``, reset before the attack through ``/proc/<pid>/clear_refs``), and for the
  chunked bodies the seconds until the answer.

The attacking client is ``tests/hostile_clients.py``, the one the tests use. It installs nothing;
gunicorn is found as ``run.py`` finds it (``--gunicorn-python``)::

    python benchmarks/floods.py                      # everything, ~5 minutes
    python benchmarks/floods.py --parts memory --workers sync
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from detect import HOW_TO_GET_GUNICORN, find_gunicorn_python, import_path  # noqa: E402
from servers import Probe, Server, ServerFailed, ServerKind  # noqa: E402

import hostile_clients as clients  # noqa: E402  (tests/hostile_clients.py: the attackers)

APPS_DIR = os.path.join(HERE, "apps")
WORKERS = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "4"],
    "gevent": ["-k", "gevent"],
}
MIB = 1 << 20


def flood_attacks() -> dict[str, dict[str, Any]]:
    return {
        "idle": {"n": 1000, "app": "benchapp:hello"},
        "slowloris": {
            "n": 1000,
            "head": clients.SLOWLORIS,
            "drip": b"a",
            "every": 0.5,
            "app": "benchapp:hello",
        },
        "rudy": {"n": 200, "drip": b"x" * 10, "every": 1.0, "app": "benchapp:echo"},
        "drippers": {
            "n": 4,
            "head": clients.SLOWLORIS,
            "drip": b"a",
            "every": 0.3,
            "app": "benchapp:hello",
            "flags": ["-t", "5"],
        },
    }


def open_flood(port: int, attack: dict[str, Any]) -> list[clients.Flood]:
    if "drip" in attack and attack["drip"] == b"x" * 10:  # RUDY: half small, half large
        half = attack["n"] // 2
        return [
            clients.Flood(port, half, clients.rudy_head(20_000), drip=attack["drip"]),
            clients.Flood(port, half, clients.rudy_head(10_000_000), drip=attack["drip"]),
        ]
    return [
        clients.Flood(
            port,
            attack["n"],
            attack.get("head", b""),
            drip=attack.get("drip", b""),
            every=attack.get("every", 1.0),
        )
    ]


def timed_probes(port: int, seconds: float, cap: float) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            clients.probe(port, timeout=cap)
            out.append(time.monotonic() - t0)
        except (OSError, AssertionError):
            out.append(max(cap, time.monotonic() - t0))
        time.sleep(0.25)
    return out


def run_flood(
    kind: ServerKind, worker: str, name: str, attack: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    flags = ["-w", "2", *WORKERS[worker], *attack.get("flags", [])]
    server = Server(kind, attack["app"], APPS_DIR, flags)
    try:
        server.start(Probe())
        opened = open_flood(server.port, attack)
        try:
            latencies = timed_probes(server.port, args.seconds, args.probe_timeout)
        finally:
            for f in opened:
                f.close()
    except (ServerFailed, OSError) as exc:
        return {"error": str(exc)}
    finally:
        server.stop()
    return {
        "worst": max(latencies),
        "median": statistics.median(latencies),
        "probes": len(latencies),
    }


def _one_worker(kind: ServerKind, worker: str) -> tuple[Server, int, int]:
    server = Server(kind, "benchapp:echo", APPS_DIR, ["-w", "1", *WORKERS[worker]])
    server.start(Probe(method="POST", body=b"warm", expect_length=4))
    (pid,) = server.worker_pids()
    if not clients.reset_peak(pid):
        raise ServerFailed("cannot reset the peak RSS (/proc/pid/clear_refs)")
    return server, pid, clients.status_kib(pid, "VmRSS")


def run_bomb(kind: ServerKind, worker: str) -> dict[str, Any]:
    server, pid, rest = _one_worker(kind, worker)
    socks = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(clients.rudy_head(1 << 30) + b"b" * 70_000)
            socks.append(s)
        time.sleep(2.0)
        grew = clients.status_kib(pid, "VmHWM") - rest
        alive = clients.status_kib(pid, "VmRSS") > 0
    finally:
        for s in socks:
            s.close()
        server.stop()
    return {"peak_growth_mib": round(grew / 1024, 1), "alive": alive}


def run_chunks(kind: ServerKind, worker: str, chunks: int) -> dict[str, Any]:
    server, pid, rest = _one_worker(kind, worker)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    try:
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=300) as s:
            s.sendall(head + b"1\r\nc\r\n" * chunks + b"0\r\n\r\n")
            answer = clients.read_answer(s)
        took = time.monotonic() - t0
        grew = clients.status_kib(pid, "VmHWM") - rest
    finally:
        server.stop()
    ok = answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"c" * 64)
    return {"peak_growth_mib": round(grew / 1024, 1), "seconds": round(took, 2), "ok": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="floods,memory", help="floods,memory")
    ap.add_argument("--workers", default="sync,gthread,gevent", help="sync,gthread,gevent")
    ap.add_argument("--attacks", default="idle,slowloris,rudy,drippers")
    ap.add_argument("--seconds", type=float, default=6.0, help="probing per flood (default 6)")
    ap.add_argument("--probe-timeout", type=float, default=30.0, help="cap on one probe (s)")
    ap.add_argument("--servers", default="greenhorn,gunicorn")
    ap.add_argument("--gunicorn-python", help="a Python that can import gunicorn")
    ap.add_argument("--out", help="JSON file for every figure")
    args = ap.parse_args()
    if not clients.open_files(1500):
        print("the hard open-file limit is below 1500: raise it (ulimit -Hn)", file=sys.stderr)
        return 2
    import greenhorn

    version = greenhorn.__version__
    kinds = [
        ServerKind(
            "greenhorn", sys.executable, ("-m", "greenhorn"), version, import_path(sys.executable)
        )
    ]
    if "gunicorn" in args.servers:
        found = find_gunicorn_python(args.gunicorn_python)
        if found is None:
            print(f"gunicorn not found: greenhorn alone. {HOW_TO_GET_GUNICORN}", file=sys.stderr)
        else:
            python, gversion = found
            kinds.append(
                ServerKind("gunicorn", python, ("-m", "gunicorn"), gversion, import_path(python))
            )
    kinds = [k for k in kinds if k.name in args.servers]
    workers = [w for w in args.workers.split(",") if w]
    results: dict[str, Any] = {}
    lines: list[str] = []
    if "floods" in args.parts:
        attacks = flood_attacks()
        lines += ["| flood | worker | " + " | ".join(k.name for k in kinds) + " |"]
        lines += ["|---|---|" + "---|" * len(kinds)]
        for name in args.attacks.split(","):
            for worker in workers:
                if name == "drippers" and worker == "gevent":
                    continue
                row = []
                for kind in kinds:
                    r = run_flood(kind, worker, name, attacks[name], args)
                    results[f"flood/{name}/{worker}/{kind.name}"] = r
                    cell = (
                        r["error"][:40]
                        if "error" in r
                        else f"worst {r['worst']:.2f} s, median {r['median']:.3f} s"
                    )
                    print(f"{name:10} {worker:8} {kind.name:10} {cell}", flush=True)
                    row.append(cell)
                lines.append(f"| {name} | {worker} | " + " | ".join(row) + " |")
    if "memory" in args.parts:
        lines += ["", "| attack | worker | " + " | ".join(k.name for k in kinds) + " |"]
        lines += ["|---|---|" + "---|" * len(kinds)]
        for worker in workers:
            row = []
            for kind in kinds:
                r = run_bomb(kind, worker)
                results[f"memory/cl_bomb/{worker}/{kind.name}"] = r
                row.append(f"+{r['peak_growth_mib']} MiB")
                print(f"cl-bomb    {worker:8} {kind.name:10} {r}", flush=True)
            lines.append(f"| 3 x Content-Length 1 GiB | {worker} | " + " | ".join(row) + " |")
            for chunks in (1_000_000, 3_000_000):
                row = []
                for kind in kinds:
                    r = run_chunks(kind, worker, chunks)
                    results[f"memory/chunks{chunks}/{worker}/{kind.name}"] = r
                    row.append(f"+{r['peak_growth_mib']} MiB, {r['seconds']} s")
                    print(f"chunks {chunks:>7} {worker:8} {kind.name:10} {r}", flush=True)
                label = f"{chunks:,} one-byte chunks"
                lines.append(f"| {label} | {worker} | " + " | ".join(row) + " |")
    versions = ", ".join(f"{k.name} {k.version}".strip() for k in kinds)
    print(f"\n{versions}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
