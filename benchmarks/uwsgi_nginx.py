"""nginx in front: ``uwsgi_pass`` against ``proxy_pass`` to the same greenhorn, and against
gunicorn 27's uwsgi mode (issue 24).

Why a script of its own: ``run.py`` measures servers that wrk talks to directly; here wrk
talks to nginx, and nginx to the server, by HTTP (``proxy_pass``) or by the uWSGI binary
protocol (``uwsgi_pass`` with ``include uwsgi_params``). The question is what the protocol
between them costs the server, so the figure is the server's CPU per request (its master
and workers, from /proc, as in ``run.py``), with nginx's own CPU per request beside it.

Each run starts a fresh server (``-w 2``, the given worker type, ``benchapp:hello``) and a
fresh nginx (one worker process) configured for that run's pass, loads nginx with wrk
(keep-alive from wrk to nginx; nginx opens a connection to the server per request, in both
protocols), and stops both by PID. The four setups run one after another, ``--rounds``
times (A B C D A B C D ...), and the report gives each setup's median and the ratios.

    python benchmarks/uwsgi_nginx.py                      # 3 rounds, 5 s per run
    python benchmarks/uwsgi_nginx.py --rounds 5 --worker gthread

It installs nothing: it needs nginx and wrk on PATH (or /usr/sbin/nginx) and a Python that
can import gunicorn (found as ``run.py`` finds it, or ``--gunicorn-python``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from detect import HOW_TO_GET_GUNICORN, find_gunicorn_python, find_wrk, import_path  # noqa: E402
from loadgen import LoadSpec, run_wrk  # noqa: E402
from procstat import cpu_seconds, process_cpu  # noqa: E402
from servers import Probe, Server, ServerFailed, ServerKind, free_port  # noqa: E402

APPS_DIR = os.path.join(HERE, "apps")
RESULTS_DIR = os.path.join(HERE, "results")
APP = "benchapp:hello"
HELLO = b"Hello, world!\n"

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
{location}
        }}
    }}
}}
"""
UWSGI_LOCATION = """\
            include {params};
            uwsgi_pass 127.0.0.1:{upstream};"""
PROXY_LOCATION = """\
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;"""
# nginx's own uwsgi_params, for an installation without the file
UWSGI_PARAMS = """\
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;
uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;
uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
"""


@dataclass(frozen=True)
class Setup:
    """One row: which server, and how nginx passes to it."""

    label: str
    server: str  # "greenhorn" or "gunicorn"
    uwsgi: bool  # uwsgi_pass (the server with --protocol uwsgi) or proxy_pass


SETUPS = (
    Setup("greenhorn, uwsgi_pass", "greenhorn", True),
    Setup("greenhorn, proxy_pass", "greenhorn", False),
    Setup("gunicorn, uwsgi_pass", "gunicorn", True),
    Setup("gunicorn, proxy_pass", "gunicorn", False),
)


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


