"""Parse + environ for one typical 8-header GET: greenhorn against gunicorn, same run.

Why: the cost of turning request bytes into a WSGI environ is paid on every request and is
pure Python plumbing; issue 3 asks for it to be at least 4.5x cheaper than gunicorn's
(target: at most 8 us here, gunicorn about 38 us on the reference machine). Measuring both
in one run, interleaved, makes the ratio hold on any machine.

What is timed, per request (a new parser each time, as a new connection gets):

- greenhorn: ``Parser(limits)`` + ``feed`` + ``next_event`` (the head); for parse + environ,
  a ``Connection`` (which carries the addresses and a new parser) + ``receive`` + ``Body`` +
  ``build_environ`` with the per-worker base environ and proxy trust built the way
  ``Handler`` builds them from ``Config()`` defaults.
- gunicorn: ``RequestParser`` over a fake socket whose ``recv`` returns the request in one
  piece + ``next(parser)``, then ``gunicorn.http.wsgi.create`` (what its workers call: it
  builds the environ, and also a small ``Response`` object), from ``gunicorn.config.Config()``
  defaults.

Each side runs in its own interpreter (gunicorn's is ``--gunicorn-python``, auto-detected), as
a subprocess of this script that times one sample of N calls whenever asked; samples are
taken A B A B, one at a time, so load from other work on the machine hits both sides alike.
The figure reported is the best sample (other work only ever adds time), with the median.
Run::

    python benchmarks/parse.py [--samples 30] [--iterations 2000] [--gunicorn-python PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

REQUEST = (
    b"GET /api/v1/items?id=42&sort=asc HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: sessionid=3f2a9c0e7b1d4e8f; csrftoken=9b8c7d6e5f4a3b2c\r\n"
    b"Referer: https://www.example.com/items\r\n"
    b"\r\n"
)
PEER = ("127.0.0.1", 54321)
SERVER = ("127.0.0.1", 8000)
TARGET_US = 8.0
TARGET_RATIO = 4.5
REFERENCE_GUNICORN_US = 37.8  # gunicorn's parse+environ on the machine the targets were set on
HERE = os.path.dirname(os.path.abspath(__file__))


def per_call_us(fn: Callable[[], Any], iterations: int) -> float:
    """Microseconds per call of ``fn`` over ``iterations`` calls (gc stays enabled)."""
    start = time.perf_counter_ns()
    for _ in range(iterations):
        fn()
    return (time.perf_counter_ns() - start) / iterations / 1000.0


# -- greenhorn -------------------------------------------------------------------------------


def greenhorn_cases() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(parse only, parse + environ) for greenhorn, imported from this interpreter."""
    try:
        import greenhorn  # noqa: F401
    except ImportError:  # running from a checkout that is not installed
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    from greenhorn.config import Config
    from greenhorn.http.parser import Parser
    from greenhorn.workers.base import limits_from
    from greenhorn.workers.connection import Connection
    from greenhorn.wsgi.environ import base_environ, build_environ
    from greenhorn.wsgi.input import Body
    from greenhorn.wsgi.trust import ProxyTrust

    cfg = Config()
    limits = limits_from(cfg)
    trust = ProxyTrust(list(cfg.forwarded_allow_ips), dict(cfg.secure_scheme_headers))
    base = base_environ(multithread=False, errors=sys.stderr, script_name=None)
    sock = object()
    data = REQUEST

    def parse() -> Any:
        p = Parser(limits)
        p.feed(data)
        return p.next_event()

    server = (SERVER[0], str(SERVER[1]))

    def parse_environ() -> dict[str, Any]:
        conn = Connection(sock, PEER, server, limits, 0.0)  # type: ignore[arg-type]
        req = conn.parser.receive(data)
        return build_environ(base, req, conn, Body(None), trust)  # type: ignore[arg-type]

    return parse, parse_environ


# -- gunicorn (runs in gunicorn's interpreter) -------------------------------------------------


class FakeSocket:
    """Just enough socket for gunicorn's parser and environ: one recv, then EOF."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def recv(self, size: int) -> bytes:
        data, self._data = self._data[:size], self._data[size:]
        return data

    def send(self, data: bytes) -> int:
        return len(data)

    def getsockname(self) -> tuple[str, int]:
        return SERVER


def gunicorn_cases() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(parse only, parse + environ) for gunicorn, imported from this interpreter."""
    from gunicorn.config import Config  # type: ignore[import-not-found]
    from gunicorn.http import wsgi  # type: ignore[import-not-found]
    from gunicorn.http.parser import RequestParser  # type: ignore[import-not-found]

    cfg = Config()
    data = REQUEST

    def parse() -> Any:
        return next(RequestParser(cfg, FakeSocket(data), PEER))

    def parse_environ() -> dict[str, Any]:
        sock = FakeSocket(data)
        req = next(RequestParser(cfg, sock, PEER))
        _resp, environ = wsgi.create(req, sock, PEER, SERVER, cfg)
        return environ

    return parse, parse_environ


# -- measuring -----------------------------------------------------------------------------


