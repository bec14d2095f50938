"""What it costs that renewed certificate files serve the next TLS connection (issue 21).

Why this script: gunicorn's sync and gthread workers call the ``ssl_context`` hook for every
connection, so the default context (the certificate chain read and parsed again) is built
per connection. greenhorn keeps its context and compares the ``stat()`` of the certificate
files per connection instead (``workers/tls.py``, ``Contexts``). This script measures both
ways, in one run:

1. In process: the check greenhorn makes per connection when nothing changed, against
   building the default context (what a per-connection rebuild costs).
2. Real servers, one sync worker each, the same certificate (ECDSA P-256) and a hello app:
   ``--connections`` new TLS connections one after another (each a handshake and one
   request), and the server CPU per connection read from /proc: greenhorn as it ships,
   greenhorn with an ``ssl_context`` hook that builds the default context (gunicorn's
   per-connection rebuild, inside greenhorn), and gunicorn 27.

    python benchmarks/tls_renewal.py
    python benchmarks/tls_renewal.py --connections 2000 --gunicorn /path/to/gunicorn

Needs ``cryptography`` (a dev dependency) for the throwaway certificate. Every server is
started in its own session on 127.0.0.1 and stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"hi\\n"]
"""
PER_CONNECTION_HOOK = """\
def ssl_context(config, default_ssl_context_factory):
    return default_ssl_context_factory()
"""


def make_certs(directory: Path) -> tuple[Path, Path]:
    path = ROOT / "tests" / "apps" / "edge" / "tls_certs.py"
    spec = importlib.util.spec_from_file_location("greenhorn_tls_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    certs = module.make_certs(directory)
    return certs.server_cert, certs.server_key


def in_process(cert: Path, key: Path) -> tuple[float, float]:
    """(µs per unchanged check, µs per default-context build)."""
    from greenhorn.config import load
    from greenhorn.workers import tls

    cfg = load(["--certfile", str(cert), "--keyfile", str(key), "x:app"], {})
    contexts = tls.Contexts(cfg, logging.getLogger("bench"), lambda: tls.server_context(cfg))  # type: ignore[arg-type]
    n = 20000
    check = min(timeit.repeat(contexts.current, number=n, repeat=5)) / n
    m = 200
    build = min(timeit.repeat(lambda: tls.server_context(cfg), number=m, repeat=3)) / m
    return check * 1e6, build * 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_request(port: int, ctx: ssl.SSLContext) -> None:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {data[:60]!r}")


def serve(argv: list[str], cwd: Path, port: int, ctx: ssl.SSLContext) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        argv, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
        with contextlib.suppress(OSError, ssl.SSLError):
            tls_request(port, ctx)
            return proc
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{argv} did not answer within 30 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def measure(argv: list[str], cwd: Path, port: int, n: int) -> tuple[float, float]:
    """(server CPU µs per connection, connections per second) for ``n`` connections."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    proc = serve(argv, cwd, port, ctx)
    try:
        for _ in range(50):  # warm up
            tls_request(port, ctx)
        cpu0, t0 = cpu_seconds(proc.pid)[0], time.perf_counter()
        for _ in range(n):
            tls_request(port, ctx)
        cpu1, t1 = cpu_seconds(proc.pid)[0], time.perf_counter()
    finally:
        stop(proc)
    return (cpu1 - cpu0) / n * 1e6, n / (t1 - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--gunicorn", default=shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    )
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tls-renewal-") as tmp:
        work = Path(tmp)
        cert, key = make_certs(work)
        (work / "bench_app.py").write_text(APP)
        (work / "hook.conf.py").write_text(PER_CONNECTION_HOOK)
        check, build = in_process(cert, key)
        print(
            f"in process: unchanged-files check {check:.1f} µs, default context build {build:.0f} µs"
        )
        tls_args = ["--certfile", str(cert), "--keyfile", str(key), "-w", "1", "bench_app:app"]
        runs: list[tuple[str, list[str]]] = [
            ("greenhorn (stat check per connection)", [sys.executable, "-m", "greenhorn"]),
            (
                "greenhorn + hook rebuilding per connection",
                [sys.executable, "-m", "greenhorn", "-c", "hook.conf.py"],
            ),
        ]
        if ns.gunicorn:
            runs.append(("gunicorn 27 (rebuilds per connection)", [ns.gunicorn, "-c", "/dev/null"]))
        print(f"{ns.connections} sequential TLS connections, one sync worker:")
        results = {}
        for name, base in runs:
            port = free_port()
            cpu, rate = measure(
                [*base, "-b", f"127.0.0.1:{port}", *tls_args], work, port, ns.connections
            )
            results[name] = cpu
            print(f"  {name:<44} {cpu:7.0f} µs server CPU/connection  {rate:6.0f} conn/s")
        first = next(iter(results.values()))
        for name, cpu in list(results.items())[1:]:
            print(f"  {name}: {cpu / first:.2f}x greenhorn's CPU per connection")
    return 0


if __name__ == "__main__":
    sys.exit(main())
