"""HTTP/2 against gunicorn: h2load on greenhorn and on gunicorn 27, both ``-k gthread
--http-protocols h2`` (or both ``-k asgi``: ``--worker-class asgi``), in the same run;
requests per second and server CPU per request.

Why its own script: wrk speaks HTTP/1.1 only. h2load (``apt-get install nghttp2-client``)
opens ``-c`` connections with ``-m`` streams in flight on each, so what it measures is the
server's HTTP/2 path: framing, HPACK, flow control and one stream per request. Two
scenarios: h2c with prior knowledge (``--http2-cleartext prior-knowledge``: the server's
own cost, nothing else) and TLS with ALPN (what a browser-facing server pays, OpenSSL's
share included). Rounds alternate greenhorn and gunicorn; CPU is the server's process
tree from /proc (``procstat.py``), so the load generator's share never counts.

    python benchmarks/h2load.py [--rounds 3] [--requests 20000] [--workers 1] [--threads 4]
                                [--worker-class gthread|asgi]

Prints a markdown table (docs/performance.md has the last one) and, with ``--out``, JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from detect import HOW_TO_GET_GUNICORN, find_gunicorn_python, import_path  # noqa: E402
from procstat import cpu_seconds  # noqa: E402
from servers import Probe, Server, ServerFailed, ServerKind  # noqa: E402

APPS = os.path.join(HERE, "apps")
_DONE = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed"
)
_RPS = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
APP = {"gthread": "benchapp:hello", "asgi": "asgiapp:hello"}  # the same bytes either way


class H2Server(Server):
    """A server whose readiness probe is one h2load request (it may speak no HTTP/1.1)."""

    h2load = "h2load"
    scheme = "http"

    def _probe(self, probe: Probe) -> None:
        result = run_h2load(self.h2load, self.url(), 1, 1, 1)
        if result["succeeded"] != 1:
            raise ServerFailed(f"h2load probe: {result['raw'][-300:]}")

    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"


def run_h2load(h2load: str, url: str, requests: int, clients: int, streams: int) -> dict[str, Any]:
    out = subprocess.run(
        [h2load, "-n", str(requests), "-c", str(clients), "-m", str(streams), "-t", "1", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout
    done = _DONE.search(out)
    rps = _RPS.search(out)
    return {
        "succeeded": int(done.group(4)) if done else 0,
        "failed": int(done.group(5)) if done else requests,
        "rps": float(rps.group(3)) if rps else 0.0,
        "raw": out,
    }


def make_cert(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def measure(
    kind: ServerKind, flags: list[str], scheme: str, args: argparse.Namespace
) -> dict[str, Any]:
    server = H2Server(kind, APP[args.worker_class], APPS, flags)
    server.h2load = args.h2load
    server.scheme = scheme
    try:
        server.start(Probe())
        run_h2load(args.h2load, server.url(), args.requests // 5, args.clients, args.streams)
        before, _ = cpu_seconds(server.pid)
        result = run_h2load(args.h2load, server.url(), args.requests, args.clients, args.streams)
        after, _ = cpu_seconds(server.pid)
    finally:
        server.stop()
    ok = result["succeeded"]
    return {
        "rps": result["rps"],
        "succeeded": ok,
        "failed": result["failed"],
        "cpu_us": (after - before) / ok * 1e6 if ok else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000, help="per measured run")
    ap.add_argument("--clients", type=int, default=10, help="h2load -c (default 10)")
    ap.add_argument("--streams", type=int, default=10, help="h2load -m (default 10)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--worker-class", choices=sorted(APP), default="gthread")
    ap.add_argument("--scenarios", default="h2c,tls")
    ap.add_argument("--gunicorn-python", help="a Python that imports gunicorn 27 and h2")
    ap.add_argument("--h2load", default=shutil.which("h2load"))
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if not args.h2load:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    import greenhorn

    kinds = [
        ServerKind("greenhorn", sys.executable, ("-m", "greenhorn"), greenhorn.__version__,
                   import_path(sys.executable)),
    ]  # fmt: skip
    found = find_gunicorn_python(args.gunicorn_python)
    if found is None:
        print(f"gunicorn not found: {HOW_TO_GET_GUNICORN}", file=sys.stderr)
        return 2
    kinds.append(
        ServerKind("gunicorn", found[0], ("-m", "gunicorn"), found[1], import_path(found[0]))
    )
    common = ["-k", args.worker_class, "-w", str(args.workers), "--http-protocols", "h2"]
    if args.worker_class == "gthread":
        common += ["--threads", str(args.threads)]
    tmp = tempfile.mkdtemp(prefix="h2bench-")
    cert, key = make_cert(tmp)
    scenarios = {
        "h2c": (["--http2-cleartext", "prior-knowledge"], "http"),
        "tls": (["--certfile", cert, "--keyfile", key], "https"),
    }
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        extra, scheme = scenarios[name]
        results[name] = {k.name: [] for k in kinds}
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind in order:
                figures = measure(kind, common + extra, scheme, args)
                results[name][kind.name].append(figures)
                print(f"{name} round {r + 1} {kind.name}: {figures}", file=sys.stderr)
    print(table(results, args, kinds))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def table(results: dict[str, Any], args: argparse.Namespace, kinds: list[ServerKind]) -> str:
    versions = ", ".join(f"{k.name} {k.version}" for k in kinds)
    lines = [
        f"h2load -n {args.requests} -c {args.clients} -m {args.streams} -t 1; "
        f"-k {args.worker_class} -w {args.workers}"
        f"{f' --threads {args.threads}' if args.worker_class == 'gthread' else ''} "
        f"--http-protocols h2; {APP[args.worker_class]}; "
        f"median of {args.rounds} alternating rounds; {versions}",
        "",
        "| scenario | server | req/s | server CPU µs/request | failed | CPU ratio (rounds) |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_server in results.items():
        gh, gu = by_server["greenhorn"], by_server["gunicorn"]
        med = {k: statistics.median(r["cpu_us"] for r in v) for k, v in by_server.items()}
        rps = {k: statistics.median(r["rps"] for r in v) for k, v in by_server.items()}
        failed = {k: sum(r["failed"] for r in v) for k, v in by_server.items()}
        per_round = [a["cpu_us"] / b["cpu_us"] for a, b in zip(gh, gu, strict=True)]
        for k in by_server:
            lines.append(f"| {name} | {k} | {rps[k]:,.0f} | {med[k]:.0f} | {failed[k]} | |")
        lines.append(
            f"| {name} | **greenhorn/gunicorn** | **{rps['greenhorn'] / rps['gunicorn']:.2f}x** "
            f"| **{med['greenhorn'] / med['gunicorn']:.2f}x** "
            f"({med['gunicorn'] / med['greenhorn']:.1f}x cheaper) | | "
            f"{min(per_round):.2f}-{max(per_round):.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