class UwsgiServer(Server):
    """A server started with ``--protocol uwsgi``: its readiness probe is a uwsgi packet."""

    def _probe(self, probe: Probe) -> None:
        block = b""
        for key, value in (("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), ("PATH_INFO", "/")):
            k, v = key.encode(), value.encode()
            block += len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
        packet = b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(packet)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        if not data.startswith(b"HTTP/1.1 200 ") and not data.startswith(b"HTTP/1.0 200 "):
            raise ServerFailed(f"probe answered {data[:40]!r}")


class Nginx:
    """nginx with one server block passing to ``upstream``; started, then stopped by PID."""

    def __init__(self, nginx: str, upstream: int, uwsgi: bool, cpus: set[int]) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-nginx-")
        self.port = free_port()
        params = "/etc/nginx/uwsgi_params"
        if not os.path.isfile(params):
            params = os.path.join(self.dir, "uwsgi_params")
            with open(params, "w") as f:
                f.write(UWSGI_PARAMS)
        location = (UWSGI_LOCATION if uwsgi else PROXY_LOCATION).format(
            params=params, upstream=upstream
        )
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.dir, port=self.port, location=location))
        self.proc = subprocess.Popen(
            [nginx, "-p", self.dir + "/", "-c", conf, "-e", os.path.join(self.dir, "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited {self.proc.returncode}: {self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx not listening after 10 s") from None
                time.sleep(0.05)

    def errors(self) -> str:
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()[-600:]
        except OSError:
            return ""

    def cpu(self) -> float:
        return process_cpu(self.proc.pid) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def check(url: str) -> None:
    """One request through nginx before load: it must be the app's answer."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
    if resp.status != 200 or body != HELLO:
        raise RuntimeError(f"through nginx: {resp.status} {body[:80]!r}")


def measure(
    setup: Setup, kind: ServerKind, args: argparse.Namespace, nginx_bin: str, wrk: str
) -> dict[str, Any]:
    flags = ["-w", str(args.workers), "-k", args.worker]
    if args.worker == "gthread":
        flags += ["--threads", "4"]
    if setup.uwsgi:
        flags += ["--protocol", "uwsgi"]
    server = (UwsgiServer if setup.uwsgi else Server)(kind, APP, APPS_DIR, flags)
    nginx: Nginx | None = None
    try:
        server.start(Probe())
        nginx = Nginx(nginx_bin, server.port, setup.uwsgi, set())
        url = f"http://127.0.0.1:{nginx.port}/"
        check(url)
        spec = LoadSpec(args.connections, args.wrk_threads, args.duration)
        if args.warmup > 0:
            run_wrk(wrk, url, replace(spec, duration=args.warmup))
        cpu0, _ = cpu_seconds(server.pid)
        ncpu0 = nginx.cpu()
        result = run_wrk(wrk, url, spec)
        cpu1, _ = cpu_seconds(server.pid)
        ncpu1 = nginx.cpu()
        requests = max(1, result["requests"])
        seconds = result["duration_us"] / 1e6
        return {
            "setup": setup.label,
            "rps": requests / seconds,
            "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "server_us": (cpu1 - cpu0) * 1e6 / requests,
            "nginx_us": (ncpu1 - ncpu0) * 1e6 / requests,
            "errors": result["errors_total"],
            "requests": result["requests"],
        }
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the four setups (default 3)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    ap.add_argument("--worker", default="sync", choices=("sync", "gthread"), help="worker type")
    ap.add_argument("--gunicorn-python", help="a Python that can import gunicorn")
    ap.add_argument("--out", help="JSON file (default benchmarks/results/uwsgi-<time>.json)")
    args = ap.parse_args(argv)

    wrk, nginx_bin = find_wrk(), find_nginx()
    if wrk is None or nginx_bin is None:
        print("needs wrk and nginx: apt-get install wrk nginx-light", file=sys.stderr)
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
    }
    found = find_gunicorn_python(args.gunicorn_python)
    if found is None:
        print(f"gunicorn not found: running greenhorn alone. To compare, {HOW_TO_GET_GUNICORN}.")
    else:
        kinds["gunicorn"] = ServerKind(
            "gunicorn", found[0], ("-m", "gunicorn"), found[1], import_path(found[0])
        )
    setups = [s for s in SETUPS if s.server in kinds]
    nginx_version = subprocess.run(
        [nginx_bin, "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    print(f"{nginx_version}; " + ", ".join(f"{k.name} {k.version}" for k in kinds.values()))
    print(
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s through nginx; "
        f"-w {args.workers} -k {args.worker}; {args.rounds} rounds; load {os.getloadavg()[0]:.1f}"
    )
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for setup in setups:
            run = measure(setup, kinds[setup.server], args, nginx_bin, wrk)
            run["round"] = r
            runs.append(run)
            print(
                f"  round {r + 1} {setup.label:24} {run['rps']:8.0f} req/s  "
                f"server {run['server_us']:6.1f} us/req  nginx {run['nginx_us']:5.1f} us/req  "
                f"errors {run['errors']}",
                flush=True,
            )
    table = summarize(runs, setups)
    print()
    print(table)
    out = args.out or os.path.join(RESULTS_DIR, time.strftime("uwsgi-%Y%m%dT%H%M%S.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"args": vars(args), "nginx": nginx_version, "runs": runs}, f, indent=1)
    print(f"\nruns in {out}")
    return 0


def summarize(runs: list[dict[str, Any]], setups: list[Setup]) -> str:
    """The Markdown table: each setup's medians, then the per-round ratios that matter."""
    med: dict[str, dict[str, float]] = {}
    for setup in setups:
        mine = [r for r in runs if r["setup"] == setup.label]
        med[setup.label] = {
            k: statistics.median(r[k] for r in mine)
            for k in ("rps", "p50_ms", "server_us", "nginx_us", "errors")
        }
    lines = [
        "| setup | req/s | p50 ms | server CPU µs/req | nginx CPU µs/req | errors |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in med.items():
        lines.append(
            f"| {label} | {m['rps'] / 1000:.1f}k | {m['p50_ms']:.2f} | {m['server_us']:.0f} "
            f"| {m['nginx_us']:.0f} | {m['errors']:.0f} |"
        )
    for a, b in (
        ("greenhorn, uwsgi_pass", "gunicorn, uwsgi_pass"),
        ("greenhorn, uwsgi_pass", "greenhorn, proxy_pass"),
        ("greenhorn, proxy_pass", "gunicorn, proxy_pass"),
    ):
        if a not in med or b not in med:
            continue
        per_round = sorted(
            x["server_us"] / y["server_us"]
            for x in runs
            for y in runs
            if x["setup"] == a and y["setup"] == b and x["round"] == y["round"]
        )
        ratio = med[a]["server_us"] / med[b]["server_us"]
        spread = f"; rounds {per_round[0]:.2f}-{per_round[-1]:.2f}" if len(per_round) > 1 else ""
        lines.append(
            f"| **{a} / {b}** | {med[a]['rps'] / med[b]['rps']:.2f}x | | **{ratio:.2f}x**"
            f" ({_cheaper(ratio)}{spread}) | "
            f"{med[a]['nginx_us'] / med[b]['nginx_us']:.2f}x | |"
        )
    return "\n".join(lines)


def _cheaper(ratio: float) -> str:
    return f"{1 / ratio:.1f}x cheaper" if ratio <= 1 else f"{ratio:.1f}x dearer"


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