def serve_side(side: str) -> int:
    """Child mode: build one side's cases, then time ``CASE N`` requests read from stdin.

    The first line written is JSON (version, environ keys); then one line per request: the
    microseconds per call of ``N`` calls of CASE (``parse`` or ``environ``).
    """
    parse, parse_environ = greenhorn_cases() if side == "greenhorn" else gunicorn_cases()
    environ = parse_environ()
    for _ in range(2000):  # warm caches (header-name maps, regexes)
        parse_environ()
    if side == "gunicorn":
        import gunicorn  # type: ignore[import-not-found]

        version = gunicorn.__version__
    else:
        import greenhorn

        version = greenhorn.__version__
    print(json.dumps({"version": version, "keys": sorted(environ)}), flush=True)
    cases = {"parse": parse, "environ": parse_environ}
    for line in sys.stdin:
        case, n = line.split()
        gc.collect()
        print(f"{per_call_us(cases[case], int(n)):.4f}", flush=True)
    return 0


class Side:
    """One side running in its own interpreter, timing samples on request."""

    def __init__(self, side: str, python: str) -> None:
        cmd = [python, os.path.abspath(__file__), "--side", side]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first:
            self.close()
            raise RuntimeError(f"the {side} side did not start (see its error above)")
        info = json.loads(first)
        self.version: str = info["version"]
        self.keys: list[str] = info["keys"]

    def sample(self, case: str, iterations: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{case} {iterations}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def summary(samples: list[float]) -> dict[str, float]:
    return {"best": min(samples), "median": statistics.median(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=30, help="samples per side and case")
    ap.add_argument("--iterations", type=int, default=2000, help="calls per sample")
    ap.add_argument("--gunicorn-python", help="a Python that can import gunicorn")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--side", choices=("greenhorn", "gunicorn"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.side:  # child mode (see serve_side)
        return serve_side(args.side)

    sys.path.insert(0, HERE)
    from detect import HOW_TO_GET_GUNICORN, find_gunicorn_python

    found = find_gunicorn_python(args.gunicorn_python)
    if found is None:
        print(f"gunicorn not found: skipping its half. To compare, {HOW_TO_GET_GUNICORN}.")
    sides = {"greenhorn": Side("greenhorn", sys.executable)}
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        if found is not None:
            sides["gunicorn"] = Side("gunicorn", found[0])
        for _ in range(args.samples):  # A B A B, one sample at a time
            for case in ("parse", "environ"):
                for name, side in sides.items():
                    got = side.sample(case, args.iterations)
                    samples.setdefault(name, {}).setdefault(case, []).append(got)
    finally:
        for side in sides.values():
            side.close()

    report: dict[str, Any] = {"request_bytes": len(REQUEST), "headers": 8}
    print(f"parse + environ, one 8-header GET ({len(REQUEST)} bytes), us per request")
    print(f"{'':28} {'parse':>8} {'parse+environ':>14}   best of {args.samples} (median)")
    for name, side in sides.items():
        p, e = summary(samples[name]["parse"]), summary(samples[name]["environ"])
        report[name] = {"version": side.version, "parse_us": p, "parse_environ_us": e}
        label = f"{name} {side.version}"
        print(
            f"{label:28} {p['best']:8.2f} {e['best']:14.2f}   "
            f"({p['median']:.2f} / {e['median']:.2f})"
        )
    gh = report["greenhorn"]["parse_environ_us"]["best"]
    verdict = "meets" if gh <= TARGET_US else "misses"
    print(f"greenhorn parse+environ {gh:.2f} us here: {verdict} the <= {TARGET_US:g} us target")
    if "gunicorn" in sides:
        ratio_p = report["gunicorn"]["parse_us"]["best"] / report["greenhorn"]["parse_us"]["best"]
        ratio_e = report["gunicorn"]["parse_environ_us"]["best"] / gh
        paired = [
            gu / gh_
            for gu, gh_ in zip(
                samples["gunicorn"]["environ"], samples["greenhorn"]["environ"], strict=True
            )
        ]
        report["ratio_parse"], report["ratio_parse_environ"] = ratio_p, ratio_e
        report["ratio_parse_environ_paired_median"] = statistics.median(paired)
        verdict = "meets" if ratio_e >= TARGET_RATIO else "misses"
        print(
            f"ratio gunicorn/greenhorn (best/best): parse {ratio_p:.2f}x, parse+environ "
            f"{ratio_e:.2f}x ({verdict} the >= {TARGET_RATIO:g}x target); median of the "
            f"paired samples {statistics.median(paired):.2f}x"
        )
        scaled = gh * REFERENCE_GUNICORN_US / report["gunicorn"]["parse_environ_us"]["best"]
        report["greenhorn_scaled_to_reference_us"] = scaled
        verdict = "meets" if scaled <= TARGET_US else "misses"
        print(
            f"scaled to the reference machine (gunicorn {REFERENCE_GUNICORN_US:g} us there): "
            f"greenhorn {scaled:.2f} us, {verdict} the <= {TARGET_US:g} us target"
        )
        keys = {name: set(side.keys) for name, side in sides.items()}
        only_gh = sorted(keys["greenhorn"] - keys["gunicorn"])
        only_gu = sorted(keys["gunicorn"] - keys["greenhorn"])
        print(f"environ keys only in greenhorn: {', '.join(only_gh) or '-'}")
        print(f"environ keys only in gunicorn: {', '.join(only_gu) or '-'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
