"""Parse + environ for one typical 8-header GET: greenhorn against gunicorn, same run.

Why: the cost of turning request bytes into a WSGI environ is paid on every request and is
pure Python plumbing; issue 3 asks for it to be at least 4.5x cheaper than gunicorn's
(target: at most 8 us here, gunicorn about 38 us on the reference machine). Measuring both
in one run, interleaved, makes the ratio hold on any machine.

What is timed, per request (a new parser each time, as a new connection gets):

- greenhorn: ``Parser(limits)`` + ``feed`` + ``next_event`` (the head), then ``ConnInfo`` +
  ``Body`` + ``build_environ`` with the per-worker base environ and proxy trust built the way
  ``Handler`` builds them from ``Config()`` defaults.
- gunicorn: ``RequestParser`` over a fake socket whose ``recv`` returns the request in one
  piece + ``next(parser)``, then ``gunicorn.http.wsgi.create`` (what its workers call: it
  builds the environ, and also a small ``Response`` object), from ``gunicorn.config.Config()``
  defaults.

gunicorn runs in its own interpreter (``--gunicorn-python``, auto-detected), as a subprocess
of this script: ``parse.py --side gunicorn`` prints JSON. Run::

    python benchmarks/parse.py [--rounds 3] [--iterations 20000] [--gunicorn-python PATH]
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
    from greenhorn.wsgi import Body, ConnInfo, ProxyTrust, base_environ, build_environ
    from greenhorn.workers.base import limits_from

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

    def parse_environ() -> dict[str, Any]:
        p = Parser(limits)
        p.feed(data)
        req = p.next_event()
        info = ConnInfo(sock, PEER[0], str(PEER[1]), SERVER[0], str(SERVER[1]))
        return build_environ(base, req, info, Body(None), trust)  # type: ignore[arg-type]

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


def measure(side: str, iterations: int, repeat: int) -> dict[str, Any]:
    """Time both cases of one side ``repeat`` times; also return the environ keys."""
    parse, parse_environ = greenhorn_cases() if side == "greenhorn" else gunicorn_cases()
    environ = parse_environ()
    for _ in range(max(1, iterations // 10)):  # warm caches (header-name maps, regexes)
        parse_environ()
    result: dict[str, Any] = {"parse": [], "environ": [], "keys": sorted(environ)}
    for _ in range(repeat):
        gc.collect()
        result["parse"].append(per_call_us(parse, iterations))
        result["environ"].append(per_call_us(parse_environ, iterations))
    if side == "gunicorn":
        import gunicorn  # type: ignore[import-not-found]

        result["version"] = gunicorn.__version__
    else:
        import greenhorn

        result["version"] = greenhorn.__version__
    return result


def run_gunicorn_side(python: str, iterations: int, repeat: int) -> dict[str, Any]:
    """Run ``--side gunicorn`` under gunicorn's interpreter; return its JSON."""
    cmd = [python, os.path.abspath(__file__), "--side", "gunicorn"]
    cmd += ["--iterations", str(iterations), "--repeat", str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"gunicorn side failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def summary(samples: list[float]) -> dict[str, float]:
    return {"best": min(samples), "median": statistics.median(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="A B rounds (default 3)")
    ap.add_argument("--iterations", type=int, default=20000, help="calls per sample")
    ap.add_argument("--repeat", type=int, default=3, help="samples per side per round")
    ap.add_argument("--gunicorn-python", help="a Python that can import gunicorn")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--side", choices=("greenhorn", "gunicorn"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.side:  # one side only, JSON on stdout (used for the gunicorn subprocess)
        print(json.dumps(measure(args.side, args.iterations, args.repeat)))
        return 0

    sys.path.insert(0, HERE)
    from detect import HOW_TO_GET_GUNICORN, find_gunicorn_python

    found = find_gunicorn_python(args.gunicorn_python)
    if found is None:
        print(f"gunicorn not found: skipping its half. To compare, {HOW_TO_GET_GUNICORN}.")
    sides: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):  # interleaved: A B A B
        for side in ("greenhorn", "gunicorn"):
            if side == "gunicorn":
                if found is None:
                    continue
                got = run_gunicorn_side(found[0], args.iterations, args.repeat)
            else:
                got = measure(side, args.iterations, args.repeat)
            acc = sides.setdefault(side, {"parse": [], "environ": []})
            acc["parse"] += got["parse"]
            acc["environ"] += got["environ"]
            acc["keys"], acc["version"] = got["keys"], got["version"]

    report: dict[str, Any] = {"request_bytes": len(REQUEST), "headers": 8}
    print(f"parse + environ, one 8-header GET ({len(REQUEST)} bytes), us per request")
    print(f"{'':28} {'parse':>8} {'parse+environ':>14}   (best of {len(sides['greenhorn']['parse'])}, median)")
    for side, acc in sides.items():
        p, e = summary(acc["parse"]), summary(acc["environ"])
        report[side] = {"version": acc["version"], "parse_us": p, "parse_environ_us": e}
        label = f"{side} {acc['version']}"
        print(f"{label:28} {p['best']:8.2f} {e['best']:14.2f}   (median {p['median']:.2f} / {e['median']:.2f})")
    gh = report["greenhorn"]["parse_environ_us"]["best"]
    verdict = "meets" if gh <= TARGET_US else "misses"
    print(f"greenhorn parse+environ {gh:.2f} us: {verdict} the <= {TARGET_US:g} us target")
    if "gunicorn" in sides:
        ratio_p = report["gunicorn"]["parse_us"]["best"] / report["greenhorn"]["parse_us"]["best"]
        ratio_e = report["gunicorn"]["parse_environ_us"]["best"] / gh
        report["ratio_parse"], report["ratio_parse_environ"] = ratio_p, ratio_e
        verdict = "meets" if ratio_e >= TARGET_RATIO else "misses"
        print(f"ratio gunicorn/greenhorn: parse {ratio_p:.2f}x, parse+environ {ratio_e:.2f}x "
              f"({verdict} the >= {TARGET_RATIO:g}x target)")
        only_gh = sorted(set(sides["greenhorn"]["keys"]) - set(sides["gunicorn"]["keys"]))
        only_gu = sorted(set(sides["gunicorn"]["keys"]) - set(sides["greenhorn"]["keys"]))
        print(f"environ keys only in greenhorn: {', '.join(only_gh) or '-'}")
        print(f"environ keys only in gunicorn: {', '.join(only_gu) or '-'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
